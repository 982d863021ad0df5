"""Health visiting export (CSDS-style CSV / JSON lines) -> FHIR R4, by mappings/csv/: every row of the
example export (sandbox/health-visiting/example) mapped as the pipeline maps it, one test per convention,
the errors a bad row gets (where, never what), determinism of ids and profile conformance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from adapter.conformance import ProfileSet, load_profiles
from adapter.errors import MappingError
from adapter.fhir import (
    ATTENDANCE_OUTCOME_EXT,
    INVALID_NHS_NUMBER_SYSTEM,
    NHS_DD_ATTENDANCE_CS,
    NHS_NUMBER_SYSTEM,
    SNOMED,
    UKCORE_NHS_VERIFICATION_EXT,
    validate_r4,
)
from adapter.mapping import load_mappings, map_record
from adapter.mapping.ids import resource_id
from tests.mapping.hv_cases import EXAMPLE, MAPPINGS, SOURCE, MappedRow, context, map_export, read_export, traces

CT_ID = "https://fhir.carethread.org/Id/health-visiting"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
HV_SERVICE = {"system": SNOMED, "code": "1078501000000104", "display": "Health visiting service"}
ROWS = map_export()


@pytest.fixture(scope="module")
def profiles() -> ProfileSet:
    return load_profiles()


def patient_id(local_id: str) -> str:
    return resource_id(SOURCE, "Patient", local_id)


def row(file: str, key: str) -> MappedRow:
    """The mapped row of ``file`` whose business key (first column) is ``key``."""
    found = [r for r in ROWS if r.row.file == file and next(iter(r.row.record.values())) == key]
    assert len(found) == 1, (file, key)
    return found[0]


def one(mapped: MappedRow, rtype: str) -> dict[str, Any]:
    [resource] = [r for r in mapped.resources if r["resourceType"] == rtype]
    return resource


def of_type(rtype: str) -> list[dict[str, Any]]:
    return [r for m in ROWS for r in m.resources if r["resourceType"] == rtype]


def contact(contact_id: str) -> MappedRow:
    return next(r for r in ROWS if r.row.feed == "hv_care_contacts" and r.row.record["care_contact_id"] == contact_id)


def outcome(appointment: dict[str, Any]) -> list[tuple[str, str]]:
    [ext] = [e for e in appointment.get("extension", []) if e["url"] == ATTENDANCE_OUTCOME_EXT]
    return [(c["system"].rsplit("/", 1)[1], c["code"]) for c in ext["valueCodeableConcept"]["coding"]]


def where(exc: MappingError) -> str | None:
    """The error's location in the ``column:<name>`` form.  The engine writes a column path's own
    location as ``column <name>`` today (adapter/mapping/paths.py static_location); explicit
    ``location:`` and the pipeline's person check write ``column:<name>``."""
    return re.sub(r"^column ", "column:", exc.location) if exc.location else None


def remap(file: str, key: str, births: dict[str, str | None] | None = None, **changes: str) -> Any:
    """Map one example row again with some cells changed (the person's birth date known by default)."""
    base = row(file, key).row
    record = {**base.record, **changes}
    known = births if births is not None else {r["id"]: r.get("birthDate") for r in of_type("Patient")}
    return map_record(MAPPINGS, base.feed, record, context(base.feed, record, known))


def failure(file: str, key: str, **changes: str) -> MappingError:
    with pytest.raises(MappingError) as info:
        remap(file, key, **changes)
    for value in changes.values():
        assert not value or value not in str(info.value), "an error message never carries the value"
    return info.value


# --- the whole example --------------------------------------------------------------------------------

def test_every_example_row_maps_without_errors_or_warnings() -> None:
    assert [(r.row.file, r.row.line, r.error) for r in ROWS if r.error is not None] == []
    assert [(r.row.file, r.row.line) for r in ROWS if r.mapped and r.mapped.warnings] == []
    assert [(r.row.file, r.row.line, r.mapped.trace.unused_fields) for r in ROWS
            if r.mapped and r.mapped.trace.unused_fields] == []
    files = {r.row.file for r in ROWS}
    assert files == {"people.csv", "household_members.csv", "safeguarding_concerns.csv", "service_levels.csv",
                     "care_contacts.csv", "care_contacts_2.jsonl"}


