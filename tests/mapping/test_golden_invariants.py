"""Rules every golden case obeys, whatever it maps (after FHIR-Converter's rule-based tests), and the
meta-test that every mapping file runs in at least one golden case."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapter.fhir import validate_r4
from adapter.mapping.codes import DEFAULT_MAPPINGS_DIR
from adapter.mapping.loader import read_yaml
from tests.mapping.golden import MAPPINGS, Case, discover, run

CASES = [c for c in discover("hl7v2") if c.source_path.exists()]
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([0-9a-f-]{36})$")
_TOKEN = re.compile(r"[A-Za-z]{3,}|\d{3,}")


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, path)]
    return [(path, value)] if isinstance(value, str) else []


def _corpus() -> set[str]:
    """Every word and number in the mapping files and code tables (constants and codes may be output)."""
    words = {"maternity"}  # the feed name (ctx:source)
    for path in DEFAULT_MAPPINGS_DIR.rglob("*.yaml"):
        data = read_yaml(path)
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack += list(item.keys()) + list(item.values())
            elif isinstance(item, list):
                stack += item
            elif isinstance(item, str):
                words |= {t.lower() for t in _TOKEN.findall(item)}
    return words


CORPUS = _corpus()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invariants(case: Case) -> None:
    result = run(case)
    if result.mapped is None:
        assert [i["severity"] for i in result.issues] == ["E"]
        return
    resources = result.mapped.resources
    keys = [(r["resourceType"], r["id"]) for r in resources]
    assert len(keys) == len(set(keys)), "(type, id) pairs are unique"
    for resource in resources:
        validate_r4(resource)
    for resource in resources:
        for path, value in _strings(resource):
            if path.endswith("reference"):
                m = _REFERENCE.match(value)
                assert m and (m.group(1), m.group(2)) in keys, f"{path} does not resolve"
    if result.header.message_type == "ADT" and result.header.trigger != "A40":
        assert sum(r["resourceType"] == "Patient" for r in resources) == 1
    assert resources[-1]["resourceType"] == "Provenance"
    # mapping again gives the same ids (and the same resources)
    assert [(r["resourceType"], r["id"]) for r in run(case).resources] == keys
    # nothing is invented: every word and number comes from the input, a code table or a mapping file
    text = case.payload.decode("utf-8", errors="replace").lower()
    text += "\n" + re.sub(r"[ ^~&|\\]", "", text)  # derived values join parts (area + local number, spaces)
    for resource in result.resources:  # normalised: volatile values (the time of mapping) left out
        for path, value in _strings(resource):
            if path in ("id", "meta.source") or path.endswith("reference"):
                continue
            for token in _TOKEN.findall(value):
                assert token.lower() in text or token.lower() in CORPUS, f"{case.id}: {path} has an invented value"


def test_every_mapping_file_runs_in_at_least_one_golden_case() -> None:
    """HL7 v2 golden cases, the health visiting example export and the GP golden bundles, together."""
    from tests.mapping import gp_cases, hv_cases

    ran: set[str] = hv_cases.traces() | gp_cases.traces()
    for case in CASES:
        result = run(case)
        if result.mapped is not None:
            ran |= set(result.mapped.trace.files)
    never = sorted(set(MAPPINGS.files) - ran)
    assert never == [], f"mapping files no golden case runs: {never}"


def test_every_message_file_has_its_golden_folder() -> None:
    folders = {c.message_file for c in CASES}
    messages = {name.rsplit("/", 1)[1].removesuffix(".yaml") for name in MAPPINGS.files
                if name.startswith("hl7v2/messages/") and not name.rsplit("/", 1)[1].startswith("_")}
    assert messages == folders
