"""The store's interface: what the pipeline and the FHIR API may ask of any store.

Resources are plain FHIR R4 JSON dicts (``resourceType`` + ``id`` given by the caller). Writes happen inside
``Store.transaction()``; reads outside a transaction see the last committed state. ``sqlite.py`` implements
it.

    with store.transaction() as tx:
        archive_id = tx.archive(channel="mllp", source="maternity", sender=sender, control_id=cid,
                                payload=raw)
        with tx.savepoint():                      # a failure here undoes only this block
            stored, changed = tx.put(patient, source_time="2026-11-26T08:00:00+00:00")
        tx.set_status(archive_id, "AA")
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "ArchiveStatus",
    "Channel",
    "InboundMessage",
    "OutboxEntry",
    "SearchResult",
    "Store",
    "StoredResource",
    "Transaction",
]

Channel = Literal["mllp", "http", "file", "replay"]
ArchiveStatus = Literal["received", "AA", "AE", "AR", "duplicate", "ignored"]


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource, as stored.

    ``resource`` carries ``meta.versionId`` (str) and ``meta.lastUpdated`` (FHIR instant, UTC); it is the
    caller's to keep: the store never hands out the same dict twice.
    """

    resource: dict[str, Any]
    version_id: int
    last_updated: str
    source_time: str | None  # the writer's business time (e.g. MSH-7), stored as given


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One archived inbound payload: every message is kept, whatever became of it."""

    id: int
    channel: str  # Channel
    source: str  # 'maternity', later 'health-visiting', 'gp'
    sender: str | None  # e.g. MSH-3^MSH-4
    control_id: str | None  # MSH-10
    received_at: str  # FHIR instant, UTC
    status: str  # ArchiveStatus
    error_code: str | None
    error_location: str | None
    payload: bytes
    replay_of: int | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One notification to deliver: a Communication to a Subscription's rest-hook endpoint (adapter.notify).

    Written in the transaction that creates the Communication; the delivery worker records each attempt.
    Times are FHIR instants in UTC as the outbox stores them (ISO, milliseconds, ``+00:00``).
    """

    id: int
    communication_id: str
    subscription_id: str
    endpoint: str  # the Subscription's channel.endpoint when the row was written
    payload: str | None  # channel.payload: a MIME type, or None for a notification without a body
    headers: tuple[str, ...]  # channel.header lines ("Name: value")
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: str
    created_at: str
    history: tuple[dict[str, Any], ...]  # one per attempt: {at, outcome, http_status?, error?}


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of a search.

    ``matches`` is the page in order (``meta.lastUpdated`` descending, then id); ``total`` counts every match,
    not just this page; ``included`` holds the resources named by ``_include`` for this page, each once and
    never one that is already in ``matches``.
    """

    matches: list[StoredResource]
    total: int
    included: list[StoredResource] = field(default_factory=list)


class Transaction(Protocol):
    """A unit of writes. Obtained from ``Store.transaction()``; unusable once that block ends."""

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version, including writes made earlier in this transaction."""
        ...

    def exists(self, resource_type: str, resource_id: str) -> bool:
        """Whether the resource exists (this transaction's writes included), without reading it."""
        ...

    def put(self, resource: dict[str, Any], *, source_time: str | None = None) -> tuple[StoredResource, bool]:
        """Create or update.

        If the content (ignoring ``meta.versionId`` and ``meta.lastUpdated``) equals the current version,
        nothing is written and ``(current, False)`` is returned. Otherwise version ``previous + 1`` (the first
        is 1) is written, history kept and the search index updated: ``(new, True)``. Other ``meta`` keys
        (source, profile, tag, security) are stored as given. The argument is not modified.
        """
        ...

    def archive(
        self,
        *,
        channel: str,
        source: str,
        sender: str | None,
        control_id: str | None,
        payload: bytes,
        status: str = "received",
        replay_of: int | None = None,
    ) -> int:
        """Archive an inbound payload; returns its archive id."""
        ...

    def set_status(
        self,
        archive_id: int,
        status: str,
        *,
        error_code: str | None = None,
        error_location: str | None = None,
    ) -> None:
        """Record what became of an archived message. Raises KeyError for an unknown archive id."""
        ...

    def find_accepted(self, source: str, sender: str | None, control_id: str) -> int | None:
        """Archive id of an earlier message with the same (source, sender, control_id) and status 'AA'."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested unit: if the block raises, its writes are undone and the exception propagates."""
        ...

    # identity reconciliation (adapter.reconcile): records are opaque text to the store
    def identity_candidates(self, keys: list[str], limit: int = 500) -> list[tuple[str, str, str]]:
        """(patient id, identity id, record) of the members sharing any of the blocking ``keys``."""
        ...

    def identity_members(self, identity_id: str) -> list[tuple[str, str]]:
        """(patient id, record) of every member of an identity."""
        ...

    def identity_of(self, patient_id: str) -> tuple[str, str] | None:
        """(identity id, record) of a source Patient, or None."""
        ...

    def flags_of_patients(self, patient_ids: list[str]) -> list[str]:
        """``Flag/id`` of every Flag whose subject is one of these Patients (this transaction's writes included)."""
        ...

    def set_identity_member(self, patient_id: str, identity_id: str, record: str, keys: list[str]) -> None:
        """Put a source Patient in an identity with its matching record and blocking keys (replacing both)."""
        ...

    # -- notification outbox -- (adapter.notify)
    def list_current(self, resource_type: str) -> list[StoredResource]:
        """The current version of every resource of a type, this transaction's writes included, in id order
        (for small sets: Subscriptions, configured Organizations)."""
        ...

    def enqueue_outbox(self, *, communication_id: str, subscription_id: str, endpoint: str,
                       payload: str | None, headers: list[str], next_attempt_at: str) -> int | None:
        """Add a pending delivery; returns its id, or None (nothing written) if the Communication already has
        one for this Subscription."""
        ...

    def outbox_entry(self, outbox_id: int) -> OutboxEntry | None: ...

    def outbox_of(self, communication_id: str) -> list[OutboxEntry]:
        """Every delivery row of a Communication, oldest first."""
        ...

    def record_outbox_attempt(self, outbox_id: int, attempt: dict[str, Any], *, status: str,
                              next_attempt_at: str | None = None) -> OutboxEntry:
        """Append ``attempt`` to the row's history, count it, set its status (pending | delivered | failed)
        and, if given, the next attempt time. Raises KeyError for an unknown row."""
        ...

    # -- rules engine -- (adapter.rules)
    def resources_of_patients(self, resource_types: list[str], patient_ids: list[str]) -> list[StoredResource]:
        """The current version of every resource of these types whose ``patient`` search parameter is one of
        these Patients, this transaction's writes included, in (type, id) order (one person's records)."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Transaction]:
        """Commit on normal exit, roll back on exception. Writers are serialised: this blocks while another
        thread holds a transaction, and raises RuntimeError if this thread already holds one."""
        ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None: ...

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None: ...

    def history(self, resource_type: str, resource_id: str) -> list[StoredResource]:
        """Every version, newest first; empty if the resource is unknown."""
        ...

    def search(
        self, resource_type: str, params: list[tuple[str, str]], *, count: int, offset: int
    ) -> SearchResult:
        """Run a FHIR search (see ``adapter.store.search``). ``params`` are the query's (name, value) pairs:
        criteria and ``_include``; the page is ``count`` matches from ``offset``, whatever ``_count`` or
        ``_offset`` in ``params`` say. Raises ``SearchParamError`` for an unknown parameter, modifier or bad
        value, and for an unknown resource type ``KeyError``."""
        ...

    def inbound(self, archive_id: int) -> InboundMessage | None: ...

    def list_inbound(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[InboundMessage]:
        """Archived messages, newest first, optionally only those with ``status``."""
        ...

    def close(self) -> None: ...

    # -- notification outbox -- (adapter.notify)
    def due_outbox(self, now: str, *, limit: int = 50) -> list[OutboxEntry]:
        """Pending deliveries due at ``now``, soonest first."""
        ...

    def next_outbox_due(self) -> str | None:
        """When the soonest pending delivery is due; None when nothing is pending."""
        ...

    def list_outbox(self, *, communication_id: str | None = None, status: str | None = None,
                    limit: int = 100) -> list[OutboxEntry]:
        """Delivery rows, oldest first, optionally of one Communication and/or with one status."""
        ...