def test_files_are_read_people_first_contacts_last() -> None:
    feeds = list(dict.fromkeys(r.row.feed for r in ROWS))
    assert feeds == ["hv_people", "hv_household_members", "hv_safeguarding_concerns", "hv_service_levels",
                     "hv_care_contacts"]
    assert [name for name, _ in MAPPINGS.feeds_of(SOURCE)] == feeds
    for name, model in MAPPINGS.feeds_of(SOURCE):
        assert model.format == "csv" and model.person == "column:local_patient_id"


def test_each_file_name_belongs_to_exactly_one_feed() -> None:
    import fnmatch

    names = ["people.csv", "PEOPLE.JSONL", "people_20260601.csv", "care_contacts.csv", "care_contacts_2.jsonl",
             "household_members.ndjson", "safeguarding_concerns_b.csv", "service_levels.csv"]
    for name in names:
        claimed = [feed for feed, model in MAPPINGS.feeds_of(SOURCE)
                   if any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in model.files)]
        assert len(claimed) == 1, (name, claimed)


def test_every_resource_passes_r4_and_its_profile(profiles: ProfileSet) -> None:
    resources = [r for m in ROWS for r in m.resources]
    assert {r["resourceType"] for r in resources} == {"Patient", "RelatedPerson", "Flag", "Appointment", "Encounter",
                                                       "Provenance"}
    for resource in resources:
        validate_r4(resource)
        issues = profiles.validate(resource, profiles.default_profile(resource["resourceType"]))
        assert [i for i in issues if i.severity in ("error", "warning")] == [], (resource["resourceType"], issues)


