"""The sandbox clock: `POST /sandbox/clock` moves the sandbox's time forward and the clock rules act (here:
a 17-year-old's child-flag continuity ends on her 18th birthday); `carethread serve` has no such endpoint."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx

from adapter.inbound.mllp import MLLPClient
from tests.e2e.conftest import Service, start_service, stop_service
from tests.hl7builder import message, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"
DERIVED = "https://fhir.carethread.org/CodeSystem/record-type|derived"


def test_moving_the_sandbox_clock_past_an_18th_birthday_ends_the_child_flag(tmp_path) -> None:
    today = datetime.now(UTC).date()
    born = date(today.year - 17, today.month, 1)  # 17 today; her 18th birthday within the year
    svc: Service = start_service(tmp_path, "sandbox", "--no-seed")
    try:
        pid = seg("PID", {1: "1", 3: "9990040028^^^NHS^NH~CLK1^^^RX1^MR", 5: "SYNTHETIC^Clara",
                          7: born.strftime("%Y%m%d"), 8: "F", 32: "NSTS01"})
        ended_plan = seg("OBX", {1: "1", 2: "CE", 3: "ALERT^Alert^L", 5: "342191000000101^CPP^SCT", 11: "F",
                                 14: f"{born.year + 13}0101"})
        with MLLPClient("127.0.0.1", svc.mllp_port) as client:
            assert b"MSA|AA|" in client.send(message("ADT^A04", pid, ended_plan))
        flags = httpx.get(f"{svc.http}/fhir/Flag", params={"patient.identifier": f"{NHS}|9990040028"}).json()
        assert flags["total"] >= 1
        before = httpx.get(f"{svc.http}/sandbox/clock").json()["now"]
        history_before = httpx.get(f"{svc.http}/fhir/Flag", params={"_tag": DERIVED}).json()["total"]
        moved = httpx.post(f"{svc.http}/sandbox/clock", json={"now": f"{born.year + 18}-{born.month:02d}-02T09:00:00+00:00"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["now"] > before
        back = httpx.post(f"{svc.http}/sandbox/clock", json={"now": before})
        assert back.status_code == 422  # only forward
        assert history_before == 0  # nothing derived before her 18th birthday
        history = httpx.get(f"{svc.http}/fhir/Flag", params={
            "code": "https://fhir.carethread.org/CodeSystem/safeguarding|history-of-child-safeguarding",
            "patient.identifier": f"{NHS}|9990040028"}).json()
        assert history["total"] == 1  # the at-18 rule ran at the sandbox's time: child protection history
    finally:
        assert stop_service(svc) == 0


def test_serve_has_no_clock(service: Service) -> None:
    assert httpx.get(f"{service.http}/sandbox/clock").status_code == 404
    assert httpx.post(f"{service.http}/sandbox/clock", json={"advance": "P1D"}).status_code == 404
