"""Store write throughput: transactions of 1 archive row + 5 resource puts, as one inbound message makes.

    .venv/bin/python bench/store_put.py [--transactions 5000] [--dir DIR]

Runs with synchronous FULL and NORMAL on a fresh database each (in DIR, default a temporary directory: put it
on the disk you mean to measure). Passes, each of --transactions messages:

  create   one message per transaction, 5 new resources (Patient, RelatedPerson, Encounter, Appointment,
           Flag: 26 search index rows in all), random ids, names and NHS numbers as real traffic has;
  same     the same messages again: nothing changes (the duplicate / re-sent message path);
  update   the same resources with changed content: 3 of 5 get a new version, changed index rows rewritten;
  batch    new messages, --batch messages per transaction (bulk load: one commit, one sync per batch).

Synthetic data only (NHS numbers in the 999 test range, made-up names).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from adapter.store.sqlite import SqliteStore

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"


SYLLABLES = ["an", "ber", "cot", "dil", "em", "fro", "gan", "hul", "ist", "jor", "kel", "lom", "mar", "nes"]


def synthetic_nhs_number(rng: random.Random) -> str:
    """A random 999-prefixed number with a valid Modulus 11 check digit (the synthetic test range)."""
    while True:
        digits = [9, 9, 9] + [rng.randrange(10) for _ in range(6)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return "".join(map(str, digits)) + str(check % 11)


def synthetic_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def message(n: int, *, revision: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(n)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(5)]
    nhs_number, family, mother, given = (synthetic_nhs_number(rng), synthetic_name(rng), synthetic_name(rng),
                                         synthetic_name(rng))
    patient_ref = {"reference": f"Patient/{ids[0]}"}
    return [
        {
            "resourceType": "Patient", "id": ids[0],
            "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
            "identifier": [
                {"system": NHS, "value": nhs_number},
                {"system": "https://fhir.carethread.org/Id/maternity/RX1/MR", "value": f"MRN{n:07d}"},
            ],
            "name": [{"family": family, "given": [given, f"R{revision}"]}],
            "gender": "female", "birthDate": "2026-03-01",
        },
        {
            "resourceType": "RelatedPerson", "id": ids[1], "patient": patient_ref,
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                          "code": "MTH"}]}],
            "name": [{"family": mother, "given": ["Ann"]}],
        },
        {
            "resourceType": "Encounter", "id": ids[2], "status": "finished" if revision else "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": patient_ref, "period": {"start": "2026-03-01T09:00:00+00:00"},
            "identifier": [{"system": "https://fhir.carethread.org/Id/maternity/RX1/VN", "value": f"V{n}"}],
        },
        {
            "resourceType": "Appointment", "id": ids[3], "status": "noshow" if revision else "booked",
            "start": "2026-03-08T09:00:00+00:00", "end": "2026-03-08T09:30:00+00:00",
            "participant": [{"actor": patient_ref, "status": "accepted"}],
        },
        {
            "resourceType": "Flag", "id": ids[4], "status": "active",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category",
                                      "code": "safety"}]}],
            "code": {"coding": [{"system": SNOMED, "code": "342191000000101"}]},
            "subject": patient_ref, "period": {"start": "2026-03-01"},
        },
    ]


def run(store: SqliteStore, messages: range, revision: int, batch: int = 1) -> tuple[float, int]:
    """Put ``messages`` (batch per transaction); returns (seconds, versions written). Building the test dicts
    is excluded from the time."""
    prepared = [(n, message(n, revision=revision)) for n in messages]
    written = 0
    start = time.perf_counter()
    for first in range(0, len(prepared), batch):
        with store.transaction() as tx:
            for n, resources in prepared[first:first + batch]:
                archive_id = tx.archive(channel="file", source="maternity", sender="BENCH^RX1",
                                        control_id=f"{revision}-{n}", payload=b"MSH|^~\\&|BENCH" + b"x" * 600)
                for resource in resources:
                    written += tx.put(resource, source_time="2026-03-01T09:00:00+00:00")[1]
                tx.set_status(archive_id, "AA")
    return time.perf_counter() - start, written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100, help="messages per transaction in the batch pass")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    n = args.transactions
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"{n} messages of 1 archive row + 5 puts per pass; database in {tmp}")
        for synchronous in ("FULL", "NORMAL"):
            with SqliteStore(Path(tmp) / f"bench-{synchronous}.db", synchronous=synchronous) as store:
                passes = (("create", range(n), 0, 1), ("same", range(n), 0, 1), ("update", range(n), 1, 1),
                          (f"batch{args.batch}", range(n, 2 * n), 0, args.batch))
                for label, messages, revision, batch in passes:
                    elapsed, written = run(store, messages, revision, batch)
                    print(f"  synchronous={synchronous:<6} {label:<8}: {n / elapsed:7.0f} messages/s "
                          f"{n * 5 / elapsed:7.0f} puts/s  ({written:5d} versions written, {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