def test_every_reference_resolves_to_a_resource_of_the_export() -> None:
    produced = {f"{r['resourceType']}/{r['id']}" for m in ROWS for r in m.resources}

    def refs(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [value["reference"]] if "reference" in value else [x for v in value.values() for x in refs(v)]
        return [x for v in value for x in refs(v)] if isinstance(value, list) else []

    for m in ROWS:
        for resource in m.resources:
            assert set(refs(resource)) <= produced, resource["resourceType"]


def test_every_health_visiting_mapping_file_runs_for_some_example_row() -> None:
    mine = {name for name in MAPPINGS.files if name.startswith("csv/") or name.startswith("codes/hv_")}
    assert mine - traces() == set()
    assert {"codes/nhs_number_verification.yaml", "codes/v2_0001_gender.yaml", "codes/safeguarding_codes.yaml",
            "codes/safeguarding_confidentiality.yaml", "codes/attendance_outcome.yaml"} <= traces()


# --- people -> Patient ---------------------------------------------------------------------------------

def test_patient_identifiers_nhs_number_and_verification_status() -> None:
    amber = one(row("people.csv", "HV0001"), "Patient")
    assert amber["id"] == patient_id("HV0001")
    assert amber["identifier"][0] == {"system": f"{CT_ID}/local-patient-id", "value": "HV0001"}
    nhs = amber["identifier"][1]
    assert (nhs["system"], nhs["value"]) == (NHS_NUMBER_SYSTEM, "9990001006")
    assert nhs["extension"][0]["url"] == UKCORE_NHS_VERIFICATION_EXT
    assert nhs["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"
    robin = one(row("people.csv", "HV0002"), "Patient")
    assert robin["identifier"][1]["value"] == "9990001014"  # spaces removed
    alex = one(row("people.csv", "HV0005"), "Patient")
    assert alex["identifier"][1]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "08"


def test_an_nhs_number_failing_modulus_11_is_kept_apart() -> None:
    drew = one(row("people.csv", "HV0006"), "Patient")
    assert [i["system"] for i in drew["identifier"]] == [f"{CT_ID}/local-patient-id", INVALID_NHS_NUMBER_SYSTEM]
    assert "extension" not in drew["identifier"][1]


def test_patient_demographics() -> None:
    amber = one(row("people.csv", "HV0001"), "Patient")
    assert amber["name"] == [{"family": "SYNTHETIC", "given": ["Amber"]}]
    assert (amber["birthDate"], amber["active"]) == ("2008-09-12", True)
    assert amber["address"] == [{"postalCode": "ZZ99 1AA"}]
    assert amber["generalPractitioner"] == [{"type": "Organization", "identifier": {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}}]
    genders = {p["identifier"][0]["value"]: p["gender"] for p in of_type("Patient")}
    # CSDS PERSON STATED GENDER CODE 1 2 9 X and M F U, as the maternity feed maps them
    assert genders == {"HV0001": "female", "HV0002": "male", "HV0003": "female", "HV0004": "female",
                       "HV0005": "male", "HV0006": "unknown"}


def test_patient_without_optional_columns() -> None:
    blank = dict.fromkeys(("nhs_number", "nhs_number_status", "person_birth_date", "person_stated_gender_code",
                           "postcode", "gp_practice_code", "person_family_name", "person_given_name"), "")
    [patient, provenance] = remap("people.csv", "HV0004", **blank).resources
    assert {k for k in patient if k not in ("resourceType", "id", "meta")} == {"identifier", "active"}
    assert provenance["target"] == [{"reference": f"Patient/{patient_id('HV0004')}"}]


# --- care contacts -> Appointment (+ Encounter) ------------------------------------------------------

@pytest.mark.parametrize(("contact_id", "status"), [
    ("CC001", "fulfilled"), ("CC002", "noshow"), ("CC003", "fulfilled"), ("CC004", "noshow"), ("CC005", "cancelled"),
    ("CC006", "cancelled"), ("CC007", "booked"), ("CC008", "fulfilled"), ("CC009", "noshow"), ("CC010", "noshow"),
    ("CC011", "fulfilled"), ("CC012", "fulfilled"), ("CC013", "noshow"), ("CC014", "fulfilled"),
])
def test_appointment_status_from_attended_or_did_not_attend(contact_id: str, status: str) -> None:
    mapped = contact(contact_id)
    appointment = one(mapped, "Appointment")
    assert appointment["status"] == status
    assert appointment["identifier"] == [{"system": f"{CT_ID}/care-contact", "value": contact_id}]
    assert appointment["serviceType"] == [{"coding": [HV_SERVICE]}]
    assert appointment["participant"][0]["actor"] == {
        "reference": f"Patient/{patient_id(mapped.row.record['local_patient_id'])}"}
    has_outcome = any(e["url"] == ATTENDANCE_OUTCOME_EXT for e in appointment.get("extension", []))
    assert has_outcome == (status == "noshow")
    assert ("cancelationReason" in appointment) == (status == "cancelled")
    encounters = [r for r in mapped.resources if r["resourceType"] == "Encounter"]
    assert len(encounters) == (status == "fulfilled")
    assert [r["resourceType"] for r in mapped.resources][-1] == "Provenance"


def test_a_child_who_misses_a_contact_was_not_brought() -> None:
    assert outcome(one(contact("CC004"), "Appointment")) == [("attendance-outcome", "was-not-brought"),
                                                              ("nhs-dd-attended-or-did-not-attend", "3")]
    assert one(contact("CC013"), "Appointment")["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == \
        "was-not-brought"


def test_a_17_year_old_mother_who_misses_her_antenatal_contact_was_not_brought() -> None:
    # DOMAIN.md §2: under 18 at the start time, whatever the setting
    assert outcome(one(contact("CC002"), "Appointment"))[0] == ("attendance-outcome", "was-not-brought")


def test_an_adult_who_misses_a_contact_did_not_attend() -> None:
    assert outcome(one(contact("CC010"), "Appointment")) == [("attendance-outcome", "did-not-attend"),
                                                              ("nhs-dd-attended-or-did-not-attend", "3")]


def test_age_is_decided_on_the_day_of_the_contact() -> None:
    # Amber turns 18 on 2026-09-12: a missed contact the day before and on the birthday
    before = remap("care_contacts.csv", "CC002", care_contact_date="2026-09-11").resources[0]
    on = remap("care_contacts.csv", "CC002", care_contact_date="2026-09-12").resources[0]
    assert outcome(before)[0][1] == "was-not-brought" and outcome(on)[0][1] == "did-not-attend"


def test_without_a_stored_birth_date_the_outcome_is_not_guessed() -> None:
    result = remap("care_contacts.csv", "CC004", births={})
    assert outcome(result.resources[0]) == [("nhs-dd-attended-or-did-not-attend", "3")]
    assert [(w.code, w.location) for w in result.warnings] == [("missing-field", "column:local_patient_id")]


def test_code_7_arrived_late_and_not_seen_is_a_missed_contact() -> None:
    appointment = one(contact("CC009"), "Appointment")
    assert appointment["status"] == "noshow" and "cancelationReason" not in appointment
    assert outcome(appointment) == [("attendance-outcome", "was-not-brought"),
                                    ("nhs-dd-attended-or-did-not-attend", "7")]
    assert [r["resourceType"] for r in contact("CC009").resources] == ["Appointment", "Provenance"]


def test_cancellations_say_by_whom_with_the_national_code() -> None:
    by_patient = one(contact("CC005"), "Appointment")
    assert by_patient["cancelationReason"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", "code": "pat",
         "display": "Patient"},
        {"system": NHS_DD_ATTENDANCE_CS, "code": "2", "display": "Appointment cancelled by, or on behalf of, the patient"}]
    assert "start" not in by_patient and "end" not in by_patient  # no time given: allowed when cancelled
    by_provider = one(contact("CC006"), "Appointment")
    assert [c["code"] for c in by_provider["cancelationReason"]["coding"]] == ["prov", "4"]
    assert (by_provider["start"], by_provider["end"]) == ("2026-04-30T09:30:00+01:00", "2026-04-30T10:00:00+01:00")


def test_a_future_contact_is_booked() -> None:
    booked = one(contact("CC007"), "Appointment")
    assert (booked["status"], booked["start"], booked["minutesDuration"]) == ("booked", "2026-06-18T10:00:00+01:00", 30)


def test_times_are_local_uk_time_gmt_or_bst() -> None:
    assert one(contact("CC001"), "Appointment")["start"] == "2026-01-14T10:00:00+00:00"
    assert one(contact("CC004"), "Appointment")["start"] == "2026-04-16T11:00:00+01:00"


def test_a_contact_that_took_place_is_a_finished_encounter() -> None:
    home = contact("CC001")
    encounter, appointment = one(home, "Encounter"), one(home, "Appointment")
    assert encounter["status"] == "finished"
    assert encounter["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH",
                                  "display": "home health"}
    assert encounter["type"] == [{"coding": [{"system": "https://fhir.carethread.org/CodeSystem/hv-contact-type",
                                              "code": "antenatal", "display": "Antenatal contact"}]}]
    assert encounter["serviceType"] == {"coding": [HV_SERVICE]}  # a children's (health visiting) setting
    assert encounter["appointment"] == [{"reference": f"Appointment/{appointment['id']}"}]
    assert encounter["period"] == {"start": appointment["start"], "end": appointment["end"]}
    assert encounter["subject"] == {"reference": f"Patient/{patient_id('HV0001')}"}
    assert encounter["participant"] == [{"individual": {"type": "Practitioner", "display": "HV Practitioner ONE"}}]
    assert encounter["serviceProvider"] == {"type": "Organization", "display": "Example Locality Team A"}
    clinic = one(contact("CC008"), "Encounter")  # code 6: arrived late, seen
    assert clinic["class"]["code"] == "AMB"
    assert clinic["type"][0]["coding"][0]["code"] == "1-year-review"


def test_json_lines_rows_map_as_csv_rows() -> None:
    jsonl = contact("CC011")  # attended_or_did_not_attend 5 and the duration written as JSON numbers
    assert jsonl.row.file == "care_contacts_2.jsonl"
    appointment = one(jsonl, "Appointment")
    assert (appointment["status"], appointment["minutesDuration"]) == ("fulfilled", 60)
    assert one(contact("CC012"), "Encounter")["class"]["code"] == "HH"  # codes in any case: "home"
    assert [p["actor"].get("type") for p in one(contact("CC013"), "Appointment")["participant"]] == [
        None, "HealthcareService"]  # a JSON null is an empty cell


# --- safeguarding concerns -> Flag ---------------------------------------------------------------------

def test_a_concern_is_an_active_safeguarding_flag_with_a_confidentiality_label() -> None:
    flag = one(row("safeguarding_concerns.csv", "SC001"), "Flag")
    assert flag["status"] == "active"
    assert [c["coding"][0]["code"] for c in flag["category"]] == ["safety", "safeguarding"]
    assert flag["code"] == {"coding": [{"system": SNOMED, "code": "919461000000108",
                                        "display": "At risk of sexual exploitation"}]}
    assert flag["subject"] == {"reference": f"Patient/{patient_id('HV0001')}"}
    assert flag["period"] == {"start": "2021-05-04"}
    assert flag["author"] == {"type": "Practitioner", "display": "Named Nurse EXAMPLE"}
    assert flag["identifier"] == [{"system": f"{CT_ID}/safeguarding-concern", "value": "SC001"}]
    assert flag["meta"]["security"] == [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                         "code": "R", "display": "restricted"}]
    assert "security" not in one(row("safeguarding_concerns.csv", "SC004"), "Flag")["meta"]


def test_a_concern_with_an_end_date_is_inactive_with_its_period() -> None:
    flag = one(row("safeguarding_concerns.csv", "SC003"), "Flag")
    assert flag["status"] == "inactive"
    assert flag["period"] == {"start": "2025-11-03", "end": "2026-02-20"}
    assert flag["code"]["coding"][0]["code"] == "818901000000100"  # unborn child subject to a CP plan


# --- household members -> RelatedPerson ---------------------------------------------------------------

@pytest.mark.parametrize(("member", "system", "code"), [
    ("HM001", ROLE, "MTH"), ("HM002", ROLE, "FTH"), ("HM003", ROLE, "GRMTH"), ("HM004", ROLE, "SIB"),
    ("HM006", ROLE, "STPFTH"), ("HM009", ROLE, "SIGOTHR"), ("HM011", ROLE, "GRFTH"),
    ("HM012", "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdditionalPersonRelationshipRole", "Carer"),
])
def test_household_member_relationship_codes(member: str, system: str, code: str) -> None:
    related = one(row("household_members.csv", member), "RelatedPerson")
    [coding] = related["relationship"][0]["coding"]
    assert (coding["system"], coding["code"]) == (system, code)


def test_household_members_belong_to_the_person_of_the_row() -> None:
    father = one(row("household_members.csv", "HM002"), "RelatedPerson")  # the 16-year-old father of the baby
    assert father["patient"] == {"reference": f"Patient/{patient_id('HV0002')}"}
    assert father["identifier"] == [{"system": f"{CT_ID}/household-member", "value": "HM002"},
                                    {"system": NHS_NUMBER_SYSTEM, "value": "9990001057"}]
    assert (father["name"], father["gender"], father["birthDate"]) == (
        [{"family": "PLACEHOLDER", "given": ["Jordan"]}], "male", "2009-07-03")
    grandmother = one(row("household_members.csv", "HM003"), "RelatedPerson")
    assert [i["system"] for i in grandmother["identifier"]] == [f"{CT_ID}/household-member"]


def test_a_member_who_is_a_person_of_the_export_carries_their_local_id() -> None:
    mother = one(row("household_members.csv", "HM001"), "RelatedPerson")
    assert {"system": f"{CT_ID}/local-patient-id", "value": "HV0001"} in mother["identifier"]
    amber = one(row("people.csv", "HV0001"), "Patient")
    assert mother["identifier"][1] == amber["identifier"][0]  # the same identifier: the link to her own record


# --- service levels -> Flag (universal partnership plus only) -------------------------------------------

def test_partnership_plus_is_a_safeguarding_flag() -> None:
    flags = [one(r, "Flag") for r in ROWS if r.row.feed == "hv_service_levels" and r.resources]
    assert len(flags) == 4
    for flag in flags:
        assert flag["code"] == {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/hv-service-level",
                                            "code": "partnership-plus", "display": "Universal partnership plus"}]}
        assert [c["coding"][0]["code"] for c in flag["category"]] == ["safety", "safeguarding"]
    stepped_down = [f for f in flags if f["subject"]["reference"] == f"Patient/{patient_id('HV0006')}"]
    assert [(f["status"], f["period"]) for f in stepped_down] == [("inactive", {"start": "2025-09-01",
                                                                                "end": "2026-03-31"})]


