"""Maternity HL7 v2 -> FHIR R4 mapping (pure: no store), one test per NHS convention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.errors import MappingError
from adapter.fhir import (
    ATTENDANCE_OUTCOME_EXT,
    INVALID_NHS_NUMBER_SYSTEM,
    NHS_NUMBER_SYSTEM,
    UKCORE_NHS_VERIFICATION_EXT,
    validate_r4,
)
from adapter.inbound.hl7v2 import read_message
from adapter.mapping.codes import load_code_tables
from adapter.mapping import MappingContext, MappedMessage, map_message

CODES = load_code_tables()
SHARED = Path(__file__).resolve().parents[3] / "shared" / "samples" / "hl7v2"
MSH = "MSH|^~\\&|MATEPR|RX1|CT|CT|20260301091500||{event}|C{n}|P|2.4"


def seg(name: str, fields: dict[int, str]) -> str:
    """Build a segment by field number, so tests never miscount pipes."""
    values = [""] * max(fields)
    for n, v in fields.items():
        values[n - 1] = v
    return "|".join([name, *values])


def mapped(*segments: str, event: str = "ADT^A04", birth_date_of: Callable[[str], str | None] = lambda _: None,
           n: int = 1) -> MappedMessage:
    text = "\r".join([MSH.format(event=event, n=n), *segments])
    msg, header = read_message(text.encode(), accepted_processing_ids=frozenset("PTD"))
    ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"),
                         CODES, birth_date_of)
    result = map_message(msg, header, ctx)
    for resource in result.resources:
        validate_r4(resource)
    return result


def of(result: MappedMessage, rtype: str) -> list[dict[str, Any]]:
    return [r for r in result.resources if r["resourceType"] == rtype]


def test_nhs_number_with_verification_status() -> None:
    r = mapped(seg("PID", {1: "1", 3: "9990001006^^^NHS^NH~M1^^^RX1^MR", 5: "DOE^JANE", 7: "20090514", 8: "F",
                   32: "NSTS01"}))
    patient = of(r, "Patient")[0]
    nhs = [i for i in patient["identifier"] if i["system"] == NHS_NUMBER_SYSTEM]
    assert nhs[0]["value"] == "9990001006"
    assert nhs[0]["extension"][0]["url"] == UKCORE_NHS_VERIFICATION_EXT
    assert nhs[0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"
    mrn = [i for i in patient["identifier"] if i["value"] == "M1"][0]
    assert mrn["type"]["coding"][0]["code"] == "MR"
    assert mrn["assigner"]["identifier"]["value"] == "RX1"


@pytest.mark.parametrize("cx", ["9990001006^^^NHS^HN", "9990001006^^^NHS", "9990001006^^^^NH", "999 000 1006^^^NHS^NH"])
def test_nhs_number_conventions(cx: str) -> None:
    patient = of(mapped(f"PID|1||{cx}||DOE^JANE"), "Patient")[0]
    assert patient["identifier"][0] == {"system": NHS_NUMBER_SYSTEM, "value": "9990001006"}


def test_failing_nhs_number_kept_as_local_identifier_when_an_mrn_exists() -> None:
    patient = of(mapped("PID|1||9876544321^^^NHS^NH~M1^^^RX1^MR||DOE^JANE"), "Patient")[0]
    systems = {i["system"] for i in patient["identifier"]}
    assert NHS_NUMBER_SYSTEM not in systems and INVALID_NHS_NUMBER_SYSTEM in systems


def test_failing_nhs_number_as_the_only_identifier_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        mapped("PID|1||9876544321^^^NHS^NH||DOE^JANE")
    assert (info.value.code, info.value.location) == ("invalid-nhs-number", "PID-3.1")
    assert "9876544321" not in str(info.value)


def test_missing_pid_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        mapped("EVN|A04|20260301")
    assert (info.value.code, info.value.location) == ("missing-segment", "PID")


@pytest.mark.parametrize(("code", "gender"), [("M", "male"), ("F", "female"), ("U", "unknown"), ("O", "other"),
                                              ("1", "male"), ("2", "female"), ("9", "other"), ("X", "unknown")])
def test_gender_hl7_and_nhs_codes(code: str, gender: str) -> None:
    assert of(mapped(f"PID|1||M1^^^RX1^MR||DOE^JANE||20090514|{code}"), "Patient")[0]["gender"] == gender


def test_unknown_gender_is_left_out_with_a_warning() -> None:
    r = mapped("PID|1||M1^^^RX1^MR||DOE^JANE||20090514|Q")
    assert "gender" not in of(r, "Patient")[0]
    assert [(w.code, w.location, w.severity) for w in r.warnings] == [("unmapped-code", "PID-8", "W")]


def test_birth_date_is_a_date_without_time_zone_shift() -> None:
    assert of(mapped("PID|1||M1^^^RX1^MR||DOE^JANE||200905140030+0100"), "Patient")[0]["birthDate"] == "2009-05-14"


def test_invalid_birth_date_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        mapped("PID|1||M1^^^RX1^MR||DOE^JANE||20091399")
    assert (info.value.code, info.value.location) == ("invalid-date", "PID-7")


def test_baby_mother_identifier_and_multiple_birth() -> None:
    r = mapped(seg("PID", {1: "1", 3: "M2^^^RX1^MR", 5: "DOE", 7: "20260901", 8: "M", 21: "9990001006^^^NHS^NH",
                   24: "Y", 25: "2"}))
    baby = of(r, "Patient")[0]
    assert baby["multipleBirthInteger"] == 2
    mother = of(r, "RelatedPerson")[0]
    assert mother["relationship"][0]["coding"][0]["code"] == "MTH"
    assert mother["identifier"] == [{"system": NHS_NUMBER_SYSTEM, "value": "9990001006"}]
    assert mother["patient"]["reference"] == f"Patient/{baby['id']}"


def test_nk1_father_partner_and_contact_role() -> None:
    r = mapped("PID|1||M1^^^RX1^MR||DOE^JANE",
               seg("NK1", {1: "1", 2: "ROE^JOHN", 3: "FTH", 15: "M", 16: "20100203"}),
               "NK1|2|POE^SAM|DOM",
               seg("NK1", {1: "3", 2: "KOE^KIM", 7: "N"}))
    rps = of(r, "RelatedPerson")
    codes = [rp["relationship"][0]["coding"][0]["code"] for rp in rps]
    assert codes == ["FTH", "SIGOTHR", "N"]
    assert rps[0]["birthDate"] == "2010-02-03" and rps[0]["gender"] == "male"


def test_unknown_relationship_code_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        mapped("PID|1||M1^^^RX1^MR||DOE^JANE", "NK1|1|ROE^JOHN|ZZZ")
    assert (info.value.code, info.value.location) == ("unmapped-code", "NK1-3.1")


def test_encounter_from_pv1() -> None:
    r = mapped("PID|1||M1^^^RX1^MR||DOE^JANE",
               seg("PV1", {1: "1", 2: "I", 3: "MAT^Bay 1^Bed 2^RX1", 10: "OBS", 19: "V9^^^RX1",
                           44: "20260301090000", 45: "20260302100000"}),
               event="ADT^A03")
    enc = of(r, "Encounter")[0]
    assert enc["status"] == "finished"
    assert enc["class"]["code"] == "IMP"
    assert enc["serviceType"]["coding"][0]["code"] == "OBS"
    assert enc["period"] == {"start": "2026-03-01T09:00:00+00:00", "end": "2026-03-02T10:00:00+00:00"}
    assert enc["location"][0]["location"]["display"] == "MAT / Bay 1 / Bed 2"


@pytest.mark.parametrize(("birth", "outcome"), [("20200101", "was-not-brought"), ("20080101", "did-not-attend")])
def test_no_show_outcome_decided_by_age_at_start(birth: str, outcome: str) -> None:
    r = mapped(seg("SCH", {2: "A1^EPR", 9: "30", 10: "min", 11: "^^^20260110103000"}),
               f"PID|1||M1^^^RX1^MR||DOE^JANE||{birth}", event="SIU^S26")
    appt = of(r, "Appointment")[0]
    assert appt["status"] == "noshow"
    ext = appt["extension"][0]
    assert ext["url"] == ATTENDANCE_OUTCOME_EXT
    codes = [c["code"] for c in ext["valueCodeableConcept"]["coding"]]
    assert codes == [outcome, "3"]
    assert "cancelationReason" not in appt


def test_no_show_age_from_the_stored_patient_when_pid7_is_absent() -> None:
    r = mapped(seg("SCH", {2: "A1^EPR", 9: "30", 10: "min", 11: "^^^20260110103000"}), "PID|1||M1^^^RX1^MR||DOE^JANE",
               event="SIU^S26", birth_date_of=lambda _id: "2016-01-11")
    codes = [c["code"] for c in of(r, "Appointment")[0]["extension"][0]["valueCodeableConcept"]["coding"]]
    assert codes[0] == "was-not-brought"


def test_filler_status_noshow_and_table_0278() -> None:
    r = mapped(seg("SCH", {2: "A1^EPR", 11: "^^^20260110103000^20260110110000", 25: "Noshow"}),
               "PID|1||M1^^^RX1^MR||DOE^JANE||20200101", event="SIU^S14")
    assert of(r, "Appointment")[0]["status"] == "noshow"
    with pytest.raises(MappingError) as info:
        mapped(seg("SCH", {2: "A1^EPR", 11: "^^^20260110103000", 25: "Weird"}), "PID|1||M1^^^RX1^MR", event="SIU^S14")
    assert (info.value.code, info.value.location) == ("unmapped-code", "SCH-25")


def test_a_start_without_end_or_duration_is_a_mapping_error() -> None:
    # base R4 app-2/app-3: start and end together; with neither an end nor a duration we cannot say
    with pytest.raises(MappingError) as info:
        mapped(seg("SCH", {2: "A1^EPR", 11: "^^^20260110103000", 25: "Booked"}), "PID|1||M1^^^RX1^MR", event="SIU^S12")
    assert (info.value.code, info.value.location) == ("missing-field", "TQ1-8")


def test_an_nk1_without_relationship_or_contact_role_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        mapped("PID|1||M1^^^RX1^MR||DOE^JANE", "NK1|1|ROE^JOHN")
    assert (info.value.code, info.value.location) == ("missing-field", "NK1-3")


def test_safeguarding_obx_becomes_a_flag_and_others_do_not() -> None:
    r = mapped("PID|1||M1^^^RX1^MR||DOE^JANE",
               seg("OBX", {1: "1", 2: "CE", 3: "ALERT^Alert^L", 5: "342191000000101^CPP^SCT", 11: "F", 14: "20221103"}),
               "OBX|2|CWE|ALERT^Alert^L||919461000000108^CSE^SCT||||||F",
               "OBX|3|NM|8867-4^Heart rate^LN||72",
               "OBX|4|CE|ALERT^Alert^L||342191000000101^not snomed^LOCAL")
    flags = of(r, "Flag")
    assert [f["code"]["coding"][0]["code"] for f in flags] == ["342191000000101", "919461000000108"]
    assert flags[0]["period"]["start"] == "2022-11-03" and flags[0]["status"] == "active"
    assert "security" not in flags[0]["meta"]
    assert flags[1]["meta"]["security"][0]["code"] == "R"  # sexual exploitation is sensitive


def test_merge_with_several_mrg_groups() -> None:
    r = mapped("PID|1||M1^^^RX1^MR||DOE^JANE", "MRG|M9^^^RX1^MR", "MRG|M8^^^RX1^MR",
               "PID|2||M2^^^RX1^MR||DOE^JOHN", "MRG|M7^^^RX1^MR", event="ADT^A40")
    patients = of(r, "Patient")
    survivors = [p for p in patients if p["active"]]
    retired = [p for p in patients if not p["active"]]
    assert len(survivors) == 2 and len(retired) == 3
    assert [link["type"] for link in survivors[0]["link"]] == ["replaces", "replaces"]
    assert all(p["link"][0]["type"] == "replaced-by" for p in retired)


def test_same_message_same_ids_and_provenance_targets_everything() -> None:
    segs = ("PID|1||M1^^^RX1^MR||DOE^JANE", "NK1|1|ROE^JOHN|FTH", "PV1|1|O|CLINIC")
    a, b = mapped(*segs), mapped(*segs)
    assert [r["id"] for r in a.resources] == [r["id"] for r in b.resources]
    prov = of(a, "Provenance")[0]
    assert {t["reference"] for t in prov["target"]} == {f"{r['resourceType']}/{r['id']}" for r in a.resources[:-1]}


@pytest.mark.parametrize("path", sorted(SHARED.glob("*.hl7")), ids=lambda p: p.name)
def test_public_samples_map_and_validate(path: Path) -> None:
    msg, header = read_message(path.read_bytes(), accepted_processing_ids=frozenset("PTD"))
    ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"),
                         CODES, lambda _: None)
    result = map_message(msg, header, ctx)
    assert len([r for r in result.resources if r["resourceType"] == "Patient"]) >= 1
    for resource in result.resources:
        validate_r4(resource)
    if header.message_type == "SIU":
        appt = [r for r in result.resources if r["resourceType"] == "Appointment"][0]
        expected = {"S12": "booked", "S14": "booked", "S15": "cancelled", "S17": "entered-in-error", "S26": "noshow"}
        assert appt["status"] == expected[header.trigger]
        assert appt["start"].startswith("2021-09-24T09:30:00")
