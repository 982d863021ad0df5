"""Synthetic resources that are valid against each Carethread profile, and helpers for the tests.

NHS numbers are from the 999 test range and pass the Modulus 11 check; names are invented.
"""

from __future__ import annotations

import copy
from typing import Any

from adapter.conformance import ValidationIssue

CT = "https://fhir.carethread.org"
SD = f"{CT}/StructureDefinition"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
SCT = "http://snomed.info/sct"
ATT_EXT = f"{SD}/Extension-Carethread-AttendanceOutcome"
VERIFICATION_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
NHS_NUMBER = "9990001006"
OTHER_NHS_NUMBER = "9990001014"
FAILING_NHS_NUMBER = "9990001007"
ORG = {"type": "Organization", "identifier": {"system": ODS, "value": "RX1"}}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "pat-1",
    "meta": {"profile": [f"{SD}/CarethreadPatient"]},
    "identifier": [
        {"system": NHS, "value": NHS_NUMBER, "extension": [{"url": VERIFICATION_EXT, "valueCodeableConcept": {"coding": [
            {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "code": "01"}]}}]},
        {"system": f"{CT}/Id/maternity/RX1", "value": "M0000001", "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
         "assigner": {"identifier": {"system": ODS, "value": "RX1"}}},
    ],
    "active": True,
    "name": [{"use": "official", "family": "SYNTHETIC", "given": ["Amber"]}],
    "gender": "female",
    "birthDate": "2009-05-14",
    "managingOrganization": ORG,
}
RELATED_PERSON: dict[str, Any] = {
    "resourceType": "RelatedPerson", "id": "rp-1",
    "identifier": [{"system": NHS, "value": OTHER_NHS_NUMBER}],
    "active": True,
    "patient": {"reference": "Patient/pat-1"},
    "relationship": [{"coding": [{"system": ROLE, "code": "NFTH", "display": "natural father"}]}],
    "name": [{"family": "SYNTHETIC", "given": ["Ben"]}],
    "gender": "male",
}
FLAG: dict[str, Any] = {
    "resourceType": "Flag", "id": "flag-1",
    "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
    "contained": [{"resourceType": "Provenance", "id": "prov", "target": [{"reference": "#"}],
                   "recorded": "2026-03-01T09:15:00+00:00", "agent": [{"who": ORG}]}],
    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                   "valueReference": {"reference": "CarePlan/plan-1"}}],
    "status": "active",
    "category": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety", "display": "Safety"}]},
        {"coding": [{"system": f"{CT}/CodeSystem/flag-category", "code": "safeguarding", "display": "Safeguarding"}]},
    ],
    "code": {"coding": [{"system": SCT, "code": "342191000000101", "display": "Subject to child protection plan"}]},
    "subject": {"reference": "Patient/pat-1"},
    "period": {"start": "2026-01-05", "end": "2026-12-31"},
    "author": ORG,
}
APPOINTMENT_NOSHOW: dict[str, Any] = {
    "resourceType": "Appointment", "id": "appt-1",
    "extension": [{"url": ATT_EXT, "valueCodeableConcept": {"coding": [
        {"system": f"{CT}/CodeSystem/attendance-outcome", "code": "was-not-brought", "display": "Was not brought"},
        {"system": f"{CT}/CodeSystem/nhs-dd-attended-or-did-not-attend", "code": "3"}]}}],
    "identifier": [{"system": f"{CT}/Id/maternity/appointment-filler", "value": "APPT-1"}],
    "status": "noshow",
    "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "FOLLOWUP"}]},
    "start": "2026-03-02T10:00:00+00:00",
    "end": "2026-03-02T10:30:00+00:00",
    "participant": [{"actor": {"reference": "Patient/pat-1"}, "required": "required", "status": "accepted"}],
}
APPOINTMENT_BOOKED: dict[str, Any] = {k: v for k, v in APPOINTMENT_NOSHOW.items() if k != "extension"} | {"status": "booked"}
ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter", "id": "enc-1",
    "identifier": [{"system": f"{CT}/Id/maternity/visit-number", "value": "V00000001"}],
    "status": "in-progress",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"},
    "serviceType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0069", "code": "OBS"}]},
    "subject": {"reference": "Patient/pat-1"},
    "period": {"start": "2026-03-01T09:15:00+00:00"},
    "location": [{"location": {"display": "MATWARD / Bay 1"}, "status": "active"}],
    "serviceProvider": ORG,
}
COMMUNICATION: dict[str, Any] = {
    "resourceType": "Communication", "id": "com-1",
    "status": "completed",
    "subject": {"reference": "Patient/pat-1"},
    "sent": "2026-03-02T11:00:00+00:00",
    "recipient": [{"type": "Organization", "identifier": {"system": ODS, "value": "Y12345"}}],
    "payload": [{"contentReference": {"reference": "Flag/flag-1"}},
                {"contentReference": {"reference": "Appointment/appt-1"}},
                {"contentString": "Was not brought to a maternity appointment"}],
}
TASK: dict[str, Any] = {
    "resourceType": "Task", "id": "task-1",
    "status": "requested",
    "intent": "proposal",
    "code": {"coding": [{"system": f"{CT}/CodeSystem/task-code", "code": "identity-review", "display": "Identity review"}]},
    "focus": {"reference": "Patient/pat-1"},
    "for": {"reference": "Patient/pat-1"},
    "authoredOn": "2026-03-02T11:00:00+00:00",
    "lastModified": "2026-03-02T11:05:00+00:00",
    "input": [{"type": {"coding": [{"system": f"{CT}/CodeSystem/task-input-type", "code": "candidate"}]},
               "valueReference": {"reference": "Patient/pat-2"}}],
}

VALID: dict[str, dict[str, Any]] = {
    "CarethreadPatient": PATIENT, "CarethreadRelatedPerson": RELATED_PERSON, "CarethreadFlag": FLAG,
    "CarethreadAppointment": APPOINTMENT_NOSHOW, "CarethreadEncounter": ENCOUNTER,
    "CarethreadCommunication": COMMUNICATION, "CarethreadTask": TASK,
}


def fresh(resource: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(resource)


def findings(issues: list[ValidationIssue]) -> list[tuple[str, str, str]]:
    """(severity, code, expression) of each issue, leaving out the once-per-run information ones."""
    return [(i.severity, i.code, i.expression) for i in issues if i.severity != "information"]