def test_universal_and_universal_plus_are_checked_and_yield_nothing() -> None:
    quiet = [r for r in ROWS if r.row.feed == "hv_service_levels" and not r.resources]
    assert sorted(r.row.record["service_level"] for r in quiet) == ["UNIVERSAL", "UNIVERSAL", "UNIVERSAL_PLUS"]
    assert all(r.error is None for r in quiet)
    assert failure("service_levels.csv", "HV0004", service_level="HIGH").code == "unmapped-code"
    assert where(failure("service_levels.csv", "HV0004", service_level_end_date="2026-13-01")) == \
        "column:service_level_end_date"


# --- Provenance ----------------------------------------------------------------------------------------

def test_one_provenance_per_row_naming_the_row_by_its_control_id() -> None:
    for mapped in ROWS:
        if not mapped.resources:
            continue
        *targets, provenance = mapped.resources
        assert provenance["resourceType"] == "Provenance"
        assert provenance["target"] == [{"reference": f"{r['resourceType']}/{r['id']}"} for r in targets]
        what = provenance["entity"][0]["what"]
        control = context(mapped.row.feed, mapped.row.record, {}).control_id
        assert what["identifier"] == {"system": f"{CT_ID}/export-row", "value": control}
        assert all(r["meta"]["source"] == f"https://fhir.carethread.org/source/health-visiting#{control}"
                   for r in mapped.resources)
    assert of_type("Provenance")[0]["entity"][0]["what"]["display"] == "Health visiting export: people row"


