"""The sandbox as an engineer meets it: `carethread sandbox` seeds the story (sandbox/story/) through its own
entry points, delivers the notifications to its inbox, starts in under 10 seconds; every example in
sandbox/examples/ is accepted; and the README walkthrough's commands run as written."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, Service, start_service, stop_service

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MOTHER, BABY = "9990001006", "9990001014"
BABY_IDENTITY = "9fc9f07d-ace8-59d6-9752-d2302133d1c7"  # as the README says
CPP, CSE, UNBORN, CHILD_CONCERN = "342191000000101", "919461000000108", "878111000000109", "836881000000105"
EXAMPLES = ROOT / "sandbox" / "examples"
EVENTS = ("ADT_A01 ADT_A02 ADT_A03 ADT_A04 ADT_A05 ADT_A08 ADT_A11 ADT_A13 ADT_A28 ADT_A31 ADT_A40 "
          "SIU_S12 SIU_S13 SIU_S14 SIU_S15 SIU_S17 SIU_S26").split()
# (ODS code, rule) each delivered once to the organisation's receiver in the inbox
DELIVERED = {("Y12345", "flag-closure"), ("ZSG001", "adult-setting-presentation"),
             ("ZMS001", "pregnancy-under-18-or-history"), ("ZHV001", "pregnancy-under-18-or-history"),
             ("ZCS001", "pregnancy-under-18-or-history"), ("ZCS001", "change-in-household"),
             ("ZHV001", "birth"), ("Y12345", "birth"), ("ZCS001", "young-father"), ("ZHV001", "handover-gap"),
             ("Y12345", "was-not-brought-pattern"), ("ZHV001", "was-not-brought-pattern")}


def _codes(bundle: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in bundle.get("entry", []):
        code, status = e["resource"]["code"]["coding"][0]["code"], e["resource"]["status"]
        out[code] = "active" if "active" in (status, out.get(code)) else status
    return out


def _inbox(http: str, timeout: float = 10.0) -> set[tuple[str, str]]:
    """(ODS, rule) pairs received, once every expected one is there (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{http}/sandbox/inbox").json()["organisations"]
        pairs = {(o["ods"], c["rule"]) for o in got for c in o["communications"]}
        if DELIVERED <= pairs or time.monotonic() > deadline:
            assert all(c["deliveries"] == 1 for o in got for c in o["communications"])
            return pairs
        time.sleep(0.1)


def test_the_seeded_story_examples_and_docs(tmp_path: Path) -> None:
    started = time.monotonic()
    svc: Service = start_service(tmp_path, "sandbox")
    startup = time.monotonic() - started
    try:
        print(f"sandbox start-up to ready, seeded: {startup:.2f} s")
        assert startup < 10.0, startup
        http = svc.http
        assert httpx.get(f"{http}/sandbox/clock").json()["now"].startswith("2027-02-05T09:0")  # week 11

        mother = _codes(httpx.get(f"{http}/fhir/Flag", params={"patient.identifier": f"{NHS}|{MOTHER}"}).json())
        assert mother[CPP] == mother[CSE] == mother[UNBORN] == "active", mother
        baby = _codes(httpx.get(f"{http}/fhir/Flag", params={"identity": f"Patient/{BABY_IDENTITY}",
                                                              "_count": "200"}).json())
        assert baby[CHILD_CONCERN] == "active" and baby["repeated-was-not-brought"] == "active", baby
        noshows = httpx.get(f"{http}/fhir/Appointment", params={"patient.identifier": f"{NHS}|{BABY}",
                                                                 "status": "noshow"}).json()
        assert noshows["total"] >= 1
        assert all(x["valueCodeableConcept"]["coding"][0]["code"] == "was-not-brought"
                   for e in noshows["entry"] for x in e["resource"]["extension"])
        summary = httpx.get(f"{http}/fhir/Patient/{BABY_IDENTITY}/$safeguarding-summary").json()
        assert summary["entry"][0]["resource"]["resourceType"] == "Composition"
        assert httpx.get(f"{http}/fhir/Task", params={"code": "https://fhir.carethread.org/CodeSystem/task-code|"
                                                              "identity-review"}).json()["total"] == 0

        pairs = _inbox(http)
        assert DELIVERED <= pairs, DELIVERED - pairs
        zhv = httpx.get(f"{http}/sandbox/inbox/ZHV001").json()["received"]
        assert all(e["payload"]["resourceType"] == "Communication" for e in zhv)
        assert httpx.get(f"{http}/sandbox/inbox/NOPE01").status_code == 404

        # the docs: the non-FHIR endpoints, tagged; the CapabilityStatement
        spec = httpx.get(f"{http}/openapi.json").json()
        for path, tag in (("/hl7v2", "hl7v2"), ("/ingest/health-visiting", "ingest"), ("/ingest/gp", "ingest"),
                          ("/sandbox/clock", "sandbox"), ("/sandbox/inbox", "sandbox"),
                          ("/sandbox/inbox/{ods}", "sandbox")):
            assert tag in next(iter(spec["paths"][path].values()))["tags"], path
        assert httpx.get(f"{http}/docs").status_code == 200
        assert httpx.get(f"{http}/fhir/metadata").json()["resourceType"] == "CapabilityStatement"

        # every example is accepted: HL7 v2 by `carethread sandbox send`, the export and the GP bundles over HTTP
        files = [EXAMPLES / "hl7v2" / f"{event}.hl7" for event in EVENTS]
        sent = subprocess.run([sys.executable, "-m", "adapter.cli", "sandbox", "send", "--mllp-port",
                               str(svc.mllp_port), *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.count("\nMSA|AA|") == len(EVENTS), sent.stdout
        export = sorted((EXAMPLES / "health-visiting").iterdir())
        r = httpx.post(f"{http}/ingest/health-visiting", files=[("file", (p.name, p.read_bytes(), "text/csv"))
                                                                 for p in export], timeout=30)
        assert r.status_code == 200 and not [i for i in r.json()["issue"] if i["severity"] == "error"], r.text
        counts = {x["url"]: x["valueInteger"] for x in r.json()["extension"][0]["extension"]}
        assert counts["accepted"] > 0 and counts["errors"] == counts["rejected"] == 0, counts
        for bundle in sorted((EXAMPLES / "gp").glob("*.json")):
            r = httpx.post(f"{http}/ingest/gp", content=bundle.read_bytes(),
                           headers={"Content-Type": "application/fhir+json"}, timeout=30)
            assert r.status_code == 200 and not [i for i in r.json()["issue"] if i["severity"] == "error"], r.text
        # the story's people are as they were
        assert _codes(httpx.get(f"{http}/fhir/Flag", params={"patient.identifier": f"{NHS}|{MOTHER}"}).json()) \
            == mother
    finally:
        assert stop_service(svc) == 0

    # a restart keeps the story and its time, and does not seed again
    again = start_service(tmp_path, "sandbox")
    try:
        assert httpx.get(f"{again.http}/sandbox/clock").json()["now"] >= "2027-02-05T09:00"
        assert httpx.get(f"{again.http}/fhir/Flag", params={"patient.identifier": f"{NHS}|{MOTHER}"}).json()["total"] \
            >= 3
    finally:
        assert stop_service(again) == 0


# -- the README walkthrough, as written ---------------------------------------------------------------------

README = ROOT / "sandbox" / "README.md"
DEFAULT_PORTS = (8080, 2575)


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is not in use
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _start(command: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sandbox exited before ready: {lines} {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        lines.append(line)
        if " ready: " in line:
            return proc, lines


def _stop(proc: subprocess.Popen[str]) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if not all(_free(p) for p in DEFAULT_PORTS):
        pytest.skip("the README uses the default ports 8080 and 2575, and one is in use on this machine")
    blocks = [b.strip() for b in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)]
    start = "carethread sandbox"
    assert blocks[0] == start and "carethread sandbox reset" in blocks
    # nothing substituted: only where the database lives (the default would be the engineer's own sandbox)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "CARETHREAD_DB": str(tmp_path / "walkthrough.sqlite3"), "PYTHONUNBUFFERED": "1"}
    proc, lines = _start(start, env)
    try:
        assert any(line.startswith("sandbox: story seeded") for line in lines), lines
        for block in blocks[1:]:
            if block == "carethread sandbox reset":  # "Stop the sandbox (Ctrl-C), then:"
                assert _stop(proc) == 0
                done = subprocess.run(["bash", "-ec", block], cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=60)
                assert done.returncode == 0, done.stderr
                proc, lines = _start(start, env)  # the next start seeds the story again
                assert any(line.startswith("sandbox: story seeded;") for line in lines), lines
                continue
            done = subprocess.run(["bash", "-ec", block], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, (block, done.stdout[-2000:], done.stderr[-2000:])
            assert done.stdout.strip(), block
            if "sandbox send" in block:
                assert "MSA|AA|" in done.stdout
            if "$safeguarding-summary" in block:
                assert '"Composition"' in done.stdout
            if "history-of-child-safeguarding" in block:
                assert re.search(r'"total":\s*[1-9]', done.stdout), done.stdout[-2000:]
            if "/sandbox/inbox" in block:
                assert '"ZHV001"' in done.stdout
    finally:
        if proc.poll() is None:
            assert _stop(proc) == 0
