"""Each Carethread profile: a valid resource, then one invalid resource per rule kind, each asserting the exact
issues (severity, issue code, FHIRPath expression).

Rule kinds: cardinality, fixed/pattern, required binding, extensible binding, slice, extension, invariant (and
reference target where the profile narrows one).  Not every kind exists in every profile: the Patient,
RelatedPerson, Appointment, Encounter and Communication profiles fix or pattern nothing that a resource can get
wrong without leaving the slice (a slice is matched on its fixed value), and Communication has no slicing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapter.conformance import ProfileSet
from tests.conformance.resources import (
    APPOINTMENT_BOOKED,
    APPOINTMENT_NOSHOW,
    ATT_EXT,
    COMMUNICATION,
    ENCOUNTER,
    FAILING_NHS_NUMBER,
    FLAG,
    NHS,
    NHS_NUMBER,
    OTHER_NHS_NUMBER,
    PATIENT,
    RELATED_PERSON,
    SCT,
    SD,
    TASK,
    V2_0203,
    VALID,
    findings,
    fresh,
)

Mutation = Callable[[dict[str, Any]], None]
E, W = "error", "warning"
UK_OUTCOME = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-OutcomeOfAttendance"
UK_ETHNIC = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
CT_UNKNOWN_EXT = "https://fhir.carethread.org/StructureDefinition/Extension-Carethread-NoSuchThing"


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted path (list items by index: 'identifier.0.value')."""
    def mutate(r: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = r
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _drop(path: str) -> Mutation:
    def mutate(r: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = r
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        del target[int(last) if last.isdigit() else last]
    return mutate


def _append(path: str, value: Any) -> Mutation:
    def mutate(r: dict[str, Any]) -> None:
        r.setdefault(path, []).append(value)
    return mutate


def _ethnic(code: str = "A") -> dict[str, Any]:
    return {"url": UK_ETHNIC, "valueCodeableConcept": {"coding": [
        {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland", "code": code}]}}


def _outcome_ext() -> dict[str, Any]:
    return {"url": UK_OUTCOME, "valueCodeableConcept": {"coding": [
        {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-OutcomeOfAttendanceEngland", "code": "1"}]}}


def _unknown_ext() -> dict[str, Any]:
    return {"url": CT_UNKNOWN_EXT, "valueString": "x"}


def _ss_identifier() -> dict[str, Any]:
    return {"system": "https://fhir.carethread.org/Id/example", "value": "X1",
            "type": {"coding": [{"system": V2_0203, "code": "SS"}]}}


CASES: list[tuple[str, str, dict[str, Any], Mutation, list[tuple[str, str, str]]]] = [
    # --- CarethreadPatient ---------------------------------------------------------------------------------
    ("patient-cardinality", "CarethreadPatient", PATIENT, _drop("active"), [(E, "required", "Patient.active")]),
    ("patient-required-binding", "CarethreadPatient", PATIENT, _set("gender", "girl"),
     [(E, "code-invalid", "Patient.gender")]),
    ("patient-extensible-binding", "CarethreadPatient", PATIENT,
     _set("maritalStatus", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "Q"}]}),
     [(W, "code-invalid", "Patient.maritalStatus.coding[0].code")]),
    ("patient-slice-max", "CarethreadPatient", PATIENT, _append("identifier", {"system": NHS, "value": OTHER_NHS_NUMBER}),
     [(E, "structure", "Patient.identifier[2]")]),
    ("patient-slice-value-required", "CarethreadPatient", PATIENT, _drop("identifier.0.value"),
     [(E, "required", "Patient.identifier[0].value")]),
    ("patient-nhs-number-modulus-11", "CarethreadPatient", PATIENT, _set("identifier.0.value", FAILING_NHS_NUMBER),
     [(E, "value", "Patient.identifier[0].value")]),
    ("patient-extension-slice-max", "CarethreadPatient", PATIENT,
     _set("extension", [_ethnic("A"), _ethnic("B")]), [(E, "structure", "Patient.extension[1]")]),
    ("patient-extension-unknown", "CarethreadPatient", PATIENT, _set("extension", [_unknown_ext()]),
     [(E, "extension", "Patient.extension[0].url")]),
    ("patient-extension-value-type", "CarethreadPatient", PATIENT,
     _set("identifier.0.extension.0", {"url": PATIENT["identifier"][0]["extension"][0]["url"], "valueString": "01"}),
     [(E, "extension", "Patient.identifier[0].extension[0].valueString"),
      (E, "required", "Patient.identifier[0].extension[0].value")]),
    ("patient-invariant-ct-pat-1", "CarethreadPatient", PATIENT,
     _set("identifier", [{"system": "https://fhir.carethread.org/Id/nhs-number-failing-check", "value": "1"}]),
     [(E, "invariant", "Patient")]),
    ("patient-invariant-per-1", "CarethreadPatient", PATIENT,
     _set("name.0.period", {"start": "2020-01-02", "end": "2020-01-01"}), [(E, "invariant", "Patient.name[0].period")]),
    # --- CarethreadRelatedPerson ----------------------------------------------------------------------------
    ("relatedperson-cardinality", "CarethreadRelatedPerson", RELATED_PERSON, _drop("relationship"),
     [(E, "required", "RelatedPerson.relationship")]),
    ("relatedperson-required-binding", "CarethreadRelatedPerson", RELATED_PERSON,
     _set("relationship.0.coding.0.code", "NATFTH"), [(E, "code-invalid", "RelatedPerson.relationship[0].coding[0].code")]),
    ("relatedperson-required-binding-outside-subset", "CarethreadRelatedPerson", RELATED_PERSON,
     _set("relationship.0.coding.0.code", "COUSN"), [(E, "code-invalid", "RelatedPerson.relationship[0].coding[0].code")]),
    ("relatedperson-extensible-binding", "CarethreadRelatedPerson", RELATED_PERSON, _append("identifier", _ss_identifier()),
     [(W, "code-invalid", "RelatedPerson.identifier[1].type.coding[0].code")]),
    ("relatedperson-slice-max", "CarethreadRelatedPerson", RELATED_PERSON, _append("identifier", {"system": NHS, "value": NHS_NUMBER}),
     [(E, "structure", "RelatedPerson.identifier[1]")]),
    ("relatedperson-slice-value-required", "CarethreadRelatedPerson", RELATED_PERSON, _drop("identifier.0.value"),
     [(E, "required", "RelatedPerson.identifier[0].value")]),
    ("relatedperson-extension", "CarethreadRelatedPerson", RELATED_PERSON, _set("extension", [_unknown_ext()]),
     [(E, "extension", "RelatedPerson.extension[0].url")]),
    ("relatedperson-invariant", "CarethreadRelatedPerson", RELATED_PERSON,
     _set("period", {"start": "2026-01-02", "end": "2025-01-01"}), [(E, "invariant", "RelatedPerson.period")]),
    ("relatedperson-reference-target", "CarethreadRelatedPerson", RELATED_PERSON,
     _set("patient", {"reference": "Group/g1"}), [(E, "structure", "RelatedPerson.patient.reference")]),
    # --- CarethreadFlag ---------------------------------------------------------------------------------------
    ("flag-cardinality", "CarethreadFlag", FLAG, _drop("subject"), [(E, "required", "Flag.subject")]),
    ("flag-pattern-slice-missing", "CarethreadFlag", FLAG, _drop("category.1"),
     [(E, "required", "Flag.category"), (E, "required", "Flag.category")]),
    ("flag-required-binding", "CarethreadFlag", FLAG, _set("status", "closed"), [(E, "code-invalid", "Flag.status")]),
    ("flag-extensible-binding", "CarethreadFlag", FLAG, _set("code", {"coding": [{"system": SCT, "code": "700253008"}]}),
     [(W, "code-invalid", "Flag.code.coding[0].code")]),
    ("flag-extensible-binding-security", "CarethreadFlag", FLAG,
     _set("meta", {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "Z"}]}),
     [(W, "code-invalid", "Flag.meta.security[0].code")]),
    ("flag-slice-max", "CarethreadFlag", FLAG, _append("category", fresh(FLAG["category"][0])),
     [(E, "structure", "Flag.category[2]")]),
    ("flag-extension-value-type", "CarethreadFlag", FLAG,
     _set("extension", [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueString": "x"}]),
     [(E, "extension", "Flag.extension[0].valueString"), (E, "required", "Flag.extension[0].value")]),
    ("flag-invariant", "CarethreadFlag", FLAG, _set("period", {"start": "2026-01-05", "end": "2026-01-04"}),
     [(E, "invariant", "Flag.period")]),
    ("flag-invariant-dom-4", "CarethreadFlag", FLAG, _set("contained.0.meta", {"versionId": "1"}),
     [(E, "invariant", "Flag")]),
    ("flag-reference-target", "CarethreadFlag", FLAG, _set("subject", {"reference": "Group/g1"}),
     [(E, "structure", "Flag.subject.reference")]),
    # --- CarethreadAppointment ----------------------------------------------------------------------------------
    ("appointment-cardinality", "CarethreadAppointment", APPOINTMENT_NOSHOW, _drop("participant"),
     [(E, "required", "Appointment.participant")]),
    ("appointment-required-binding-extension", "CarethreadAppointment", APPOINTMENT_NOSHOW,
     _set("extension.0.valueCodeableConcept", {"coding": [
         {"system": "https://fhir.carethread.org/CodeSystem/attendance-outcome", "code": "no-show"}]}),
     [(E, "code-invalid", "Appointment.extension[0].valueCodeableConcept.coding[0].code")]),
    ("appointment-extensible-binding", "CarethreadAppointment", APPOINTMENT_NOSHOW,
     _set("appointmentType.coding.0.code", "LATER"), [(W, "code-invalid", "Appointment.appointmentType.coding[0].code")]),
    ("appointment-slice-max", "CarethreadAppointment", APPOINTMENT_NOSHOW,
     lambda r: r["extension"].append(fresh(r["extension"][0])), [(E, "structure", "Appointment.extension[1]")]),
    ("appointment-extension", "CarethreadAppointment", APPOINTMENT_NOSHOW,
     _set("extension.0", {"url": ATT_EXT, "valueCoding": {"code": "3"}}),
     [(E, "extension", "Appointment.extension[0].valueCoding"), (E, "required", "Appointment.extension[0].value")]),
    ("appointment-invariant-app-2", "CarethreadAppointment", APPOINTMENT_NOSHOW, _drop("end"),
     [(E, "invariant", "Appointment"), (E, "invariant", "Appointment")]),
    ("appointment-invariant-ct-app-2", "CarethreadAppointment", APPOINTMENT_NOSHOW,
     _set("cancelationReason", {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                                             "code": "pat"}]}),
     [(E, "invariant", "Appointment")]),
    # --- CarethreadEncounter -------------------------------------------------------------------------------------
    ("encounter-cardinality", "CarethreadEncounter", ENCOUNTER, _drop("subject"), [(E, "required", "Encounter.subject")]),
    ("encounter-required-binding", "CarethreadEncounter", ENCOUNTER, _set("status", "done"),
     [(E, "code-invalid", "Encounter.status")]),
    ("encounter-extensible-binding", "CarethreadEncounter", ENCOUNTER,
     _set("participant", [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                  "code": "AUT"}]}], "individual": {"display": "midwife"}}]),
     [(W, "code-invalid", "Encounter.participant[0].type[0].coding[0].code")]),
    ("encounter-extension-slice-max", "CarethreadEncounter", ENCOUNTER, _set("extension", [_outcome_ext(), _outcome_ext()]),
     [(E, "structure", "Encounter.extension[1]")]),
    ("encounter-extension", "CarethreadEncounter", ENCOUNTER, _set("extension", [_unknown_ext()]),
     [(E, "extension", "Encounter.extension[0].url")]),
    ("encounter-invariant", "CarethreadEncounter", ENCOUNTER,
     _set("period", {"start": "2026-03-01T09:15:00+00:00", "end": "2026-03-01T09:00:00+00:00"}),
     [(E, "invariant", "Encounter.period")]),
    ("encounter-reference-target", "CarethreadEncounter", ENCOUNTER, _set("subject", {"reference": "Group/g1"}),
     [(E, "structure", "Encounter.subject.reference")]),
    # --- CarethreadCommunication ---------------------------------------------------------------------------------
    ("communication-cardinality", "CarethreadCommunication", COMMUNICATION, _drop("recipient"),
     [(E, "required", "Communication.recipient")]),
    ("communication-required-binding", "CarethreadCommunication", COMMUNICATION, _set("status", "sent"),
     [(E, "code-invalid", "Communication.status")]),
    ("communication-extensible-binding", "CarethreadCommunication", COMMUNICATION, _set("identifier", [_ss_identifier()]),
     [(W, "code-invalid", "Communication.identifier[0].type.coding[0].code")]),
    ("communication-extension", "CarethreadCommunication", COMMUNICATION, _set("extension", [_unknown_ext()]),
     [(E, "extension", "Communication.extension[0].url")]),
    ("communication-invariant", "CarethreadCommunication", COMMUNICATION, _drop("payload.0"),
     [(E, "invariant", "Communication")]),
    ("communication-reference-target", "CarethreadCommunication", COMMUNICATION,
     _set("recipient", [{"reference": "Practitioner/pr1"}]), [(E, "structure", "Communication.recipient[0].reference")]),
    # --- CarethreadTask -----------------------------------------------------------------------------------------------
    ("task-cardinality", "CarethreadTask", TASK, _drop("focus"), [(E, "required", "Task.focus")]),
    ("task-pattern", "CarethreadTask", TASK,
     _set("code", {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]}),
     [(E, "value", "Task.code")]),
    ("task-required-binding", "CarethreadTask", TASK, _set("intent", "maybe"), [(E, "code-invalid", "Task.intent")]),
    ("task-extensible-binding", "CarethreadTask", TASK, _set("identifier", [_ss_identifier()]),
     [(W, "code-invalid", "Task.identifier[0].type.coding[0].code")]),
    ("task-slice-missing", "CarethreadTask", TASK, _set("input.0.type", {"text": "something else"}),
     [(E, "required", "Task.input")]),
    ("task-slice-value-type", "CarethreadTask", TASK, lambda r: r["input"][0].update(
        {"valueString": "x"}) or r["input"][0].pop("valueReference"),
     [(E, "structure", "Task.input[0].valueString"), (E, "required", "Task.input[0].value")]),
    ("task-extension", "CarethreadTask", TASK, _set("extension", [_unknown_ext()]), [(E, "extension", "Task.extension[0].url")]),
    ("task-invariant", "CarethreadTask", TASK, _set("lastModified", "2026-03-02T10:00:00+00:00"),
     [(E, "invariant", "Task")]),
    ("task-reference-target", "CarethreadTask", TASK, _set("for", {"reference": "Group/g1"}),
     [(E, "structure", "Task.for.reference")]),
]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_resource_has_no_findings(profiles: ProfileSet, name: str) -> None:
    assert findings(profiles.validate(fresh(VALID[name]), f"{SD}/{name}")) == []


