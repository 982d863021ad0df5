"""Fixtures for the notification tests: a store with the configured organisations, a Patient and a Flag
(all synthetic), and helpers to add Subscriptions and notify."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapter.notify import Organisation, default_check, notify, sync_organisations
from adapter.notify.subscriptions import FHIR_JSON
from adapter.store.sqlite import SqliteStore

ORGS = [
    Organisation("Y12345", "Synthetic Street Surgery", ("gp-practice",)),
    Organisation("ZHV001", "Synthetic Health Visiting Team", ("health-visiting",)),
    Organisation("ZHV002", "Synthetic North Health Visiting Team", ("health-visiting",)),
    Organisation("ZSG001", "Synthetic Hospital Safeguarding Team",
                 ("safeguarding-team", "maternity-safeguarding")),
]
PATIENT = {"resourceType": "Patient", "id": "pat-1", "active": True,
           "identifier": [{"system": "https://fhir.carethread.org/Id/test", "value": "T1"}]}
FLAG = {"resourceType": "Flag", "id": "flag-1", "status": "active", "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]}}
ENCOUNTER = {"resourceType": "Encounter", "id": "enc-1", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
             "subject": {"reference": "Patient/pat-1"}}
RULE_SYSTEM = "https://fhir.carethread.org/CodeSystem/safeguarding-rule"
HOOK = "https://receiver.example/fhir"
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class Clock:
    """An injectable clock: ``clock()`` is the time, ``advance(seconds)`` moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def subscription(sid: str, criteria: str, *, endpoint: str = HOOK, payload: str | None = FHIR_JSON,
                 headers: list[str] | None = None, status: str = "active", **extra: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload is not None:
        channel["payload"] = payload
    if headers:
        channel["header"] = headers
    return {"resourceType": "Subscription", "id": sid, "status": status, "reason": "synthetic test receiver",
            "criteria": criteria, "channel": channel, **extra}


def put(store: SqliteStore, *resources: dict[str, Any]) -> None:
    with store.transaction() as tx:
        for resource in resources:
            tx.put(resource)


def current(store: SqliteStore, resource_type: str, resource_id: str) -> dict[str, Any]:
    """The current version of a resource that must exist."""
    stored = store.read(resource_type, resource_id)
    assert stored is not None, f"no {resource_type}/{resource_id}"
    return stored.resource


def notify_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(rule_id="adult-setting-presentation", recipients=["Y12345"],
                                subject_ref="Patient/pat-1", payload_refs=["Flag/flag-1", "Encounter/enc-1"],
                                priority="urgent", reason_display="16-17 year old with safeguarding history "
                                "presented in an adult setting", sent="2026-11-26T08:00:00+00:00",
                                dedup_key="enc-1")
    args.update(overrides)
    return args


def run_notify(store: SqliteStore, now: datetime = T0, **overrides: Any) -> list[dict[str, Any]]:
    with store.transaction() as tx:
        return notify(tx, now=now, **notify_args(**overrides))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "notify.db", synchronous="OFF") as opened:
        sync_organisations(opened, ORGS, default_check)
        put(opened, PATIENT, FLAG, ENCOUNTER)
        yield opened
