"""Golden cases: discovery by file name, running one case, normalising its output.

Layout (STYLE §9)::

    tests/golden/hl7v2/<message file stem>/<NNN-what>.hl7        the input (minimal, synthetic)
    tests/golden/hl7v2/<message file stem>/<NNN-what>.hl7.ref    or: one line, a path (from the repo root)
                                                                 to a sample kept elsewhere (not copied)
    tests/golden/hl7v2/<message file stem>/<NNN-what>.expected.json   the mapped resources, a list, keys sorted
    tests/golden/hl7v2/<message file stem>/<NNN-what>.issues.json     warnings / the mapping error, if any
    tests/golden/hl7v2/<message file stem>/cases.yaml            per case: what it shows, the fields it relies on

There is no hand-kept list of cases: every input file is a case, and ``cases.yaml`` must describe it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from adapter.errors import MappingError
from adapter.inbound.er7 import Er7Message
from adapter.inbound.hl7v2 import Header, read_message
from adapter.mapping.loader import load_mappings
from adapter.mapping import MappingContext, MappedMessage, map_message

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
TZ = ZoneInfo("Europe/London")
MAPPINGS = load_mappings()

# The one list of volatile paths: (resourceType, element, only when this input field is empty).
# Provenance.recorded is MSH-7; without MSH-7 it is the time of mapping.
VOLATILE: list[tuple[str, str, str]] = [("Provenance", "recorded", "MSH-7")]


@dataclass(frozen=True)
class Case:
    input_path: Path  # the .hl7 or .hl7.ref file
    description: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def stem(self) -> str:
        return self.input_path.name.split(".", 1)[0]

    @property
    def message_file(self) -> str:
        return self.input_path.parent.name

    @property
    def id(self) -> str:
        return f"{self.input_path.parent.parent.name}/{self.message_file}/{self.stem}"

    @property
    def expected_path(self) -> Path:
        return self.input_path.with_name(f"{self.stem}.expected.json")

    @property
    def issues_path(self) -> Path:
        return self.input_path.with_name(f"{self.stem}.issues.json")

    @property
    def source_path(self) -> Path:
        if self.input_path.name.endswith(".ref"):
            return (ROOT / self.input_path.read_text(encoding="utf-8").strip()).resolve()
        return self.input_path

    @cached_property
    def payload(self) -> bytes:
        return self.source_path.read_bytes()


@dataclass
class Result:
    resources: list[dict[str, Any]]
    issues: list[dict[str, str | None]]
    mapped: MappedMessage | None
    msg: Er7Message
    header: Header


def discover(kind: str = "hl7v2") -> list[Case]:
    cases: list[Case] = []
    for folder in sorted(p for p in (GOLDEN / kind).iterdir() if p.is_dir()):
        described = _descriptions(folder)
        for path in sorted([*folder.glob("*.hl7"), *folder.glob("*.hl7.ref")]):
            cases.append(Case(path, described.get(path.name.split(".", 1)[0], {})))
    return cases


def _descriptions(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / "cases.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def context(header: Header, case: Case, **kw: Any) -> MappingContext:
    stored = case.description.get("stored_birth_date")
    return MappingContext("maternity", header.sending_facility, header.control_id, TZ, MAPPINGS.codes,
                          lambda _id: stored, mappings=kw.pop("mappings", MAPPINGS), **kw)


def run(case: Case, **kw: Any) -> Result:
    msg, header = read_message(case.payload, accepted_processing_ids=frozenset("PTD"))
    try:
        mapped = map_message(msg, header, context(header, case, **kw))
    except MappingError as exc:
        return Result([], [{"severity": "E", "code": exc.code, "location": exc.location}], None, msg, header)
    issues = [{"severity": w.severity, "code": w.code, "location": w.location} for w in mapped.warnings]
    return Result(normalise(mapped.resources, msg), issues, mapped, msg, header)


def normalise(resources: list[dict[str, Any]], msg: Er7Message) -> list[dict[str, Any]]:
    out = json.loads(json.dumps(resources))
    for rtype, element, unless_field in VOLATILE:
        if msg.value(unless_field).strip():
            continue
        for resource in out:
            if resource["resourceType"] == rtype:
                resource.pop(element, None)
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