def test_without_a_control_id_the_provenance_is_keyed_by_the_row() -> None:
    # ctx:control_id is the context's control id (the pipeline's hash of the row); absent when empty
    from dataclasses import replace

    base = row("people.csv", "HV0001").row
    ctx = replace(context(base.feed, base.record, {}), control_id="")
    patient, provenance = map_record(MAPPINGS, base.feed, base.record, ctx).resources
    assert patient["meta"]["source"] == "https://fhir.carethread.org/source/health-visiting"
    assert "identifier" not in provenance["entity"][0]["what"]
    assert provenance["id"] == resource_id(SOURCE, "Provenance", "people", "HV0001")
    assert one(row("people.csv", "HV0001"), "Provenance")["id"] == resource_id(
        SOURCE, "Provenance", "people", context(base.feed, base.record, {}).control_id)


# --- determinism ---------------------------------------------------------------------------------------

def test_the_same_export_maps_to_the_same_ids() -> None:
    again = map_export()
    assert [[(r["resourceType"], r["id"]) for r in m.resources] for m in again] == \
        [[(r["resourceType"], r["id"]) for r in m.resources] for m in ROWS]
    ids = [(r["resourceType"], r["id"]) for m in ROWS for r in m.resources]
    assert len(ids) == len(set(ids))


