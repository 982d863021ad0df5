"""The STU3 -> R4 diff grammar (stu3/<Resource>.yaml, Stu3DiffFile): each rule on a small resource, the
order they apply in, and what a diff file may not say.  The shipped GP Connect diffs are exercised by
tests/inbound/test_gpconnect.py."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from adapter.errors import ConfigError
from adapter.mapping import MappingSet, load_mappings
from adapter.mapping.engine import apply_stu3_diff, stu3_diff_files
from adapter.records import Issue

FILES = {
    "stu3/_common.yaml": """
        resource: "*"
        code_system_prefixes: {"http://hl7.org/fhir/v3/": "http://terminology.hl7.org/CodeSystem/v3-"}
        code_systems: {"https://example.org/stu3/cs": "https://example.org/r4/cs"}
        extension_urls: {"https://example.org/stu3/ext": "https://example.org/r4/ext"}
        drop_extensions: ["https://example.org/stu3/gone"]
    """,
    "stu3/Thing.yaml": """
        resource: Thing
        profile: https://example.org/StructureDefinition/Thing
        extension_to_element: {"https://example.org/stu3/recorded": recorded}
        drop: [old, part.stale]
        values: {kind: {a: alpha, z: null}}
        when_true: {negated: {status: not-done}}
        code_to_concept: {state: https://example.org/state}
        text_to_concept: [reasonText]
        to_annotation: [comment]
        split:
          related: {by: type, value: target, into: {has-member: hasMember, derived-from: derivedFrom}}
        rename:
          comment: note
          detail.reason: reasonCode
          part.seq: part.number
          part: parts
        wrap: [note, category]
        unwrap: [single]
        defaults: {class: {code: UNK}}
        code_systems: {"https://example.org/stu3/cs": "https://example.org/thing/cs"}
        extension_urls:
          "https://example.org/stu3/channel": {url: "https://example.org/r4/channel", code_to_concept: "https://example.org/channels"}
    """,
    "stu3/Other.yaml": """
        resource: Other
        rename: {date: occurrenceDateTime}
    """,
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).strip() + "\n")
    return root


@pytest.fixture()
def mset(tmp_path: Path) -> MappingSet:
    return load_mappings(write(tmp_path / "m", FILES))


def test_each_rule(mset: MappingSet) -> None:
    stu3: dict[str, Any] = {
        "resourceType": "Thing", "id": "t1",
        "extension": [{"url": "https://example.org/stu3/recorded", "valueDateTime": "2024-01-01"},
                      {"url": "https://example.org/stu3/ext", "valueBoolean": True},
                      {"url": "https://example.org/stu3/gone", "valueString": "x"},
                      {"url": "https://example.org/stu3/channel", "valueCode": "Video"}],
        "old": 1, "kind": "a", "negated": True, "state": "active", "reasonText": "because", "comment": "a note",
        "related": [{"type": "has-member", "target": {"reference": "Thing/2"}},
                    {"type": "sequel-to", "target": {"reference": "Thing/3"}}],
        "detail": {"reason": [{"text": "r"}]},
        "part": [{"seq": 1, "stale": True}, {"seq": 2}],
        "category": {"coding": [{"system": "http://hl7.org/fhir/v3/ActCode ", "code": "AMB"},
                                {"system": "https://example.org/stu3/cs", "code": "c"}]},
        "single": [{"text": "first"}, {"text": "second"}],
    }
    before = copy.deepcopy(stu3)
    warnings: list[Issue] = []
    r4 = apply_stu3_diff(mset, stu3, warnings=warnings, location="Bundle.entry[0].resource")
    assert stu3 == before  # the input is never changed
    assert r4 == {
        "resourceType": "Thing", "id": "t1",
        "extension": [{"url": "https://example.org/r4/ext", "valueBoolean": True},
                      {"url": "https://example.org/r4/channel",
                       "valueCodeableConcept": {"coding": [{"system": "https://example.org/channels", "code": "Video"}]}}],
        "recorded": "2024-01-01",
        "kind": "alpha", "status": "not-done",
        "state": {"coding": [{"system": "https://example.org/state", "code": "active"}]},
        "reasonText": {"text": "because"},
        "note": [{"text": "a note"}],
        "hasMember": [{"reference": "Thing/2"}],
        "reasonCode": [{"text": "r"}],
        "parts": [{"number": 1}, {"number": 2}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                 {"system": "https://example.org/thing/cs", "code": "c"}]}],  # the type's own wins
        "single": {"text": "first"},
        "class": {"code": "UNK"},
    }
    assert [(w.severity, w.location) for w in warnings] == [("W", "Bundle.entry[0].resource.related"),
                                                          ("W", "Bundle.entry[0].resource.single")]


def test_a_null_value_drops_the_element_and_unlisted_codes_pass(mset: MappingSet) -> None:
    assert "kind" not in apply_stu3_diff(mset, {"resourceType": "Thing", "kind": "z"})
    assert apply_stu3_diff(mset, {"resourceType": "Thing", "kind": "q"})["kind"] == "q"
    assert "status" not in apply_stu3_diff(mset, {"resourceType": "Thing", "negated": False})


def test_defaults_never_replace_what_was_sent(mset: MappingSet) -> None:
    assert apply_stu3_diff(mset, {"resourceType": "Thing", "class": {"code": "AMB"}})["class"] == {"code": "AMB"}


def test_references_are_rewritten_in_the_same_pass_and_contained_resources_get_their_own_diff(mset: MappingSet) -> None:
    stu3 = {"resourceType": "Thing", "id": "t1", "subject": {"reference": "Patient/p"},
            "contained": [{"resourceType": "Other", "id": "o", "date": "2024", "who": {"reference": "Patient/p"}}],
            "detail": {"reason": [{"text": "r"}]}}
    r4 = apply_stu3_diff(mset, stu3, references=lambda ref: ref.upper())
    assert r4["subject"] == {"reference": "PATIENT/P"}
    assert r4["contained"] == [{"resourceType": "Other", "id": "o", "occurrenceDateTime": "2024",
                                "who": {"reference": "PATIENT/P"}}]


def test_only_the_common_file_for_a_type_without_its_own(mset: MappingSet) -> None:
    r4 = apply_stu3_diff(mset, {"resourceType": "Patient", "comment": "kept",
                                "extension": [{"url": "https://example.org/stu3/ext", "valueBoolean": False}]})
    assert r4 == {"resourceType": "Patient", "comment": "kept",
                  "extension": [{"url": "https://example.org/r4/ext", "valueBoolean": False}]}
    assert stu3_diff_files(mset, "Patient") == ("stu3/_common.yaml",)
    assert stu3_diff_files(mset, "Thing") == ("stu3/_common.yaml", "stu3/Thing.yaml")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("stu3/_common.yaml", 'resource: "*"\nrename: {a: b}', "only code systems and extension urls"),
    ("stu3/Thing.yaml", "resource: Thing\nrename: {Bad.path: b}", "rename"),
    ("stu3/Thing.yaml", "resource: Thing\nextension_to_element: {u: a}\ndrop_extensions: [u]", "also renamed"),
    ("stu3/Thing.yaml", "resource: Thing\nsplit: {related: {by: type}}", "missing key"),
    ("stu3/Thing.yaml", "resource: Thing\nflatten: [a]", "unknown key 'flatten'"),
])
def test_what_a_diff_file_may_not_say_stops_start_up(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).parent.mkdir(parents=True)
    (tmp_path / name).write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_mappings(tmp_path)
