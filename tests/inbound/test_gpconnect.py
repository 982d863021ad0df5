"""GP Connect STU3 -> R4 (adapter/inbound/gpconnect.py): the public samples and synthetic bundles convert,
safeguarding codes become Flags, did-not-attend codes and noshows carry the attendance outcome, bad payloads
and bad entries are reported where they are, ids are deterministic and references resolve."""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.conformance import load_profiles
from adapter.errors import MappingError, ParseError
from adapter.fhir import ATTENDANCE_OUTCOME_EXT, UKCORE_NHS_VERIFICATION_EXT, validate_r4
from adapter.inbound.gpconnect import GpBundle, gp_resource_id, read_bundle
from tests.mapping.gp_cases import GOLDEN, MAPPINGS, NOW, PRACTICE, TZ, GpCase, cases, dumps, run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from gp_synthetic import make_bundle  # noqa: E402

CASES = cases()
PROFILES = load_profiles()
SNOMED = "http://snomed.info/sct"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UKCORE_NHS_VERIFICATION_CS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"


def case(stem: str) -> GpCase:
    return next(c for c in CASES if c.stem == stem)


def read(payload: bytes, **kw: Any) -> GpBundle:
    kw.setdefault("now", NOW)
    return read_bundle(payload, MAPPINGS, tz=TZ, **kw)


def produced(bundle: GpBundle, rtype: str | None = None) -> list[dict[str, Any]]:
    return [r for e in bundle.entries for r in e.resources if rtype is None or r["resourceType"] == rtype]


def entry(bundle: GpBundle, index: int | None) -> Any:
    return next(e for e in bundle.entries if e.index == index)


def by_source(bundle: GpBundle, rtype: str, original_id: str) -> dict[str, Any]:
    rid = gp_resource_id(rtype, str(bundle.practice), original_id)
    return next(r for r in produced(bundle, rtype) if r["id"] == rid)


def payload(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def patient(pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "active": True, "birthDate": "2015-04-10",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990001006"}],
            "name": [{"family": "SYNTHETIC", "given": ["Amber"]}], **extra}


def bundle_of(*resources: Any, **extra: Any) -> bytes:
    return payload({"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": r} if isinstance(r, dict) and "resourceType" in r else r for r in resources],
                    **extra})


def outcome_codes(appointment: dict[str, Any]) -> list[str]:
    ext = [x for x in appointment.get("extension", []) if x["url"] == ATTENDANCE_OUTCOME_EXT]
    return [c["code"] for x in ext for c in x["valueCodeableConcept"]["coding"]]


# --- golden cases ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gp_case", CASES, ids=lambda c: c.id)
def test_golden(gp_case: GpCase, update_golden: bool) -> None:
    if not gp_case.source_path.exists():
        pytest.skip(f"referenced sample not present: {gp_case.source_path}")
    actual = dumps(run(gp_case))
    if update_golden:
        gp_case.expected_path.write_text(actual, encoding="utf-8")
        return
    assert gp_case.expected_path.exists(), f"{gp_case.id}: no expected file; run pytest --update-golden and review it"
    expected = gp_case.expected_path.read_text(encoding="utf-8")
    if json.loads(expected) != json.loads(actual):
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "expected", "actual",
                                              lineterm="", n=2))
        pytest.fail(f"{gp_case.id}: output differs from {gp_case.expected_path.name}\n{diff}")


def test_every_case_is_described_and_has_its_expected_file() -> None:
    described = yaml.safe_load((GOLDEN / "cases.yaml").read_text(encoding="utf-8"))
    assert {c.stem for c in CASES} == set(described)
    for stem, text in described.items():
        assert text.get("what") and text.get("fields"), f"{stem}: cases.yaml needs 'what' and 'fields'"
    for path in GOLDEN.glob("*.expected.json"):
        assert any(c.expected_path == path for c in CASES), f"{path.name} has no input"


# --- the public samples ----------------------------------------------------------------------------------