def test_ids_follow_the_business_key_not_the_other_cells() -> None:
    before = contact("CC004").resources
    after = remap("care_contacts.csv", "CC004", care_professional_name="HV Practitioner FOUR",
                  attended_or_did_not_attend="5", contact_location_type="CLINIC").resources
    assert after[0]["id"] == before[0]["id"] and after[0]["status"] == "fulfilled"
    assert before[-1]["id"] != after[-1]["id"]  # another row (a new control id): another Provenance
    moved = remap("care_contacts.csv", "CC004", care_contact_id="CC099").resources
    assert moved[0]["id"] != before[0]["id"]
    # service level ids use the level's code, however the supplier spells it
    level = row("service_levels.csv", "HV0001").resources[0]
    assert remap("service_levels.csv", "HV0001", service_level="partnership_plus").resources[0]["id"] == level["id"]


def test_rows_name_the_patient_the_people_row_made() -> None:
    patients = {p["id"] for p in of_type("Patient")}
    for rtype, element in (("Appointment", "participant"), ("Encounter", "subject"), ("Flag", "subject"),
                           ("RelatedPerson", "patient")):
        for resource in of_type(rtype):
            ref = resource[element][0]["actor"] if element == "participant" else resource[element]
            assert ref["reference"].removeprefix("Patient/") in patients


# --- bad rows: a mapping error at the column, never the value --------------------------------------------