@pytest.mark.parametrize(("case", "name", "base", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_resource(profiles: ProfileSet, case: str, name: str, base: dict[str, Any], mutate: Mutation,
                          expected: list[tuple[str, str, str]]) -> None:
    resource = fresh(base)
    mutate(resource)
    assert sorted(findings(profiles.validate(resource, f"{SD}/{name}"))) == sorted(expected)


def test_every_profile_and_rule_kind_is_covered() -> None:
    kinds = {"cardinality", "required-binding", "extensible-binding", "slice", "extension", "invariant"}
    not_applicable = {"CarethreadCommunication": {"slice"}}  # no slicing in that profile
    for name in VALID:
        covered = {kind for case, profile, *_ in CASES if profile == name for kind in kinds if kind in case}
        assert covered == kinds - not_applicable.get(name, set()), (name, kinds - covered)


def test_appointment_status_wasnotbrought_is_rejected(profiles: ProfileSet) -> None:
    appointment = fresh(APPOINTMENT_BOOKED) | {"status": "wasnotbrought"}
    issues = profiles.validate(appointment, f"{SD}/CarethreadAppointment")
    assert findings(issues) == [(E, "code-invalid", "Appointment.status")]
    # also against the base R4 definition: the required binding comes from there
    base = profiles.validate(appointment, "http://hl7.org/fhir/StructureDefinition/Appointment")
    assert findings(base) == [(E, "code-invalid", "Appointment.status")]


def test_attendance_outcome_present_iff_noshow(profiles: ProfileSet) -> None:
    url = f"{SD}/CarethreadAppointment"
    noshow_without = fresh(APPOINTMENT_NOSHOW)
    del noshow_without["extension"]
    booked_with = fresh(APPOINTMENT_NOSHOW) | {"status": "booked"}
    for resource in (noshow_without, booked_with):
        issues = profiles.validate(resource, url)
        assert findings(issues) == [(E, "invariant", "Appointment")]
        assert issues[0].diagnostics.startswith("ct-app-1:")
    assert findings(profiles.validate(fresh(APPOINTMENT_NOSHOW), url)) == []
    assert findings(profiles.validate(fresh(APPOINTMENT_BOOKED), url)) == []


def test_diagnostics_never_carry_instance_values(profiles: ProfileSet) -> None:
    resource = fresh(PATIENT)
    resource["identifier"][0]["value"] = FAILING_NHS_NUMBER
    resource["gender"] = "SECRET-GENDER"
    resource["name"][0]["period"] = {"start": "2020-01-02", "end": "2020-01-01"}
    issues = profiles.validate(resource, f"{SD}/CarethreadPatient")
    assert len(issues) == 3
    for issue in issues:
        for value in (FAILING_NHS_NUMBER, "SECRET-GENDER", "2020-01-0"):
            assert value not in issue.diagnostics and value not in issue.expression