SAMPLES = {"101-sample-problems": ["Patient", "Organization", "Practitioner", "PractitionerRole", "Provenance"],
           "102-sample-immunizations": ["Patient", "Organization", "Practitioner", "PractitionerRole", "Organization",
                                        "Location", "List", "Immunization", "Provenance"],
           "103-sample-appointments": ["Appointment", "Appointment", "Provenance"],
           "104-sample-patient": ["Patient", "Provenance"]}


@pytest.mark.parametrize("stem", sorted(SAMPLES))
def test_public_samples_convert(stem: str) -> None:
    c = case(stem)
    if not c.source_path.exists():
        pytest.skip("the shared GP Connect samples are not present")
    bundle = run(c)
    assert [r["resourceType"] for r in produced(bundle)] == SAMPLES[stem]
    assert all(e.ok for e in bundle.entries)


def test_the_appointments_sample_points_at_a_patient_it_does_not_carry() -> None:
    c = case("103-sample-appointments")
    if not c.source_path.exists():
        pytest.skip("the shared GP Connect samples are not present")
    bundle = run(c)
    assert bundle.patient_id is None
    assert bundle.patient_ref == f"Patient/{gp_resource_id('Patient', PRACTICE, '2')}"
    first = produced(bundle, "Appointment")[0]
    assert first["participant"][0]["actor"] == {"reference": bundle.patient_ref}
    assert first["serviceCategory"] == [{"text": "General GP Appointments"}]
    booking, _, channel = first["extension"]
    assert booking == {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-BookingOrganization",
                       "valueReference": {"reference": "#1"}}  # a contained reference stays as it is
    assert channel["valueCodeableConcept"]["coding"] == [
        {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeliveryChannel", "code": "In-person"}]
    assert "meta" not in first["contained"][0]  # the STU3 profile of a contained resource is not claimed


def test_the_immunizations_sample_list_without_id_and_a_system_with_a_trailing_space() -> None:
    c = case("102-sample-immunizations")
    if not c.source_path.exists():
        pytest.skip("the shared GP Connect samples are not present")
    bundle = run(c)
    [lst] = produced(bundle, "List")
    assert UUID.match(lst["id"]) and lst["id"] == produced(run(c), "List")[0]["id"]
    [imm] = produced(bundle, "Immunization")
    assert imm["vaccineCode"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
    assert lst["entry"] == [{"item": {"reference": f"Immunization/{imm['id']}"}}]


# --- the patient: NHS number, verification status, practice ---------------------------------------------

@pytest.mark.parametrize(("stem", "code"), [("001-child-safeguarding", "01"), ("002-adult-dna", "02")])
def test_nhs_number_and_its_verification_status_are_kept_as_uk_core(stem: str, code: str) -> None:
    bundle = run(case(stem))
    [pat] = produced(bundle, "Patient")
    [nhs] = pat["identifier"]
    assert nhs["system"] == "https://fhir.nhs.uk/Id/nhs-number" and nhs["value"] in ("9990001006", "9990001014")
    [ext] = nhs["extension"]
    assert ext["url"] == UKCORE_NHS_VERIFICATION_EXT
    assert [(c["system"], c["code"]) for c in ext["valueCodeableConcept"]["coding"]] == [
        (UKCORE_NHS_VERIFICATION_CS, code)]
    assert pat["meta"]["profile"] == ["https://fhir.carethread.org/StructureDefinition/CarethreadPatient"]
    assert bundle.patient_id == pat["id"] and bundle.patient_ref == f"Patient/{pat['id']}"


def test_the_practice_comes_from_the_patients_organisation_then_the_caller_then_unknown() -> None:
    assert run(case("001-child-safeguarding")).practice == "Y12345"  # managingOrganization
    assert run(case("002-adult-dna")).practice == "Y54321"  # generalPractitioner (upper-cased)
    alone = bundle_of(patient())
    assert read(alone, practice="y99999").practice == "Y99999"
    assert read(alone).practice == "unknown"
    ids = {read(alone, practice=p).patient_id for p in ("Y11111", "Y22222")}
    assert len(ids) == 2  # the practice is part of every id: two practices' "p1" are two records


def test_an_nhs_number_failing_modulus_11_is_kept_apart_with_a_warning() -> None:
    local = {"system": "https://gp.example.org/Id/patient", "value": "L0001"}
    bad = patient(identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9876544321"}, local])
    bundle = read(bundle_of(bad), profiles=PROFILES)
    [pat] = produced(bundle, "Patient")
    assert pat["identifier"][0] == {"system": "https://fhir.carethread.org/Id/nhs-number-failing-check",
                                    "value": "9876544321", "type": {"text": "NHS number failing the Modulus 11 check"}}
    [warning] = entry(bundle, 0).issues
    assert (warning.severity, warning.code, warning.location) == (
        "W", "invalid-nhs-number", "Bundle.entry[0].resource.identifier[0].value")
    alone = patient(identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9876544321"}])
    with pytest.raises(MappingError) as info:  # CarethreadPatient ct-pat-1: never a failing number alone
        read(bundle_of(alone), profiles=PROFILES)
    assert info.value.code == "no-patient"


def test_source_time_is_the_bundle_time_in_utc() -> None:
    assert run(case("001-child-safeguarding")).source_time == "2024-07-01T08:00:00+00:00"
    assert run(case("002-adult-dna")).source_time == "2024-06-10T12:00:00+00:00"
    assert read(bundle_of(patient(), timestamp="2024-01-02T03:04:05+01:00")).source_time == "2024-01-02T02:04:05+00:00"
    assert read(bundle_of(patient())).source_time is None


def test_control_id_is_the_bundle_id_else_the_payload_hash() -> None:
    assert run(case("001-child-safeguarding")).control_id == "synthetic-bundle-001"
    import hashlib

    raw = case("002-adult-dna").payload
    assert run(case("002-adult-dna")).control_id == hashlib.sha256(raw).hexdigest()


# --- safeguarding codes -> Flags ------------------------------------------------------------------------

def test_a_safeguarding_condition_gives_a_flag_with_the_plans_period() -> None:
    bundle = run(case("001-child-safeguarding"))
    cpp = by_source(bundle, "Condition", "cond-cpp")
    flags = {f["code"]["coding"][0]["code"]: f for f in produced(bundle, "Flag")}
    assert set(flags) == {"342191000000101", "919461000000108"}  # not the refuted looked-after code
    ended = flags["342191000000101"]
    assert ended["status"] == "inactive" and ended["period"] == {"start": "2023-02-01", "end": "2024-01-15"}
    assert ended["subject"] == {"reference": bundle.patient_ref}
    assert ended["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                                   "valueReference": {"reference": f"Condition/{cpp['id']}"}}]
    assert ended["encounter"] == cpp["encounter"]
    assert [c["coding"][0]["code"] for c in ended["category"]] == ["safety", "safeguarding"]
    assert ended["author"]["identifier"] == {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                             "value": "Y12345"}
    assert "security" not in ended["meta"]
    cse = flags["919461000000108"]
    assert cse["status"] == "active" and cse["period"] == {"start": "2024-06-01"}
    assert cse["meta"]["security"] == [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                        "code": "R", "display": "restricted"}]
    assert cpp["clinicalStatus"] == {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                 "code": "inactive"}]}
    assert cpp["recordedDate"] == "2023-02-02T11:00:00+00:00" and "assertedDate" not in cpp


def test_a_parents_flag_and_a_verification_status_r4_does_not_have() -> None:
    bundle = run(case("002-adult-dna"))
    [flag] = produced(bundle, "Flag")
    assert flag["code"]["coding"][0]["code"] == "864491000000105" and flag["status"] == "active"
    cond = by_source(bundle, "Condition", "cond-parent")
    assert "verificationStatus" not in cond  # STU3 "unknown" is R4's absent verificationStatus


def test_a_safeguarding_observation_in_error_gives_a_flag_in_error() -> None:
    obs = {"resourceType": "Observation", "id": "o1", "status": "entered-in-error",
           "code": {"coding": [{"system": SNOMED, "code": "836881000000105"}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-01"}
    [flag] = produced(read(bundle_of(patient(), obs)), "Flag")
    assert flag["status"] == "entered-in-error" and flag["period"] == {"start": "2024-01-01"}


def test_the_gp_records_security_labels_follow_what_it_yields() -> None:
    nopat = [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "NOPAT"}]
    cond = {"resourceType": "Condition", "id": "c1", "meta": {"security": nopat}, "clinicalStatus": "active",
            "code": {"coding": [{"system": SNOMED, "code": "342191000000101"}]}, "subject": {"reference": "Patient/p1"}}
    obs = {"resourceType": "Observation", "id": "o1", "meta": {"security": nopat}, "status": "final",
           "code": {"coding": [{"system": SNOMED, "code": "281399006"}]}, "subject": {"reference": "Patient/p1"},
           "effectiveDateTime": "2024-01-01"}
    bundle = read(bundle_of(patient(), cond, obs), profiles=PROFILES)
    r4 = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPAT"}]
    for rtype in ("Condition", "Flag", "Observation", "Appointment"):
        assert produced(bundle, rtype)[0]["meta"]["security"] == r4, rtype


# --- did not attend -> noshow Appointments --------------------------------------------------------------

def test_a_childs_did_not_attend_observation_is_a_noshow_was_not_brought() -> None:
    bundle = run(case("001-child-safeguarding"))
    obs = by_source(bundle, "Observation", "obs-dna")
    [appt] = [a for a in produced(bundle, "Appointment")]
    assert appt["status"] == "noshow"
    assert appt["start"] == appt["end"] == "2024-03-05T09:30:00+00:00"
    assert outcome_codes(appt) == ["was-not-brought", "3"]
    assert appt["supportingInformation"] == [{"reference": f"Observation/{obs['id']}"}]
    assert appt["participant"][0]["actor"] == {"reference": bundle.patient_ref}
    assert "cancelationReason" not in appt
    assert obs["note"] == [{"text": "Synthetic note: not brought to the appointment."}] and "comment" not in obs


def test_an_adults_did_not_attend_is_did_not_attend_dated_at_local_midnight() -> None:
    bundle = run(case("002-adult-dna"))
    [appt] = produced(bundle, "Appointment")
    assert outcome_codes(appt) == ["did-not-attend", "3"]
    assert appt["start"] == "2024-05-02T00:00:00+01:00"  # a date alone: that day's start, Europe/London
    obs = by_source(bundle, "Observation", "obs-dna-adult")
    assert obs["subject"] == {"reference": bundle.patient_ref}  # a urn:uuid reference resolved


def test_a_did_not_attend_without_a_date_is_that_entrys_error() -> None:
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": SNOMED, "code": "281399006"}]}}
    bundle = read(bundle_of(patient(), obs))
    [issue] = entry(bundle, 1).issues
    assert (issue.severity, issue.code, issue.location) == ("E", "missing-field", "Bundle.entry[1].resource.effectiveDateTime")
    assert entry(bundle, 0).resources and not entry(bundle, 1).resources


# --- GP Connect Appointments --------------------------------------------------------------------------------

def appointments(birth: str | None) -> GpBundle:
    return read(case("003-appointments").payload, practice=PRACTICE, birth_date_of=lambda _id: birth)


def test_a_noshow_appointment_gets_the_attendance_outcome_by_the_stored_birth_date() -> None:
    child = appointments("2016-01-01")
    noshow = by_source(child, "Appointment", "appt-noshow")
    assert noshow["status"] == "noshow" and outcome_codes(noshow) == ["was-not-brought", "3"]
    assert noshow["extension"][0]["url"] == "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeliveryChannel"
    adult = by_source(appointments("1990-01-01"), "Appointment", "appt-noshow")
    assert outcome_codes(adult) == ["did-not-attend", "3"]
    unknown = appointments(None)
    assert outcome_codes(by_source(unknown, "Appointment", "appt-noshow")) == ["3"]  # never a guess
    [warning] = entry(unknown, 0).issues
    assert (warning.severity, warning.code, warning.location) == ("W", "missing-field", "Patient.birthDate")


def test_a_cancelled_appointment_keeps_its_status_and_reason() -> None:
    bundle = appointments("2016-01-01")
    cancelled = by_source(bundle, "Appointment", "appt-cancelled")
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelationReason"] == {"text": "Synthetic reason: clinic closed"}
    assert "extension" not in cancelled and not outcome_codes(cancelled)
    booked = by_source(bundle, "Appointment", "appt-booked")
    assert booked["reasonCode"] == [{"text": "Synthetic review"}] and "reason" not in booked
    assert booked["serviceCategory"] == [{"text": "General GP Appointments"}]
    assert bundle.patient_id is None and bundle.patient_ref == f"Patient/{gp_resource_id('Patient', PRACTICE, 'pt-7')}"


# --- payloads that cannot be read, patients that are not there -----------------------------------------------

@pytest.mark.parametrize(("raw", "code"), [
    (b"", "empty-message"),
    (b"  \n", "empty-message"),
    (b"\xff\xfe{}", "bad-encoding"),
    (b'{"resourceType": "Bundle", "entry": [', "invalid-json"),
    (b"not json at all", "invalid-json"),
    (b"[1, 2]", "not-a-bundle"),
    (b'{"resourceType": "Observation", "id": "o1"}', "not-a-bundle"),
    (b'{"entry": []}', "not-a-bundle"),
    (b'{"resourceType": "Bundle", "entry": {"resource": {}}}', "not-a-bundle"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid-json"),
    (b'{"resourceType": "Bundle", "total": NaN}', "invalid-json"),
])
def test_unreadable_payloads_raise_parse_error(raw: bytes, code: str) -> None:
    with pytest.raises(ParseError) as info:
        read(raw)
    assert info.value.code == code


def test_a_bom_is_tolerated() -> None:
    assert read(b"\xef\xbb\xbf" + bundle_of(patient())).patient_id is not None


def test_a_bundle_without_a_patient_and_naming_none_is_refused() -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "Example Surgery"}
    with pytest.raises(MappingError) as info:
        read(bundle_of(org))
    assert (info.value.code, info.value.location) == ("no-patient", "Bundle")
    with pytest.raises(MappingError) as info:
        read(payload({"resourceType": "Appointment", "id": "a1", "status": "booked",
                      "participant": [{"actor": {"reference": "Location/l1"}, "status": "accepted"}]}))
    assert (info.value.code, info.value.location) == ("no-patient", "Appointment.participant")


def test_a_patient_that_cannot_be_converted_refuses_the_whole_bundle() -> None:
    bad = patient(birthDate="10/04/2015")
    with pytest.raises(MappingError) as info:
        read(bundle_of({"resourceType": "Organization", "id": "o1"}, bad))
    assert (info.value.code, info.value.location) == ("no-patient", "Bundle.entry[1].resource.birthDate")
    assert "10/04" not in str(info.value)


def test_a_bare_appointment_names_its_patient() -> None:
    bundle = read(payload({"resourceType": "Appointment", "id": "a1", "status": "booked",
                           "start": "2024-01-01T10:00:00Z", "end": "2024-01-01T10:10:00Z",
                           "participant": [{"actor": {"reference": "Patient/p9"}, "status": "accepted"}]}),
                  practice="Y12345")
    assert bundle.patient_id is None and bundle.patient_ref == f"Patient/{gp_resource_id('Patient', 'Y12345', 'p9')}"
    assert [e.index for e in bundle.entries] == [None, None]  # the Appointment, then the Provenance


# --- bad entries --------------------------------------------------------------------------------------------

def test_bad_entries_are_reported_where_they_are_and_the_others_convert() -> None:
    bundle = run(case("004-broken-entries"))
    found = {e.index: [(i.severity, i.code, i.location) for i in e.issues] for e in bundle.entries}
    assert found == {
        0: [], 4: [],
        1: [("E", "missing-resource", "Bundle.entry[1]")],
        2: [("E", "invalid-resource", "Bundle.entry[2].resource.onsetDateTime")],
        3: [("W", "unsupported-resource", "Bundle.entry[3].resource")],
        5: [("E", "invalid-resource", "Bundle.entry[5].resource.clinicalStatus.coding")],
        6: [("E", "invalid-resource", "Bundle.entry[6].resource")],
        None: [],
    }
    assert [r["resourceType"] for r in entry(bundle, 4).resources] == ["Condition", "Flag"]
    for e in bundle.entries:
        if not e.ok:
            assert e.resources == []
    [prov] = entry(bundle, None).resources
    assert {t["reference"].split("/")[0] for t in prov["target"]} == {"Patient", "Condition", "Flag"}


def test_an_error_names_the_stu3_element_when_r4_renamed_it() -> None:
    imm = {"resourceType": "Immunization", "id": "i1", "status": "completed", "notGiven": False,
           "vaccineCode": {"text": "Synthetic vaccine"}, "patient": {"reference": "Patient/p1"},
           "date": "01/02/2024", "primarySource": True}
    [issue] = entry(read(bundle_of(patient(), imm)), 1).issues
    assert issue.location == "Bundle.entry[1].resource.date"  # R4's occurrenceDateTime, named as sent


# --- ids, references, meta, Provenance ------------------------------------------------------------------

def test_ids_are_deterministic_and_every_reference_is_rewritten() -> None:
    c = case("001-child-safeguarding")
    first, again = run(c), run(c)
    assert dumps(first) == dumps(again)
    ids = {(r["resourceType"], r["id"]) for r in produced(first)}
    assert len(ids) == len(produced(first)) and all(UUID.match(i) for _, i in ids)
    refs = [ref for r in produced(first) for ref in _references(r)]
    assert refs and all(re.match(r"^[A-Z][A-Za-z]+/[0-9a-f-]{36}$", ref) for ref in refs)
    present = {f"{t}/{i}" for t, i in ids}
    dangling = {ref for ref in refs if ref not in present}
    # the only references to what the bundle does not carry: the Appointment the Encounter was booked as
    # and the Observation the blood pressure was qualified by (dropped: no R4 element)
    assert {ref.split("/")[0] for ref in dangling} == {"Appointment"}


def test_references_resolve_across_bundles_of_one_practice() -> None:
    later = {"resourceType": "Condition", "id": "cond-later", "clinicalStatus": "active",
             "code": {"coding": [{"system": SNOMED, "code": "195967001"}]},
             "subject": {"reference": "Patient/p-child-1"}}
    bundle = read(bundle_of(later), practice="Y12345")
    assert bundle.patient_id is None
    assert produced(bundle, "Condition")[0]["subject"]["reference"] == run(case("001-child-safeguarding")).patient_ref


def test_contained_and_absolute_references_are_left_alone() -> None:
    appt = {"resourceType": "Appointment", "id": "a1", "status": "booked",
            "start": "2024-01-01T10:00:00Z", "end": "2024-01-01T10:10:00Z",
            "contained": [{"resourceType": "Location", "id": "loc", "name": "Room 1 (synthetic)"}],
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                            {"actor": {"reference": "#loc"}, "status": "accepted"},
                            {"actor": {"reference": "https://gp.example.org/fhir/Practitioner/x"}, "status": "accepted"}]}
    [converted] = produced(read(bundle_of(patient(), appt)), "Appointment")
    assert [p["actor"]["reference"] for p in converted["participant"]][1:] == [
        "#loc", "https://gp.example.org/fhir/Practitioner/x"]


def test_meta_names_our_profile_and_the_bundle() -> None:
    bundle = run(case("001-child-safeguarding"))
    for r in produced(bundle):
        assert r["meta"]["source"] == "https://fhir.carethread.org/source/gp#synthetic-bundle-001"
        assert len(r["meta"]["profile"]) == 1 and "versionId" not in r["meta"]
    profiles = {r["resourceType"]: r["meta"]["profile"][0] for r in produced(bundle)}
    assert profiles["Encounter"] == "https://fhir.carethread.org/StructureDefinition/CarethreadEncounter"
    assert profiles["Flag"] == "https://fhir.carethread.org/StructureDefinition/CarethreadFlag"
    assert profiles["Appointment"] == "https://fhir.carethread.org/StructureDefinition/CarethreadAppointment"
    assert profiles["Condition"] == "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Condition"


def test_the_provenance_is_last_and_names_everything_produced_and_the_bundle() -> None:
    bundle = run(case("001-child-safeguarding"))
    last = bundle.entries[-1]
    assert last.index is None
    [prov] = last.resources
    others = [r for e in bundle.entries[:-1] for r in e.resources]
    assert prov["target"] == [{"reference": f"{r['resourceType']}/{r['id']}"} for r in others]
    assert prov["entity"][0]["what"]["identifier"] == {"system": "https://fhir.carethread.org/Id/gp/bundle",
                                                       "value": "synthetic-bundle-001"}
    assert prov["recorded"] == "2024-07-01T08:00:00+00:00"  # the bundle's time; else the time of mapping
    assert prov["agent"][0]["who"]["identifier"]["value"] == "Y12345"


def test_the_trace_names_the_diffs_and_feeds_that_ran() -> None:
    files = run(case("001-child-safeguarding")).trace.files
    for name in ("stu3/_common.yaml", "stu3/Condition.yaml", "json/feeds/gp_condition.yaml",
                 "json/resources/gp_flag.yaml", "codes/gp_dna_codes.yaml", "json/resources/gp_provenance.yaml"):
        assert name in files


# --- everything produced is valid R4 and meets its profile -------------------------------------------------

def _all_outputs() -> list[tuple[str, dict[str, Any]]]:
    out = [(c.id, r) for c in CASES if c.source_path.exists() for r in produced(run(c))]
    for i in range(40):
        out += [(f"synthetic/{i}", r) for r in produced(read(make_bundle(i)))]
    return out


def test_every_produced_resource_is_valid_r4_and_meets_its_profile() -> None:
    for where, resource in _all_outputs():
        validate_r4(resource)
        errors = [i for i in PROFILES.validate(resource, PROFILES.default_profile(resource["resourceType"]))
                  if i.severity == "error"]
        assert errors == [], f"{where} {resource['resourceType']}: {errors}"


def test_profiles_given_to_read_bundle_make_a_nonconforming_resource_an_entry_error() -> None:
    flawed = patient("p2", birthDate="2015-04-10", identifier=[{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                                "value": "9990001006"}])
    del flawed["active"]  # CarethreadPatient: active 1..1
    with pytest.raises(MappingError) as info:
        read(bundle_of(flawed), profiles=PROFILES)
    assert info.value.code == "no-patient" and info.value.location == "Bundle.entry[0].resource.active"
    assert read(bundle_of(flawed)).patient_id  # structure alone: fine (the pipeline checks the profile)


# --- the bench generator ----------------------------------------------------------------------------------

def test_the_synthetic_generator_is_deterministic_and_realistic() -> None:
    assert make_bundle(7) == make_bundle(7) and make_bundle(7) != make_bundle(8)
    assert make_bundle(7, seed=1) != make_bundle(7)
    kinds: dict[str, int] = {}
    for i in range(60):
        bundle = read(make_bundle(i))
        assert all(e.ok for e in bundle.entries)
        for r in produced(bundle):
            kinds[r["resourceType"]] = kinds.get(r["resourceType"], 0) + 1
    assert kinds["Patient"] == 60 and kinds["Flag"] > 5 and kinds["Appointment"] > 5


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        out = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return out + [r for k, v in value.items() if k != "contained" for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []
