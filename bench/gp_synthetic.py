"""Synthetic GP Connect Access Record Structured responses (FHIR STU3 ``collection`` Bundles) for benchmarks
and tests.  No real data: invented names, NHS numbers from the 999 test range (Modulus 11 valid), ODS codes
Y00000-Y99999, free text that says it is synthetic.

    make_bundle(i, seed=0) -> bytes        the same i and seed always give the same bytes

Each bundle: Patient (a child or an adult), the practice Organization, a Practitioner and PractitionerRole,
a consultation List, 1-3 Encounters, and 4-8 Conditions / Observations, about 1 in 6 with a safeguarding
SNOMED CT code (some ended, some sensitive) and about 1 in 8 a did-not-attend code.
"""

from __future__ import annotations

import json
import random
import uuid

__all__ = ["make_bundle", "nhs_number"]

_NS = uuid.UUID("0b3c5e7a-9d1f-4e2a-8c6b-1f0e2d3c4b5a")  # synthetic ids only
_FAMILY = ["SYNTHETIC", "EXAMPLE", "TESTER", "SAMPLE", "DUMMY", "FICTION", "MOCK", "PLACEHOLDER"]
_GIVEN = ["Amber", "Bea", "Cara", "Dee", "Alfie", "Ben", "Cal", "Dan"]
_SNOMED = "http://snomed.info/sct"
_SAFEGUARDING = [("342191000000101", "Subject to child protection plan"), ("764841000000100", "Looked after child"),
                 ("836881000000105", "Child is cause for safeguarding concern"),
                 ("919461000000108", "At risk of sexual exploitation"),
                 ("1064961000000107", "Child in family is safeguarding concern")]
_DNA = [("281399006", "Did not attend"), ("924331000000103", "Did not attend general practitioner appointment"),
        ("270426007", "Did not attend - no reason")]
_PROBLEMS = [("195967001", "Asthma"), ("44054006", "Type 2 diabetes mellitus"), ("38341003", "Hypertensive disorder"),
             ("35489007", "Depressive disorder"), ("24079001", "Atopic dermatitis")]
_OBSERVATIONS = [("162864005", "Body mass index 30+ - obesity"), ("77176002", "Smoker"),
                 ("160573003", "Alcohol intake")]
_GPC = "https://fhir.nhs.uk/STU3/StructureDefinition/"


def nhs_number(seed: int) -> str:
    """A Modulus 11 valid number in the 999 test range (never issued)."""
    n = seed
    while True:
        body = f"999{n % 1_000_000:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1)))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return body + str(check)
        n += 1


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NS, "|".join(str(p) for p in parts)))


def _coding(code: str, display: str) -> dict[str, object]:
    return {"coding": [{"system": _SNOMED, "code": code, "display": display}], "text": display}


