"""Notifications end to end through a real `carethread serve`: organisations from a configuration file, a
Subscription created with POST /fhir/Subscription, a notification written by the library while the service is
down, then delivered by the restarted service to a real HTTP receiver (FHIR R4 rest-hook: PUT of the
Communication) and shown completed by the FHIR API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.notify import communication_id, notify
from adapter.store.sqlite import SqliteStore
from tests.e2e.conftest import ROOT, start_service, stop_service

ORGANISATIONS = """organisations:
  - ods: Y12345
    name: Synthetic Street Surgery
    roles: [gp-practice]
  - ods: ZHV001
    name: Synthetic Health Visiting Team
    roles: [health-visiting]
"""


class Receiver:
    """A rest-hook endpoint in a thread: records every request, answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                 "body": self.rfile.read(length)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _record

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_for(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_subscription_then_notification_delivered_after_a_restart(tmp_path: Path, receiver: Receiver,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "organisations.yaml"
    config.write_text(ORGANISATIONS)
    monkeypatch.setenv("CARETHREAD_ORGANISATIONS", str(config))

    # 1. the service starts with the configured organisations; a receiver subscribes through the API
    service = start_service(tmp_path)
    try:
        orgs = httpx.get(f"{service.http}/fhir/Organization",
                         params={"identifier": "https://fhir.nhs.uk/Id/ods-organization-code|Y12345"}).json()
        assert [e["resource"]["id"] for e in orgs["entry"]] == ["ods-Y12345"]
        sub = {"resourceType": "Subscription", "status": "requested", "reason": "synthetic GP receiver",
               "criteria": "Communication?recipient=Organization/ods-Y12345",
               "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json",
                           "header": ["Authorization: Bearer synthetic-e2e"]}}
        created = httpx.post(f"{service.http}/fhir/Subscription", json=sub,
                             headers={"Content-Type": "application/fhir+json"})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "active"
        refused = httpx.post(f"{service.http}/fhir/Subscription",
                             json={**sub, "channel": {"type": "email", "endpoint": "mailto:x@example.org"}})
        assert refused.status_code == 422 and refused.json()["resourceType"] == "OperationOutcome"
        found = httpx.get(f"{service.http}/fhir/Subscription", params={"status": "active"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [created.json()["id"]]
    finally:
        assert stop_service(service) == 0

    # 2. while it is down, a rule's transaction notifies the GP practice (the library, in this process)
    with SqliteStore(service.db) as store, store.transaction() as tx:
        tx.put({"resourceType": "Patient", "id": "e2e-pat", "active": True,
                "identifier": [{"system": "https://fhir.carethread.org/Id/test", "value": "E2E"}]})
        tx.put({"resourceType": "Flag", "id": "e2e-flag", "status": "active",
                "subject": {"reference": "Patient/e2e-pat"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]}})
        made, _to_health_visiting = notify(
            tx, rule_id="flag-closure", recipients=["gp-practice", "health-visiting"],
            subject_ref="Patient/e2e-pat", payload_refs=["Flag/e2e-flag"], priority="urgent",
            reason_display="child protection plan closed", sent="2026-11-26T08:00:00+00:00",
            dedup_key="e2e-flag-closed")
    assert made["id"] == communication_id("flag-closure", "e2e-flag-closed", "Y12345")
    assert receiver.requests == []

    # 3. the restarted service delivers it: PUT [endpoint]/Communication/[id], and records it completed
    service = start_service(tmp_path)
    try:
        wait_for(lambda: receiver.requests)
        [request] = receiver.requests
        assert request["method"] == "PUT" and request["path"] == f"/fhir/Communication/{made['id']}"
        assert request["headers"]["Content-Type"] == "application/fhir+json"
        assert request["headers"]["Authorization"] == "Bearer synthetic-e2e"
        body = json.loads(request["body"])
        assert body["id"] == made["id"] and body["reasonCode"][0]["coding"][0]["code"] == "flag-closure"

        def gp_communications() -> list[dict[str, Any]]:
            bundle = httpx.get(f"{service.http}/fhir/Communication",
                               params={"recipient": "Organization/ods-Y12345"}).json()
            return [e["resource"] for e in bundle.get("entry", [])]

        wait_for(lambda: gp_communications()[0]["status"] == "completed")
        [done] = gp_communications()
        assert done["id"] == made["id"] and done["meta"]["versionId"] == "2" and "received" in done
        # the health visiting team has no subscription: its notification waits, searchable, in progress
        hv = httpx.get(f"{service.http}/fhir/Communication",
                       params={"recipient": "Organization/ods-ZHV001", "reason-code": "flag-closure"}).json()
        assert [e["resource"]["status"] for e in hv["entry"]] == ["in-progress"]
    finally:
        assert stop_service(service) == 0
    assert len(receiver.requests) == 1  # delivered once


def test_a_wrong_organisations_file_stops_start_up(tmp_path: Path) -> None:
    config = tmp_path / "organisations.yaml"
    config.write_text("organisations:\n  - {ods: Y12345, name: A, roles: [not-a-role]}\n")
    result = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "serve", "--http-port", "0", "--mllp-port", "0", "--db",
         str(tmp_path / "db.sqlite3")], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "CARETHREAD_ORGANISATIONS": str(config)})
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "organisations[0]" in result.stderr