@pytest.mark.parametrize(("file", "key", "changes", "code", "column"), [
    # unknown codes
    ("care_contacts.csv", "CC001", {"attended_or_did_not_attend": "9"}, "unmapped-code", "attended_or_did_not_attend"),
    ("care_contacts.csv", "CC001", {"contact_type": "HOME_VISIT"}, "unmapped-code", "contact_type"),
    ("care_contacts.csv", "CC001", {"contact_location_type": "CAR_PARK"}, "unmapped-code", "contact_location_type"),
    ("people.csv", "HV0001", {"nhs_number_status": "09"}, "unmapped-code", "nhs_number_status"),
    ("people.csv", "HV0001", {"person_stated_gender_code": "Q"}, "unmapped-code", "person_stated_gender_code"),
    ("household_members.csv", "HM002", {"relationship": "COUSIN"}, "unmapped-code", "relationship"),
    ("household_members.csv", "HM002", {"member_gender_code": "Q"}, "unmapped-code", "member_gender_code"),
    ("safeguarding_concerns.csv", "SC001", {"concern_snomed_code": "281399006"}, "unmapped-code",
     "concern_snomed_code"),
    ("service_levels.csv", "HV0001", {"service_level": "TARGETED"}, "unmapped-code", "service_level"),
    # broken dates and times
    ("people.csv", "HV0001", {"person_birth_date": "12/09/2008"}, "invalid-date", "person_birth_date"),
    ("care_contacts.csv", "CC001", {"care_contact_date": "2026-02-30"}, "invalid-date", "care_contact_date"),
    ("care_contacts.csv", "CC001", {"care_contact_time": "25:00"}, "invalid-date", "care_contact_time"),
    ("safeguarding_concerns.csv", "SC001", {"concern_start_date": "2021-5-4"}, "invalid-date", "concern_start_date"),
    ("safeguarding_concerns.csv", "SC002", {"concern_end_date": "31/03/2023"}, "invalid-date", "concern_end_date"),
    ("household_members.csv", "HM002", {"member_birth_date": "2009"}, "invalid-date", "member_birth_date"),
    ("service_levels.csv", "HV0001", {"service_level_start_date": "2025-11-31"}, "invalid-date",
     "service_level_start_date"),
    # missing identifiers and required cells
    ("people.csv", "HV0001", {"local_patient_id": ""}, "missing-field", "local_patient_id"),
    ("care_contacts.csv", "CC001", {"care_contact_id": ""}, "missing-field", "care_contact_id"),
    ("care_contacts.csv", "CC001", {"local_patient_id": ""}, "missing-field", "local_patient_id"),
    ("safeguarding_concerns.csv", "SC001", {"concern_id": ""}, "missing-field", "concern_id"),
    ("household_members.csv", "HM002", {"household_member_id": ""}, "missing-field", "household_member_id"),
    ("household_members.csv", "HM002", {"local_patient_id": ""}, "missing-field", "local_patient_id"),
    ("service_levels.csv", "HV0001", {"local_patient_id": ""}, "missing-field", "local_patient_id"),
    ("care_contacts.csv", "CC001", {"attended_or_did_not_attend": ""}, "missing-field", "attended_or_did_not_attend"),
    ("care_contacts.csv", "CC001", {"care_contact_date": ""}, "missing-field", "care_contact_date"),
    ("care_contacts.csv", "CC001", {"contact_type": ""}, "missing-field", "contact_type"),
    ("care_contacts.csv", "CC002", {"care_contact_time": ""}, "missing-field", "care_contact_time"),
    ("care_contacts.csv", "CC002", {"contact_duration_minutes": "0"}, "missing-field", "contact_duration_minutes"),
    ("care_contacts.csv", "CC007", {"contact_duration_minutes": "half an hour"}, "missing-field",
     "contact_duration_minutes"),
    ("care_contacts.csv", "CC001", {"contact_location_type": ""}, "missing-field", "contact_location_type"),
    ("safeguarding_concerns.csv", "SC001", {"concern_snomed_code": ""}, "missing-field", "concern_snomed_code"),
    ("safeguarding_concerns.csv", "SC001", {"concern_start_date": ""}, "missing-field", "concern_start_date"),
    ("household_members.csv", "HM002", {"relationship": ""}, "missing-field", "relationship"),
    ("service_levels.csv", "HV0004", {"service_level_start_date": ""}, "missing-field", "service_level_start_date"),
])
def test_a_bad_row_is_refused_at_its_column(file: str, key: str, changes: dict[str, str], code: str,
                                            column: str) -> None:
    error = failure(file, key, **changes)
    assert (error.code, where(error)) == (code, f"column:{column}")


def test_a_cancelled_contact_needs_no_time_but_a_missed_one_does() -> None:
    assert remap("care_contacts.csv", "CC006", care_contact_time="", contact_duration_minutes="").resources
    assert where(failure("care_contacts.csv", "CC004", care_contact_time="")) == "column:care_contact_time"
    # a contact that did not take place needs no location type
    assert remap("care_contacts.csv", "CC004", contact_location_type="").resources


