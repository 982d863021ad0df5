"""GP Connect golden cases (tests/golden/gp/): STU3 payloads read as the pipeline reads them.

    tests/golden/gp/<NNN-what>.json            a synthetic payload (Bundle, or a bare Patient / Appointment)
    tests/golden/gp/<NNN-what>.json.ref        or: one line, a path (from the repo root) to a public sample
                                               kept elsewhere (../shared/samples/gpconnect_stu3/…, not copied)
    tests/golden/gp/<NNN-what>.expected.json   what read_bundle returns, keys sorted
    tests/golden/gp/cases.yaml                 per case: what it shows, the elements it relies on

``traces()`` is the union of the mapping files these cases run (``stu3/<Type>.yaml`` diffs, the
``json/feeds/gp_*.yaml`` feeds and what they use): the golden meta-test counts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapter.inbound.gpconnect import GpBundle, read_bundle
from adapter.mapping import load_mappings

__all__ = ["GOLDEN", "MAPPINGS", "TZ", "NOW", "PRACTICE", "STORED_BIRTH_DATE", "GpCase", "cases", "run", "dumps",
           "traces"]

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "gp"
MAPPINGS = load_mappings()
TZ = ZoneInfo("Europe/London")
NOW = "2026-01-01T00:00:00+00:00"  # the time of mapping (Provenance.recorded without a bundle time)
PRACTICE = "Y12345"  # the practice the caller names (used when the payload names none)
STORED_BIRTH_DATE = "2016-01-01"  # what the store knows of a Patient only referenced (a child)


@dataclass(frozen=True)
class GpCase:
    input_path: Path  # the .json or .json.ref file

    @property
    def stem(self) -> str:
        return self.input_path.name.split(".", 1)[0]

    @property
    def id(self) -> str:
        return f"gp/{self.stem}"

    @property
    def expected_path(self) -> Path:
        return self.input_path.with_name(f"{self.stem}.expected.json")

    @property
    def source_path(self) -> Path:
        if self.input_path.name.endswith(".ref"):
            return (ROOT / self.input_path.read_text(encoding="utf-8").strip()).resolve()
        return self.input_path

    @cached_property
    def payload(self) -> bytes:
        return self.source_path.read_bytes()


def cases() -> list[GpCase]:
    """Every input under tests/golden/gp/, by file name (no list to keep)."""
    return [GpCase(p) for p in sorted(GOLDEN.iterdir())
            if p.name.endswith((".json", ".json.ref")) and not p.name.endswith(".expected.json")]


def run(case: GpCase) -> GpBundle:
    return read_bundle(case.payload, MAPPINGS, tz=TZ, practice=PRACTICE, birth_date_of=lambda _id: STORED_BIRTH_DATE,
                       now=NOW)


def _plain(bundle: GpBundle) -> dict[str, Any]:
    return {
        "control_id": bundle.control_id, "practice": bundle.practice, "patient_id": bundle.patient_id,
        "patient_ref": bundle.patient_ref, "source_time": bundle.source_time,
        "entries": [{"index": e.index, "resources": e.resources,
                     "issues": [{"severity": i.severity, "code": i.code, "location": i.location} for i in e.issues]}
                    for e in bundle.entries],
    }


def dumps(bundle: GpBundle) -> str:
    return json.dumps(_plain(bundle), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def traces() -> set[str]:
    """The mapping files the GP cases run (those whose referenced sample is present)."""
    ran: set[str] = set()
    for case in cases():
        if case.source_path.exists():
            ran |= set(run(case).trace.files)
    return ran
