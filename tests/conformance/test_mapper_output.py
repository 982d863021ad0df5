"""What the current maternity mapper emits for the synthetic HL7 v2 samples validates against Carethread's
profiles (and against the UK Core profiles it declares in meta.profile) with no errors."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.conformance import ProfileSet
from adapter.inbound.hl7v2 import read_message
from adapter.mapping.codes import load_code_tables
from adapter.mapping import MappingContext, map_message

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "sandbox" / "samples" / "hl7v2").glob("*.hl7")) + sorted(
    (ROOT.parent / "shared" / "samples" / "hl7v2").glob("*.hl7"))
CODES = load_code_tables()


def _map(raw: bytes, birth_date: str | None = None) -> list[dict[str, Any]]:
    msg, header = read_message(raw, accepted_processing_ids=frozenset("PTD"))
    ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"), CODES,
                         lambda _: birth_date)
    return map_message(msg, header, ctx).resources


def _errors(profiles: ProfileSet, resources: Iterable[dict[str, Any]], ours: bool) -> list[tuple[str, str, str]]:
    out = []
    for r in resources:
        profile = profiles.default_profile(r["resourceType"]) if ours else None
        out += [(r["resourceType"], i.code, i.expression) for i in profiles.validate(r, profile) if i.severity == "error"]
    return out


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 16


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
@pytest.mark.parametrize("birth_date", [None, "2015-06-01"])
def test_sample_maps_to_valid_resources(profiles: ProfileSet, path: Path, birth_date: str | None) -> None:
    resources = _map(path.read_bytes(), birth_date)
    assert resources
    assert _errors(profiles, resources, ours=True) == []
    assert _errors(profiles, resources, ours=False) == []


def test_synthetic_bench_messages_map_to_valid_resources(profiles: ProfileSet) -> None:
    spec = importlib.util.spec_from_file_location("synthetic", ROOT / "bench" / "synthetic.py")
    assert spec is not None and spec.loader is not None
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    resources = [r for raw in synthetic.messages(300) for r in _map(raw)]
    assert {r["resourceType"] for r in resources} >= {"Patient", "RelatedPerson", "Encounter", "Appointment", "Flag"}
    assert _errors(profiles, resources, ours=True) == []