def make_bundle(i: int, seed: int = 0) -> bytes:
    """One synthetic Access Record Structured response (JSON bytes), deterministic per (i, seed)."""
    rng = random.Random(f"{seed}:{i}")
    child = rng.random() < 0.5
    born_year = rng.randint(2010, 2024) if child else rng.randint(1950, 2005)
    birth = f"{born_year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    ods = f"Y{rng.randrange(100000):05d}"
    pid, oid, prid, rid = _id(i, "patient"), _id(ods, "org"), _id(ods, "gp", i % 7), _id(ods, "role", i % 7)
    family, given = _FAMILY[i % len(_FAMILY)], _GIVEN[(i // len(_FAMILY)) % len(_GIVEN)]
    patient = {
        "resourceType": "Patient", "id": pid,
        "meta": {"versionId": "1", "profile": [_GPC + "CareConnect-GPC-Patient-1"]},
        "extension": [{"url": _GPC + "Extension-CareConnect-GPC-RegistrationDetails-1",
                       "extension": [{"url": "registrationPeriod", "valuePeriod": {"start": f"{born_year}-06-01"}}]}],
        "identifier": [{
            "extension": [{"url": _GPC + "Extension-CareConnect-GPC-NHSNumberVerificationStatus-1",
                           "valueCodeableConcept": {"coding": [{
                               "system": "https://fhir.nhs.uk/STU3/CodeSystem/CareConnect-NHSNumberVerificationStatus-1",
                               "code": "01", "display": "Number present and verified"}]}}],
            "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(1000 + i * 13)}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": rng.choice(["female", "male"]),
        "birthDate": birth,
        "address": [{"use": "home", "line": [f"{i % 200 + 1} Example Road"], "city": "Exampletown",
                     "postalCode": "ZZ99 3AA"}],
        "generalPractitioner": [{"reference": f"Practitioner/{prid}"}],
        "managingOrganization": {"reference": f"Organization/{oid}"},
    }
    organization = {
        "resourceType": "Organization", "id": oid, "meta": {"profile": [_GPC + "CareConnect-GPC-Organization-1"]},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}],
        "name": "Synthetic Surgery", "telecom": [{"system": "phone", "value": "01632 960000", "use": "work"}],
    }
    practitioner = {
        "resourceType": "Practitioner", "id": prid, "meta": {"profile": [_GPC + "CareConnect-GPC-Practitioner-1"]},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": f"G{rng.randrange(10**7):07d}"}],
        "name": [{"use": "usual", "family": "DOCTOR", "given": ["Example"], "prefix": ["Dr"]}],
    }
    role = {
        "resourceType": "PractitionerRole", "id": rid,
        "meta": {"profile": [_GPC + "CareConnect-GPC-PractitionerRole-1"]},
        "practitioner": {"reference": f"Practitioner/{prid}"}, "organization": {"reference": f"Organization/{oid}"},
        "code": [{"coding": [{"system": "https://fhir.hl7.org.uk/STU3/CodeSystem/CareConnect-SDSJobRoleName-1",
                              "code": "R0260", "display": "General Medical Practitioner"}]}],
    }
    records: list[dict[str, object]] = []
    encounters = []
    for e in range(rng.randint(1, 3)):
        day = f"{rng.randint(max(born_year, 2015), 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        enc = {
            "resourceType": "Encounter", "id": _id(i, "enc", e),
            "meta": {"profile": [_GPC + "CareConnect-GPC-Encounter-1"]},
            "identifier": [{"system": "https://provider.example.org/consultation", "value": _id(i, "enc-id", e)}],
            "status": "finished", "type": [{"text": "Face to face consultation (synthetic)"}],
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [{"individual": {"reference": f"Practitioner/{prid}"}}],
            "period": {"start": f"{day}T09:{10 + e:02d}:00+00:00", "end": f"{day}T09:{20 + e:02d}:00+00:00"},
            "serviceProvider": {"reference": f"Organization/{oid}"},
        }
        encounters.append(enc)
    for n in range(rng.randint(4, 8)):
        roll = rng.random()
        year = rng.randint(max(born_year, 2012), 2025)
        when = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        enc_ref = {"reference": f"Encounter/{rng.choice(encounters)['id']}"}
        if roll < 0.16:
            code, display = rng.choice(_SAFEGUARDING)
            ended = rng.random() < 0.3
            cond: dict[str, object] = {
                "resourceType": "Condition", "id": _id(i, "cond", n),
                "meta": {"profile": [_GPC + "CareConnect-GPC-ProblemHeader-Condition-1"]},
                "extension": [{"url": _GPC + "Extension-CareConnect-GPC-ProblemSignificance-1", "valueCode": "major"}],
                "identifier": [{"system": "https://provider.example.org/problem", "value": _id(i, "cond-id", n)}],
                "clinicalStatus": "inactive" if ended else "active", "verificationStatus": "confirmed",
                "category": [{"coding": [{"system": "http://hl7.org/fhir/condition-category",
                                          "code": "problem-list-item"}]}],
                "code": _coding(code, display), "subject": {"reference": f"Patient/{pid}"}, "context": enc_ref,
                "onsetDateTime": when, "assertedDate": f"{when}T10:00:00+00:00",
                "asserter": {"reference": f"Practitioner/{prid}"},
            }
            if ended:
                cond["abatementDateTime"] = f"{year + 1}-{rng.randint(1, 12):02d}-01"
            records.append(cond)
        elif roll < 0.28:
            code, display = rng.choice(_DNA)
            records.append({
                "resourceType": "Observation", "id": _id(i, "obs", n),
                "meta": {"profile": [_GPC + "CareConnect-GPC-Observation-1"]},
                "identifier": [{"system": "https://provider.example.org/observation", "value": _id(i, "obs-id", n)}],
                "status": "final", "code": _coding(code, display), "subject": {"reference": f"Patient/{pid}"},
                "context": enc_ref, "effectiveDateTime": f"{when}T{rng.randint(8, 17):02d}:30:00+00:00",
                "issued": f"{when}T18:00:00.000+00:00", "performer": [{"reference": f"Practitioner/{prid}"}],
                "comment": "Synthetic note: appointment missed.",
            })
        elif roll < 0.6:
            code, display = rng.choice(_PROBLEMS)
            records.append({
                "resourceType": "Condition", "id": _id(i, "cond", n),
                "meta": {"profile": [_GPC + "CareConnect-GPC-ProblemHeader-Condition-1"]},
                "identifier": [{"system": "https://provider.example.org/problem", "value": _id(i, "cond-id", n)}],
                "clinicalStatus": rng.choice(["active", "inactive", "resolved"]), "verificationStatus": "confirmed",
                "category": [{"coding": [{"system": "http://hl7.org/fhir/condition-category",
                                          "code": "problem-list-item"}]}],
                "code": _coding(code, display), "subject": {"reference": f"Patient/{pid}"}, "context": enc_ref,
                "onsetDateTime": when, "assertedDate": f"{when}T10:00:00+00:00",
            })
        else:
            code, display = rng.choice(_OBSERVATIONS)
            records.append({
                "resourceType": "Observation", "id": _id(i, "obs", n),
                "meta": {"profile": [_GPC + "CareConnect-GPC-Observation-1"]},
                "identifier": [{"system": "https://provider.example.org/observation", "value": _id(i, "obs-id", n)}],
                "status": "final",
                "category": [{"coding": [{"system": "http://hl7.org/fhir/observation-category",
                                          "code": "social-history"}]}],
                "code": _coding(code, display), "subject": {"reference": f"Patient/{pid}"}, "context": enc_ref,
                "effectiveDateTime": when, "performer": [{"reference": f"Practitioner/{prid}"}],
            })
    consultations = {
        "resourceType": "List", "id": _id(i, "list"), "meta": {"profile": [_GPC + "CareConnect-GPC-List-1"]},
        "status": "current", "mode": "snapshot", "title": "Consultations",
        "code": _coding("1149501000000101", "Consultation encounter type"),
        "subject": {"reference": f"Patient/{pid}"}, "date": "2025-12-01T10:00:00+00:00",
        "orderedBy": {"coding": [{"system": "http://hl7.org/fhir/list-order", "code": "event-date"}]},
        "entry": [{"item": {"reference": f"Encounter/{e['id']}"}} for e in encounters],
    }
    resources = [patient, organization, practitioner, role, consultations, *encounters, *records]
    bundle = {
        "resourceType": "Bundle", "id": _id(seed, i, "bundle"),
        "meta": {"lastUpdated": f"2025-12-{1 + i % 28:02d}T10:00:00+00:00",
                 "profile": [_GPC + "GPConnect-StructuredRecord-Bundle-1"]},
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


if __name__ == "__main__":  # print one, for a look
    print(json.dumps(json.loads(make_bundle(0)), indent=2))
