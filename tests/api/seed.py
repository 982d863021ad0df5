"""The synthetic data the API tests search: four patients and what hangs off them (valid R4 resources).

NHS numbers are from the synthetic range and pass Modulus 11; names are made up.

    pat-a  NHS 9999999999, Smith, Zoë, female, 2009-03-15
    pat-b  NHS 9000000009, Smythe, Ann (text "Ann Smythe"), female, 2010-07-01
    pat-c  local MRN only, Brown, Baby, male, 2026-03-01
    pat-d  identifier without system, Ōkubo, no gender, birth date "2009" (partial)
"""

from __future__ import annotations

from typing import Any

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MRN = "https://fhir.carethread.org/Id/maternity/RX1/MR"
SNOMED = "http://snomed.info/sct"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
CT_FLAG_CATEGORY = "https://fhir.carethread.org/CodeSystem/flag-category"
VISIT = "https://fhir.carethread.org/Id/maternity/RX1/VN"
APPOINTMENT_ID = "https://fhir.carethread.org/Id/maternity/RX1/APPT"


def _ref(target: str) -> dict[str, str]:
    return {"reference": target}


def _patient(pid: str, identifiers: list[dict[str, str]], name: dict[str, Any], birth: str,
             gender: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid, "identifier": identifiers,
                                "name": [name], "birthDate": birth}
    if gender:
        resource["gender"] = gender
    return resource


def _flag(
    fid: str, subject: str, status: str, code: str, categories: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "resourceType": "Flag", "id": fid, "status": status,
        "category": [{"coding": [{"system": s, "code": c}]} for s, c in categories],
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": _ref(subject),
    }


def _appointment(aid: str, status: str, start: str, actors: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Appointment", "id": aid, "status": status, "start": start,
        "end": start.replace("T09:00", "T09:30"),
        "identifier": [{"system": APPOINTMENT_ID, "value": aid.upper()}],
        "participant": [{"actor": _ref(actor), "status": "accepted"} for actor in actors],
    }


def _encounter(eid: str, subject: str, status: str, start: str, visit: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "id": eid, "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": _ref(subject), "period": {"start": start},
        "identifier": [{"system": VISIT, "value": visit}],
    }


SEED: list[dict[str, Any]] = [
    _patient("pat-a", [{"system": NHS, "value": "9999999999"}, {"system": MRN, "value": "MRN001"}],
             {"family": "Smith", "given": ["Zoë"]}, "2009-03-15", "female"),
    _patient("pat-b", [{"system": NHS, "value": "9000000009"}],
             {"family": "Smythe", "given": ["Ann"], "text": "Ann Smythe"}, "2010-07-01", "female"),
    _patient("pat-c", [{"system": MRN, "value": "MRN003"}], {"family": "Brown", "given": ["Baby"]},
             "2026-03-01", "male"),
    _patient("pat-d", [{"value": "LEGACY-4"}], {"family": "Ōkubo", "given": ["Rin"]}, "2009", None),
    {"resourceType": "RelatedPerson", "id": "rp-1", "patient": _ref("Patient/pat-c"),
     "identifier": [{"system": MRN, "value": "MRN-MOTHER"}],
     "relationship": [{"coding": [{"system": ROLE, "code": "MTH"}]}]},
    {"resourceType": "RelatedPerson", "id": "rp-2", "patient": _ref("Patient/pat-a"),
     "relationship": [{"coding": [{"system": ROLE, "code": "FTH"}]}]},
    _encounter("enc-1", "Patient/pat-a", "finished", "2026-01-10T10:00:00+00:00", "V1"),
    _encounter("enc-2", "Patient/pat-c", "in-progress", "2026-03-01T08:30:00+01:00", "V2"),
    _appointment("appt-1", "noshow", "2026-03-01T09:00:00+00:00", ["Patient/pat-a", "Practitioner/dr-1"]),
    _appointment("appt-2", "booked", "2026-04-01T09:00:00Z", ["Patient/pat-b"]),
    _appointment("appt-3", "noshow", "2025-12-01T09:00:00Z", ["https://example.org/fhir/Patient/pat-c"]),
    _flag("flag-1", "Patient/pat-a", "active", "342191000000101", [(FLAG_CATEGORY, "safety")]),
    _flag("flag-2", "Patient/pat-c", "inactive", "878111000000109",
          [(FLAG_CATEGORY, "safety"), (CT_FLAG_CATEGORY, "safeguarding")]),
    _flag("flag-3", "Patient/pat-a", "active", "919461000000108", [(FLAG_CATEGORY, "safety")]),
    {"resourceType": "Provenance", "id": "prov-1", "target": [_ref("Patient/pat-a"), _ref("Flag/flag-1")],
     "recorded": "2026-11-26T08:00:00+00:00",
     "agent": [{"who": {"display": "Carethread"}}]},
    # GP Connect records (converted to R4)
    {"resourceType": "Condition", "id": "cond-1", "subject": _ref("Patient/pat-a"),
     "code": {"coding": [{"system": SNOMED, "code": "342191000000101"}]}, "onsetDateTime": "2025-01-02"},
    {"resourceType": "Observation", "id": "obs-1", "status": "final", "subject": _ref("Patient/pat-c"),
     "code": {"coding": [{"system": SNOMED, "code": "281399006"}]}, "effectiveDateTime": "2026-02-03"},
    {"resourceType": "Immunization", "id": "imm-1", "status": "completed", "patient": _ref("Patient/pat-c"),
     "vaccineCode": {"text": "synthetic vaccine"}, "occurrenceDateTime": "2026-02-03"},
    {"resourceType": "List", "id": "list-1", "status": "current", "mode": "snapshot",
     "subject": _ref("Patient/pat-a")},
    {"resourceType": "Organization", "id": "org-1", "name": "Example Practice",
     "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}]},
    {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Example"}]},
    {"resourceType": "PractitionerRole", "id": "role-1", "practitioner": _ref("Practitioner/pr-1"),
     "organization": _ref("Organization/org-1")},
    {"resourceType": "Location", "id": "loc-1", "name": "Example Surgery"},
    {"resourceType": "Task", "id": "task-1", "status": "requested", "intent": "proposal", "for": _ref("Patient/pat-a"),
     "focus": _ref("Patient/pat-a"), "authoredOn": "2026-11-26T08:00:00Z",
     "code": {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/task-code", "code": "identity-review"}]}},
    {"resourceType": "Communication", "id": "com-1", "status": "completed", "subject": _ref("Patient/pat-a"),
     "recipient": [_ref("Organization/org-1")], "sent": "2026-11-26T08:00:00Z"},
    {"resourceType": "Subscription", "id": "sub-1", "status": "active", "reason": "synthetic",
     "criteria": "Communication?recipient=Organization/org-1",
     "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook", "payload": "application/fhir+json"}},
]

ONE_PER_TYPE = {"Patient": "pat-a", "RelatedPerson": "rp-1", "Encounter": "enc-1", "Appointment": "appt-1",
                "Flag": "flag-1", "Provenance": "prov-1", "Condition": "cond-1", "Observation": "obs-1",
                "Immunization": "imm-1", "List": "list-1", "Organization": "org-1", "Practitioner": "pr-1",
                "PractitionerRole": "role-1", "Location": "loc-1", "Communication": "com-1",
                "Subscription": "sub-1", "Task": "task-1"}
