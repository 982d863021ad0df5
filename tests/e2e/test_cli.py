"""The `carethread` command as an operator runs it: ingest, replay, serve/sandbox lifecycle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from adapter.inbound.mllp import MLLPClient
from tests.e2e.conftest import ROOT, start_service, stop_service
from tests.hl7builder import message, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapter.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def pid(mrn: str) -> str:
    return seg("PID", {1: "1", 3: f"{mrn}^^^RX1^MR", 5: "SYNTHETIC^Amber", 7: "20090514", 8: "F"})


def test_ingest_file_of_many_messages_with_nhs_file_conventions(tmp_path: Path) -> None:
    good = [message("ADT^A04", pid(f"ING{i}"), eol="\r\n") for i in range(3)]
    bad_nk1 = message("ADT^A04", pid("ING9"), seg("NK1", {1: "1", 2: "X^Y", 3: "ZZZ"}), eol="\n")
    rejected = message("ADT^A99", pid("ING8"))
    data = b"\xef\xbb\xbf" + b"\r\n\r\n".join(good) + b"\n\n" + bad_nk1 + rejected + good[0]
    f = tmp_path / "feed.hl7"
    f.write_bytes(data)
    db = tmp_path / "db.sqlite3"
    result = run_cli("ingest", "--source", "maternity", "--db", str(db), str(f))
    assert result.returncode == 1, result.stderr  # not everything was accepted
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"accepted": 3, "errors": 1, "rejected": 1, "duplicates": 1}
    again = run_cli("ingest", "--source", "maternity", "--db", str(db), str(f))
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"accepted": 0, "errors": 1, "rejected": 1,
                                                                  "duplicates": 4}


def test_processing_id_not_accepted_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "t.hl7"
    f.write_bytes(message("ADT^A04", pid("PROC1"), processing="T") + message("ADT^A04", pid("PROC2")))
    result = run_cli("ingest", "--source", "maternity", "--db", str(tmp_path / "db"), str(f),
                     env={"CARETHREAD_ACCEPTED_PROCESSING_IDS": '["P"]'})
    assert json.loads(result.stdout.splitlines()[-1]) == {"accepted": 1, "errors": 0, "rejected": 1, "duplicates": 0}


def test_replay_after_a_site_overlay_adds_a_local_code(tmp_path: Path) -> None:
    f = tmp_path / "local-code.hl7"
    f.write_bytes(message("ADT^A04", pid("REPLAY1"), seg("NK1", {1: "1", 2: "SYNTHETIC^Carol", 3: "GRM^Gran^L"})))
    db = str(tmp_path / "db.sqlite3")
    assert json.loads(run_cli("ingest", "--source", "maternity", "--db", db, str(f)).stdout.splitlines()[-1])["errors"] == 1
    listed = [json.loads(line) for line in run_cli("replay", "--db", db, "--list").stdout.splitlines()]
    assert [(r["status"], r["error_code"], r["error_location"]) for r in listed] == [("AE", "unmapped-code", "NK1-3.1")]

    overlay = tmp_path / "site"
    (overlay / "codes").mkdir(parents=True)
    table = (ROOT / "mappings" / "codes" / "v2_0063_relationship.yaml").read_text()
    (overlay / "codes" / "v2_0063_relationship.yaml").write_text(table + "  GRM: {code: GRMTH, display: grandmother}\n")
    replayed = run_cli("replay", "--db", db, "--mappings", str(overlay), str(listed[0]["id"]))
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["status"] == "AA"
    assert run_cli("replay", "--db", db, "--mappings", str(overlay), str(listed[0]["id"])).returncode == 0  # idempotent


def test_sandbox_seeds_the_scenario_and_stops_on_sigterm(tmp_path: Path) -> None:
    svc = start_service(tmp_path, "sandbox")
    try:
        assert svc.ready_line.startswith("carethread sandbox ready: fhir=http://127.0.0.1:")
        flags = httpx.get(f"{svc.http}/fhir/Flag", params={"patient.identifier": f"{NHS}|9990001006", "_tag:not":
                          "https://fhir.carethread.org/CodeSystem/record-type|derived"}, timeout=10).json()
        # the sources' (GP: the plan and the exploitation risk); the rules add derived ones (tests/rules)
        assert flags["total"] == 2
        appts = httpx.get(f"{svc.http}/fhir/Appointment", params={"status": "noshow"}, timeout=10).json()
        coding = appts["entry"][0]["resource"]["extension"][0]["valueCodeableConcept"]["coding"][0]
        assert coding["code"] == "was-not-brought"
        father = httpx.get(f"{svc.http}/fhir/RelatedPerson", params={"relationship": "FTH"}, timeout=10).json()
        assert {e["resource"]["birthDate"] for e in father["entry"]} == {"2010-01-15"}  # sandbox/story/
        with MLLPClient("127.0.0.1", svc.mllp_port) as client:
            assert b"MSA|AA" in client.send(message("ADT^A08", pid("SANDBOX1")))
    finally:
        assert stop_service(svc) == 0
    # `serve` on the same database: no seeding, data kept
    svc = start_service(tmp_path, "serve")
    try:
        assert svc.ready_line.startswith("carethread ready: ")
        assert httpx.get(f"{svc.http}/fhir/Patient", params={"identifier": "SANDBOX1"}, timeout=10).json()["total"] == 1
    finally:
        assert stop_service(svc) == 0


def test_serve_refuses_a_busy_port(tmp_path: Path) -> None:
    svc = start_service(tmp_path / "a")
    try:
        port = svc.http.rsplit(":", 1)[1]
        result = run_cli("serve", "--http-port", port, "--mllp-port", "0", "--db", str(tmp_path / "b.db"))
        assert result.returncode == 1
        assert "could not start" in result.stderr
    finally:
        stop_service(svc)
    shutil.rmtree(tmp_path / "a", ignore_errors=True)


def test_ingest_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import pty

    f = tmp_path / "many.hl7"
    f.write_bytes(b"".join(message("ADT^A04", pid(f"PROG{i}")) for i in range(300)))
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "adapter.cli", "ingest", "--source", "maternity", "--db",
                                 str(tmp_path / "db"), str(f)], cwd=ROOT, stdout=subprocess.PIPE, stderr=terminal,
                                text=True, timeout=120, env={**os.environ, "COLUMNS": "100"})
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if terminal != -1:
            os.close(terminal)
        os.close(controller)
    drawn = b"".join(chunks).decode(errors="replace")
    assert "many.hl7" in drawn and "300" in drawn  # the bar: file name and the message count
    assert json.loads(result.stdout.splitlines()[-1])["accepted"] == 300


def test_convert_prints_what_would_be_stored_and_stores_nothing(tmp_path: Path) -> None:
    f = tmp_path / "young-mother.hl7"
    f.write_bytes((ROOT / "sandbox" / "samples" / "hl7v2" / "ADT_A04_young_mother.hl7").read_bytes()
                  + message("ADT^A04", pid("CONV1"), seg("ZXY", {1: "site", 2: "stuff"})))
    db = tmp_path / "db.sqlite3"
    result = run_cli("convert", "--source", "maternity", "--db", str(db), str(f))
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    types = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert types.count("Patient") == 2 and "Flag" in types and types.count("Provenance") == 2
    assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])
    traces = [json.loads(line) for line in result.stderr.splitlines()]
    assert [t["status"] for t in traces] == ["AA", "AA"]
    assert "hl7v2/messages/ADT_A04.yaml" in traces[0]["mapping_files"]
    assert "ZXY-2" in traces[1]["unused_fields"]  # a Z-segment no mapping reads is reported, not mapped
    assert not db.exists()  # a dry run never creates a database
    ingest = run_cli("ingest", "--source", "maternity", "--db", str(db), str(f))
    assert json.loads(ingest.stdout.splitlines()[-1])["accepted"] == 2
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(message("ADT^A04", seg("NK1", {1: "1", 2: "X^Y", 3: "FTH"})))
    assert run_cli("--mappings", str(tmp_path / "missing"), "convert", "--source", "maternity", str(bad)).returncode == 2
    (tmp_path / "empty-overlay").mkdir()  # the global --mappings form: an overlay with nothing in it
    failed = run_cli("--mappings", str(tmp_path / "empty-overlay"), "convert", "--source", "maternity", str(bad))
    assert failed.returncode == 1
    assert json.loads(failed.stderr.splitlines()[0])["issues"][0]["location"] == "PID"
