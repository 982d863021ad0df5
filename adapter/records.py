"""Stage-boundary types: what one inbound payload became."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from adapter.errors import AdapterError, ErrorCode

__all__ = ["Issue", "Outcome", "AckCode", "issue_from_error"]

AckCode = Literal["AA", "AE", "AR"]
Severity = Literal["E", "W", "I"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with an inbound payload: a stable code and a location, never a value."""

    code: ErrorCode
    location: str | None
    message: str
    severity: Severity = "E"


def issue_from_error(err: AdapterError) -> Issue:
    return Issue(code=err.code, location=err.location, message=err.message)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of processing one inbound payload.

    ``status`` is what the archive records: ``AA``/``AE``/``AR``, ``duplicate`` (an accepted
    control id seen again: acknowledged ``AA``, nothing changed) or ``ignored`` (an ACK we received:
    never acknowledged).
    """

    status: Literal["AA", "AE", "AR", "duplicate", "ignored"]
    archive_id: int | None = None
    issues: tuple[Issue, ...] = ()
    resources: tuple[tuple[str, str], ...] = ()  # (resourceType, id) written or confirmed
    changed: int = 0  # resource versions written
    trace: Any = None  # the mapping trace (files run, source fields unused), when a mapping ran

    @property
    def ack_code(self) -> AckCode | None:
        if self.status == "ignored":
            return None
        if self.status == "duplicate":
            return "AA"
        return self.status

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "E")

    def with_archive(self, archive_id: int) -> Outcome:
        return Outcome(self.status, archive_id, self.issues, self.resources, self.changed, self.trace)


