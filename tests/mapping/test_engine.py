"""The interpreter on small, purpose-built mapping sets: conditions, the value specs, errors, the trace."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.errors import MappingError
from adapter.inbound.hl7v2 import read_message
from adapter.mapping import MappingSet, load_mappings
from adapter.mapping.engine import MappedMessage, MappingContext, map_message
from tests.hl7builder import message, seg

CODES = {
    "codes/sex.yaml": """
        system: http://hl7.org/fhir/administrative-gender
        map: {M: male, F: female}
    """,
}
MESSAGE = {
    "hl7v2/messages/ADT_A04.yaml": """
        message: ADT^A04
        require: [PID]
        resources:
          - {name: patient, mapping: resources/thing}
    """,
}


def mapping_set(tmp_path: Path, fields: str, vars_: str = "", extra: dict[str, str] | None = None) -> MappingSet:
    files = {**CODES, **MESSAGE, **(extra or {})}
    files["hl7v2/resources/thing.yaml"] = (
        "resource: Patient\nsegment: PID\n"
        + ("vars:\n" + textwrap.indent(textwrap.dedent(vars_).strip(), "  ") + "\n" if vars_ else "")
        + "id: {key: [PID-3]}\nfields:\n" + textwrap.indent(textwrap.dedent(fields).strip(), "  ") + "\n")
    root = tmp_path / "m"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).strip() + "\n")
    return load_mappings(root)


def run(mset: MappingSet, *segments: str, event: str = "ADT^A04") -> MappedMessage:
    msg, header = read_message(message(event, *segments), accepted_processing_ids=frozenset("PTD"))
    ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"),
                         mset.codes, lambda _id: None, mappings=mset)
    return map_message(msg, header, ctx)


def thing(mset: MappingSet, *segments: str) -> dict[str, Any]:
    return run(mset, *segments).resources[0]


PID = seg("PID", {1: "1", 3: "M1^^^RX1^MR~9990001006^^^NHS^NH", 5: "DOE^JANE", 8: "F", 24: "n"})


def test_conditions_present_absent_equals_in_and_unless(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, """
        a: {const: 1, when: {present: PID-5}}
        b: {const: 2, when: {present: PID-6}}
        c: {const: 3, when: {absent: PID-6}}
        d: {const: 4, when: {equals: {PID-24: N}}}          # trimmed, any case
        e: {const: 5, when: {in: {PID-8: [M, F]}}}
        f: {const: 6, when: {in: {PID-9: [X, ""]}}}         # "" is absent
        g: {const: 7, unless: {equals: {PID-8: F}}}
        h: {const: 8, when: {present: [PID-5, PID-8], equals: {PID-8: f}}}   # all must hold
        i: {const: 9, when: {equals: {$sex: $sex_again}}}    # a variable on the right
        j: {const: 10, when: {present: PID}}                 # a segment
    """, vars_="""
        sex: PID-8
        sex_again: {from: PID-8, transform: upper}
    """)
    out = thing(mset, PID)
    assert {k: out.get(k) for k in "abcdefghij"} == {"a": 1, "b": None, "c": 3, "d": 4, "e": 5, "f": 6, "g": None,
                                                     "h": 8, "i": 9, "j": 10}


def test_value_specs(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, """
        first_of: [PID-6, PID-5.2, {const: none}]
        joined: {join: [PID-5.1, PID-6, PID-5.2], sep: " / "}
        keyed: {join: [{const: name}, PID-6, PID-5.1], sep: "|", empty: keep}
        listed: {items: [PID-5.1, {each: PID-3, map: .1}, {const: [x, y]}]}
        unique: {items: [PID-5.1, PID-5.1], unique: true}
        nested: {fields: {a: PID-5.1, b: {fields: {c: PID-99}}}}
        needed: {fields: {system: {const: s}, value: PID-99}, needs: [value]}
        any_of: {fields: {system: {const: s}, a: PID-99, b: PID-5.1}, needs_any: [a, b]}
        ident: {id_of: Patient, key: [PID-5.1]}
        reference: {ref: patient}
        first_rep: {each: PID-3, map: .1, first: true}
        var_key: $sex.code
    """, vars_="""
        sex: {from: PID-8, lookup: sex}
    """)
    out = thing(mset, PID)
    assert out["first_of"] == "JANE"
    assert out["joined"] == "DOE / JANE"
    assert out["keyed"] == "name||DOE"
    assert out["listed"] == ["DOE", "M1", "9990001006", "x", "y"]
    assert out["unique"] == ["DOE"]
    assert out["nested"] == {"a": "DOE"}
    assert "needed" not in out
    assert out["any_of"] == {"system": "s", "b": "DOE"}
    assert len(out["ident"]) == 36 and "reference" not in out  # not produced yet: it is being built
    assert out["first_rep"] == "M1" and out["var_key"] == "female"


def test_constants_are_fresh_objects_every_time(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, "tags: {const: [{code: a}]}")
    first = thing(mset, PID)
    first["tags"][0]["code"] = "changed"
    assert thing(mset, PID)["tags"] == [{"code": "a"}]


def test_unmapped_code_is_an_error_unless_the_mapping_says_warn_or_skip(tmp_path: Path) -> None:
    pid = seg("PID", {1: "1", 3: "M1", 8: "Q"})
    strict = mapping_set(tmp_path / "a", "gender: {from: PID-8, lookup: sex, emit: code}")
    with pytest.raises(MappingError) as info:
        run(strict, pid)
    assert (info.value.code, info.value.location) == ("unmapped-code", "PID-8") and "Q" not in str(info.value)
    warned = run(mapping_set(tmp_path / "b", "gender: {from: PID-8, lookup: sex, unmapped: warn}"), pid)
    assert "gender" not in warned.resources[0]
    assert [(w.code, w.location, w.severity) for w in warned.warnings] == [("unmapped-code", "PID-8", "W")]
    skipped = run(mapping_set(tmp_path / "c", "gender: {from: PID-8, lookup: sex, unmapped: skip}"), pid)
    assert "gender" not in skipped.resources[0] and skipped.warnings == []


def test_required_fail_and_transform_errors_name_the_location(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, """
        born: {from: PID-7, transform: hl7_date}
        class: {from: PID-9, required: a class is required}
    """)
    with pytest.raises(MappingError) as info:
        run(mset, seg("PID", {1: "1", 3: "M1", 7: "20091399"}))
    assert (info.value.code, info.value.location) == ("invalid-date", "PID-7")
    with pytest.raises(MappingError) as info:
        run(mset, seg("PID", {1: "1", 3: "M1"}))
    assert (info.value.code, info.value.location, str(info.value)) == ("missing-field", "PID-9",
                                                                       "a class is required")
    failing = mapping_set(tmp_path / "f", "x: [PID-9, {fail: no x, code: missing-field, location: PID-9}]")
    with pytest.raises(MappingError, match="no x"):
        run(failing, seg("PID", {1: "1", 3: "M1"}))


def test_relative_paths_read_the_item_and_locate_errors_at_the_repetition(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, "dates: {each: PID-3, map: {from: .2, transform: hl7_date}}")
    with pytest.raises(MappingError) as info:
        run(mset, seg("PID", {1: "1", 3: "M1^20090514~M2^2009051"}))
    assert (info.value.code, info.value.location) == ("invalid-date", "PID-3[2].2")


def test_missing_required_segment_and_unmapped_message_type(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, "a: PID-5")
    with pytest.raises(MappingError) as info:
        run(mset, "EVN|A04")
    assert (info.value.code, info.value.location) == ("missing-segment", "PID")
    from adapter.errors import UnsupportedMessage

    with pytest.raises(UnsupportedMessage):
        run(mset, PID, event="ADT^A08")


def test_lazy_variables_are_computed_once_and_only_when_used(tmp_path: Path) -> None:
    mset = mapping_set(tmp_path, "name: {from: PID-5, when: {present: PID-5}}", vars_="""
        unused: {from: PID-7, transform: hl7_date}
    """)
    assert thing(mset, seg("PID", {1: "1", 3: "M1", 5: "DOE", 7: "not a date"}))["name"] == "DOE"


def test_trace_lists_the_files_that_ran_and_the_fields_nothing_read() -> None:
    mset = load_mappings()
    result = run(mset, seg("PID", {1: "1", 3: "M1^^^RX1^MR", 5: "DOE^JANE", 8: "F", 19: "123456789"}),
                 "NK1|1|ROE^JOHN|FTH", "ZAL|1|20260301|LOCAL1^Alert^L", event="ADT^A04")
    files = result.trace.files
    assert files[:3] == ("hl7v2/messages/ADT_A04.yaml", "hl7v2/messages/_adt_visit.yaml",
                         "hl7v2/messages/_common.yaml")
    for name in ("hl7v2/resources/patient.yaml", "hl7v2/resources/related_person.yaml",
                 "hl7v2/resources/provenance.yaml", "hl7v2/datatypes/cx_identifier.yaml",
                 "hl7v2/datatypes/xpn_human_name.yaml", "codes/v2_0001_gender.yaml", "codes/v2_0063_relationship.yaml"):
        assert name in files
    assert "hl7v2/resources/encounter.yaml" not in files  # no PV1
    unused = result.trace.unused_fields
    assert {"PID-1", "PID-19", "ZAL-1", "ZAL-2", "ZAL-3", "MSH-5", "MSH-6"} <= set(unused)
    assert not {"PID-3", "PID-5", "PID-8", "NK1-2", "NK1-3", "MSH-4", "MSH-7", "MSH-10"} & set(unused)
