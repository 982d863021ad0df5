"""``GET /fhir/Patient/{id}/$safeguarding-summary`` latency over HTTP with 100,000 persons in the store.

    .venv/bin/python bench/summary.py [--persons 100000] [--requests 1000] [--seed 0] [--keep DIR]

1. Loads ``--persons`` synthetic persons straight through the store API (no pipeline: big transactions,
   synchronous OFF), in the shapes the pipeline and identity service write: per person one to three source
   Patients (maternity, health visiting, GP; ``link`` refer to the master) and a master Patient (tag
   record-type#master, ``link`` seealso to each), identity members with their blocking keys
   (``tx.set_identity_member``), an Encounter per source record (service provider by ODS code). A fifth are
   flagged: an active source Flag and an ended one, each with its message's Provenance, for some a derived
   Flag on the master whose Provenance names the rule and the evidence; children get was-not-brought no-shows
   across sources (some older than 12 months), a third of persons a father or partner (RelatedPerson), and
   some flagged persons a pending notification (Communication in-progress to a configured organisation).
2. Starts ``carethread serve`` on that database (a subprocess, free ports), warms up, then times
   ``--requests`` sequential summaries (httpx, one connection) of random flagged persons, half by master id
   and half by a source record's id, and prints p50 / p90 / p99 / max and the mean Bundle size.

Target (issue 6): p99 under 50 ms. Synthetic data only (NHS numbers in the 999 range, made-up names).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from adapter.identity import LINK_MATCH_EXT, MASTER_TAG, record_text  # noqa: E402
from adapter.reconcile.engine import blocking_keys  # noqa: E402
from adapter.reconcile.standardise import from_patient  # noqa: E402
from adapter.store.sqlite import SqliteStore  # noqa: E402

CT = "https://fhir.carethread.org"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
SOURCES = ("maternity", "health-visiting", "gp")
PRACTICES = ("Y12345",)  # the sandbox's configured GP practice (sandbox/organisations.yaml)
TRUSTS = ("RX1", "RX2", "RX3")
FLAG_CODES = ("342191000000101", "919461000000108", "836881000000105", "1064961000000107", "764841000000100")
RULES = ("pregnancy-under-18-or-history", "was-not-brought-pattern", "young-father", "adult-setting-presentation")
SYLLABLES = ["an", "ber", "cot", "dil", "em", "fro", "gan", "hul", "ist", "jor", "kel", "lom", "mar", "nes"]
ATTENDANCE = f"{CT}/StructureDefinition/Extension-Carethread-AttendanceOutcome"


def nhs_number(rng: random.Random) -> str:
    while True:
        digits = [9, 9, 9] + [rng.randrange(10) for _ in range(6)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return "".join(map(str, digits)) + str(check % 11)


def name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def rid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def ref(rtype: str, i: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{i}"}


def flag(fid: str, subject: str, code: str, source: str, start: str, end: str | None) -> dict[str, Any]:
    return {"resourceType": "Flag", "id": fid,
            "meta": {"profile": [f"{CT}/StructureDefinition/CarethreadFlag"], "source": f"{CT}/source/{source}#{fid[:8]}"},
            "status": "inactive" if end else "active",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety"}]},
                         {"coding": [{"system": f"{CT}/CodeSystem/flag-category", "code": "safeguarding"}]}],
            "code": {"coding": [{"system": SNOMED, "code": code}]}, "subject": ref("Patient", subject),
            "period": {"start": start, **({"end": end} if end else {})}}


def source_provenance(pid: str, targets: list[str], source: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "id": pid, "meta": {"source": f"{CT}/source/{source}#{pid[:8]}"},
            "target": [{"reference": t} for t in targets], "recorded": "2026-01-01T00:00:00+00:00",
            "agent": [{"who": {"display": f"{source} feed"}}],
            "entity": [{"role": "source", "what": {"identifier": {"system": f"{CT}/Id/{source}/message", "value": pid[:12]}}}]}


def person(rng: random.Random, now: date) -> tuple[list[dict[str, Any]], list[tuple[str, str, str, list[str]]], dict[str, Any]]:
    """The resources of one synthetic person, their identity members and what to query them by."""
    out: list[dict[str, Any]] = []
    child = rng.random() < 0.5
    born = now - timedelta(days=rng.randrange(30, 17 * 365) if child else rng.randrange(18 * 365, 60 * 365))
    given, family, nhs = name(rng), name(rng), nhs_number(rng)
    gender = rng.choice(("male", "female"))
    master_id = rid(rng)
    sources = rng.sample(SOURCES, rng.randint(1, 3))
    trust = rng.choice(TRUSTS)
    records: list[dict[str, Any]] = []
    members = []
    for source in sources:
        pid = rid(rng)
        patient = {"resourceType": "Patient", "id": pid,
                   "meta": {"profile": [f"{CT}/StructureDefinition/CarethreadPatient"], "source": f"{CT}/source/{source}#{pid[:8]}"},
                   "identifier": [{"system": NHS, "value": nhs}, {"system": f"{CT}/Id/{source}/local", "value": pid[:10]}],
                   "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": born.isoformat(),
                   "generalPractitioner": [{"type": "Organization", "identifier": {"system": ODS, "value": PRACTICES[0]}}],
                   "link": [{"extension": [{"url": LINK_MATCH_EXT, "valueCode": "certain"}],
                             "other": ref("Patient", master_id), "type": "refer"}]}
        if source == "maternity":
            patient["managingOrganization"] = {"type": "Organization", "identifier": {"system": ODS, "value": trust}}
        records.append(patient)
        rec = from_patient(patient, source=source)
        members.append((pid, master_id, record_text(rec, grade="certain", rule="deterministic-nhs-dob"), blocking_keys(rec)))
        out.append({"resourceType": "Encounter", "id": rid(rng), "meta": {"source": f"{CT}/source/{source}#e"},
                    "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": ref("Patient", pid),
                    "period": {"start": (now - timedelta(days=rng.randrange(1, 700))).isoformat()},
                    "serviceProvider": {"type": "Organization", "identifier": {
                        "system": ODS, "value": trust if source == "maternity" else PRACTICES[0]}}})
    master = {"resourceType": "Patient", "id": master_id,
              "meta": {"profile": [f"{CT}/StructureDefinition/CarethreadPatient"], "tag": [MASTER_TAG],
                       "source": f"{CT}/source/identity#{master_id}"},
              "active": True, "identifier": [{"system": NHS, "value": nhs}], "name": [{"family": family, "given": [given]}],
              "gender": gender, "birthDate": born.isoformat(),
              "link": [{"extension": [{"url": LINK_MATCH_EXT, "valueCode": "certain"}], "other": ref("Patient", r["id"]),
                        "type": "seealso"} for r in sorted(records, key=lambda r: r["id"])]}
    out[:0] = [master, *records]
    flagged = rng.random() < 0.2
    if flagged:
        for end in (None, "2024-03-31"):
            src = rng.randrange(len(records))
            fid = rid(rng)
            out.append(flag(fid, records[src]["id"], rng.choice(FLAG_CODES), sources[src],
                            (now - timedelta(days=rng.randrange(400, 2000))).isoformat(), end))
            out.append(source_provenance(rid(rng), [f"Patient/{records[src]['id']}", f"Flag/{fid}"], sources[src]))
        if rng.random() < 0.5:  # a derived flag on the master, its rule and evidence
            fid = rid(rng)
            out.append(flag(fid, master_id, "878111000000109", "rules", (now - timedelta(days=rng.randrange(1, 300))).isoformat(), None))
            rule = rng.choice(RULES)
            evidence = [o for o in out if o["resourceType"] in ("Encounter", "Flag") and o["id"] != fid][:3]
            out.append({"resourceType": "Provenance", "id": rid(rng), "meta": {"source": f"{CT}/source/rules#{rule}"},
                        "target": [ref("Flag", fid)], "recorded": "2026-01-01T00:00:00+00:00",
                        "policy": [f"{CT}/safeguarding-rule/{rule}"],
                        "reason": [{"coding": [{"system": f"{CT}/CodeSystem/safeguarding-rule", "code": rule}]}],
                        "agent": [{"who": {"display": "Carethread safeguarding rules"}}],
                        "entity": [{"role": "source", "what": ref(o["resourceType"], o["id"])} for o in evidence]})
            if rng.random() < 0.5:
                out.append({"resourceType": "Communication", "id": rid(rng), "meta": {"source": f"{CT}/source/rules#{rule}"},
                            "status": "in-progress", "priority": "urgent", "subject": ref("Patient", master_id),
                            "recipient": [ref("Organization", "ods-ZSG001")], "sent": "2026-11-01T08:00:00+00:00",
                            "reasonCode": [{"coding": [{"system": f"{CT}/CodeSystem/safeguarding-rule", "code": rule}]}],
                            "payload": [{"contentReference": ref("Flag", fid)}]})
    if child:
        for _ in range(rng.choice((0, 1, 2, 3, 4))):
            src = rng.randrange(len(records))
            start = datetime.combine(now, datetime.min.time(), UTC) - timedelta(days=rng.randrange(1, 500), hours=9)
            out.append({"resourceType": "Appointment", "id": rid(rng),
                        "meta": {"source": f"{CT}/source/{sources[src]}#a"}, "status": "noshow",
                        "extension": [{"url": ATTENDANCE, "valueCodeableConcept": {"coding": [
                            {"system": f"{CT}/CodeSystem/attendance-outcome", "code": "was-not-brought"}]}}],
                        "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat(),
                        "participant": [{"actor": ref("Patient", records[src]["id"]), "status": "accepted"}]})
    if rng.random() < 0.33:
        src = rng.randrange(len(records))
        out.append({"resourceType": "RelatedPerson", "id": rid(rng), "meta": {"source": f"{CT}/source/{sources[src]}#r"},
                    "active": True, "patient": ref("Patient", records[src]["id"]),
                    "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                                  "code": rng.choice(("FTH", "SIGOTHR", "GRMTH"))}]}],
                    "name": [{"family": name(rng), "given": [name(rng)]}],
                    "birthDate": (now - timedelta(days=rng.randrange(15 * 365, 50 * 365))).isoformat()})
    probe = {"master": master_id, "sources": [r["id"] for r in records]}
    return out, members, probe if flagged else {}


def load(db: Path, persons: int, seed: int) -> tuple[list[dict[str, Any]], int]:
    rng = random.Random(seed)
    now = datetime.now(UTC).date()
    store = SqliteStore(db, synchronous="OFF", writer_cache_mb=256)
    probes: list[dict[str, Any]] = []
    written = 0
    batch = 5000
    try:
        for first in range(0, persons, batch):
            with store.transaction() as tx:
                for _ in range(min(batch, persons - first)):
                    resources, members, probe = person(rng, now)
                    for r in resources:
                        tx.put(r)
                    for m in members:
                        tx.set_identity_member(*m)
                    written += len(resources)
                    if probe:
                        probes.append(probe)
    finally:
        store.close()
    return probes, written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path,
                        help="a directory for the database (kept, and reused if it holds one); default: a "
                             "temporary directory, removed at the end")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="carethread-summary-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "carethread.sqlite3"
    probes_file = work / "probes.json"
    if db.exists() and probes_file.exists():
        probes = json.loads(probes_file.read_text())
        print(f"reusing {db}: {len(probes)} flagged persons")
    else:
        started = time.perf_counter()
        probes, written = load(db, args.persons, args.seed)
        probes_file.write_text(json.dumps(probes))
        print(f"loaded {args.persons} persons ({written} resources, {len(probes)} flagged) in "
              f"{time.perf_counter() - started:.1f} s")

    http_port, mllp_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "serve", "--host", "127.0.0.1", "--http-port", str(http_port),
         "--mllp-port", str(mllp_port), "--db", str(db)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        while " ready: " not in (line := proc.stdout.readline()):
            if not line:
                print("serve exited:", proc.stderr.read()[-2000:] if proc.stderr else "", file=sys.stderr)
                return 1
        rng = random.Random(args.seed + 1)
        base = f"http://127.0.0.1:{http_port}/fhir"
        with httpx.Client(timeout=30) as client:
            def one() -> tuple[float, int, int]:
                probe = rng.choice(probes)
                pid = probe["master"] if rng.random() < 0.5 else rng.choice(probe["sources"])
                t0 = time.perf_counter()
                response = client.get(f"{base}/Patient/{pid}/$safeguarding-summary")
                elapsed = time.perf_counter() - t0
                if response.status_code != 200:
                    raise SystemExit(f"HTTP {response.status_code}")
                return elapsed, len(response.content), len(response.json()["entry"])
            for _ in range(min(200, args.requests)):
                one()
            times, sizes, entries = [], [], []
            for _ in range(args.requests):
                t, size, n = one()
                times.append(t * 1000)
                sizes.append(size)
                entries.append(n)
        print(f"$safeguarding-summary over HTTP, {args.requests} sequential requests, {args.persons} persons: "
              f"p50 {percentile(times, 0.50):.1f} ms, p90 {percentile(times, 0.90):.1f} ms, "
              f"p99 {percentile(times, 0.99):.1f} ms, max {max(times):.1f} ms; mean {statistics.mean(entries):.1f} "
              f"entries, {statistics.mean(sizes) / 1024:.1f} KiB per Bundle")
        print(json.dumps({"persons": args.persons, "requests": args.requests,
                          "p50_ms": round(percentile(times, 0.50), 2), "p99_ms": round(percentile(times, 0.99), 2)}))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)  # ~1.5 GB at 100,000 persons
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