# --- a supplier with other column names or codes: a site overlay --------------------------------------

def test_a_supplier_with_other_codes_overlays_one_code_table(tmp_path: Path) -> None:
    site = tmp_path / "site" / "codes"
    site.mkdir(parents=True)
    shipped = (Path(__file__).resolve().parents[2] / "mappings" / "codes" / "hv_contact_type.yaml").read_text()
    (site / "hv_contact_type.yaml").write_text(shipped + "  NBV: {code: new-birth-visit, display: New birth visit}\n")
    mset = load_mappings(overlay=tmp_path / "site")
    base = contact("CC003").row
    record = {**base.record, "contact_type": "NBV"}
    result = map_record(mset, base.feed, record, context(base.feed, record, {}, mset))
    assert result.resources[0]["appointmentType"]["coding"][0]["code"] == "new-birth-visit"


def test_a_supplier_with_other_column_names_overlays_the_files_that_read_them(tmp_path: Path) -> None:
    # the supplier calls the NHS number column NHSNumber: one line changes in one file
    shipped = Path(__file__).resolve().parents[2] / "mappings" / "csv" / "resources" / "hv_patient.yaml"
    original = shipped.read_text()
    renamed = original.replace("{from: column:nhs_number,", "{from: column:NHSNumber,")
    assert sum(a != b for a, b in zip(original.splitlines(), renamed.splitlines())) == 1
    site = tmp_path / "site" / "csv" / "resources"
    site.mkdir(parents=True)
    (site / "hv_patient.yaml").write_text(renamed)
    mset = load_mappings(overlay=tmp_path / "site")
    base = row("people.csv", "HV0001").row
    record = {("NHSNumber" if k == "nhs_number" else k): v for k, v in base.record.items()}
    [patient, _] = map_record(mset, base.feed, record, context(base.feed, record, {}, mset)).resources
    assert patient["identifier"][1]["value"] == "9990001006"


def test_the_example_folder_is_what_the_readme_describes() -> None:
    readme = (EXAMPLE.parent / "README.md").read_text()
    for feed, model in MAPPINGS.feeds_of(SOURCE):
        assert f"`{feed}`" in readme
        columns = sorted({c for name in _files_of(feed) for c in MAPPINGS.columns_used.get(name, ())})
        for column in columns:
            assert f"`{column}`" in readme, (feed, column)
    assert {r.file for r in read_export()} <= {p.name for p in EXAMPLE.iterdir()}


def _files_of(feed: str) -> set[str]:
    cm = MAPPINGS.feeds[feed]
    return {cm.name} | {e.resource.name for e in cm.entries}


def test_the_readme_example_is_synthetic() -> None:
    text = "\n".join(p.read_text() for p in EXAMPLE.iterdir())
    for number in re.findall(r"\b\d{10}\b", text):
        assert number.startswith("999"), "NHS numbers come from the 999 test range"


# --- the synthetic export of the benchmarks (bench/hv_synthetic.py) --------------------------------------

def test_the_synthetic_export_maps_cleanly_and_depends_only_on_its_seed(tmp_path: Path,
                                                                         profiles: ProfileSet) -> None:
    from bench.hv_synthetic import write_export

    counts = write_export(tmp_path / "a", 60, seed=2)
    assert counts["people.csv"] == 60 and 3 * 60 <= counts["care_contacts.csv"] <= 5 * 60
    assert counts == {name: len((tmp_path / "a" / name).read_text().splitlines()) - 1 for name in counts}
    write_export(tmp_path / "b", 60, seed=2)
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in counts)
    assert write_export(tmp_path / "c", 60, seed=3) != counts or \
        (tmp_path / "c" / "people.csv").read_bytes() != (tmp_path / "a" / "people.csv").read_bytes()
    mapped = map_export(tmp_path / "a")
    assert [(m.row.file, m.row.line, m.error.code) for m in mapped if m.error is not None] == []
    statuses = {r["status"] for m in mapped for r in m.resources if r["resourceType"] == "Appointment"}
    assert {"fulfilled", "noshow"} <= statuses
    for resource in (r for m in mapped for r in m.resources):
        issues = profiles.validate(resource, profiles.default_profile(resource["resourceType"]))
        assert [i for i in issues if i.severity == "error"] == [], resource["resourceType"]
