"""Every search parameter, modifier and prefix, with matches and non-matches, over seed.py's data."""

from __future__ import annotations

import httpx
import pytest

from .seed import NHS

NHS_A = f"{NHS}|9999999999"
NHS_B = f"{NHS}|9000000009"
NOBODY = f"{NHS}|9000000017"  # valid Modulus 11, not in the data
MRN = "https://fhir.carethread.org/Id/maternity/RX1/MR"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

CASES: list[tuple[str, str, set[str]]] = [
    # Patient: _id
    ("Patient", "_id=pat-a", {"pat-a"}),
    ("Patient", "_id=pat-a,pat-b", {"pat-a", "pat-b"}),
    ("Patient", "_id=nope", set()),
    # identifier: system|value, value, system|, |value, :not, :missing
    ("Patient", f"identifier={NHS_A}", {"pat-a"}),
    ("Patient", "identifier=9000000009", {"pat-b"}),
    ("Patient", f"identifier={NHS}|", {"pat-a", "pat-b"}),
    ("Patient", "identifier=|LEGACY-4", {"pat-d"}),
    ("Patient", "identifier=LEGACY-4", {"pat-d"}),
    ("Patient", "identifier=|MRN003", set()),
    ("Patient", f"identifier={MRN}|LEGACY-4", set()),
    ("Patient", f"identifier={NOBODY}", set()),
    ("Patient", f"identifier={NHS_A},{NHS_B}", {"pat-a", "pat-b"}),
    ("Patient", f"identifier={NHS_A}&identifier={MRN}|MRN001", {"pat-a"}),
    ("Patient", f"identifier={NHS_A}&identifier={MRN}|MRN003", set()),
    ("Patient", f"identifier:not={NHS_A}", {"pat-b", "pat-c", "pat-d"}),
    ("Patient", f"identifier:not={NHS}|", {"pat-c", "pat-d"}),
    ("Patient", "identifier:missing=true", set()),
    # name: prefix on family, given or text; case- and accent-insensitive; :exact, :contains
    ("Patient", "name=smi", {"pat-a"}),
    ("Patient", "name=SM", {"pat-a", "pat-b"}),
    ("Patient", "name=zoe", {"pat-a"}),
    ("Patient", "name=ZOË", {"pat-a"}),
    ("Patient", "name=okubo", {"pat-d"}),
    ("Patient", "name=ann", {"pat-b"}),
    ("Patient", "name=ann%20smy", {"pat-b"}),
    ("Patient", "name=mith", set()),
    ("Patient", "name=smith,brown", {"pat-a", "pat-c"}),
    ("Patient", "name=sm&name=zo", {"pat-a"}),
    ("Patient", "name=sm&name=brown", set()),
    ("Patient", "name:exact=Smith", {"pat-a"}),
    ("Patient", "name:exact=smith", set()),
    ("Patient", "name:exact=Smi", set()),
    ("Patient", "name:contains=ythe", {"pat-b"}),
    ("Patient", "name:contains=KUB", {"pat-d"}),
    ("Patient", "name:missing=false", {"pat-a", "pat-b", "pat-c", "pat-d"}),
    ("Patient", "family=smi", {"pat-a"}),
    ("Patient", "family=ann", set()),
    ("Patient", "family:exact=Ōkubo", {"pat-d"}),
    ("Patient", "given=zo", {"pat-a"}),
    ("Patient", "given=smith", set()),
    # birthdate: eq (default), ne, lt, le, gt, ge; partial dates on both sides
    ("Patient", "birthdate=2009-03-15", {"pat-a"}),
    ("Patient", "birthdate=eq2009-03-15", {"pat-a"}),
    ("Patient", "birthdate=2009-03", {"pat-a"}),
    ("Patient", "birthdate=2009", {"pat-a", "pat-d"}),
    ("Patient", "birthdate=2009-03-16", set()),
    ("Patient", "birthdate=ne2009-03-15", {"pat-b", "pat-c", "pat-d"}),
    ("Patient", "birthdate=lt2010-01-01", {"pat-a", "pat-d"}),
    ("Patient", "birthdate=lt2009-01-01", set()),
    ("Patient", "birthdate=le2010-07-01", {"pat-a", "pat-b", "pat-d"}),
    ("Patient", "birthdate=gt2010-07-01", {"pat-c"}),
    ("Patient", "birthdate=gt2026", set()),
    ("Patient", "birthdate=ge2010-07-01", {"pat-b", "pat-c"}),
    ("Patient", "birthdate=ge2009&birthdate=lt2010", {"pat-a", "pat-d"}),
    ("Patient", "birthdate=2009-03-15,2026-03-01", {"pat-a", "pat-c"}),
    # gender
    ("Patient", "gender=female", {"pat-a", "pat-b"}),
    ("Patient", "gender=male", {"pat-c"}),
    ("Patient", "gender=female,male", {"pat-a", "pat-b", "pat-c"}),
    ("Patient", "gender=other", set()),
    ("Patient", "gender:not=female", {"pat-c", "pat-d"}),
    ("Patient", "gender:missing=true", {"pat-d"}),
    ("Patient", "gender:missing=false", {"pat-a", "pat-b", "pat-c"}),
    # RelatedPerson
    ("RelatedPerson", "_id=rp-1", {"rp-1"}),
    ("RelatedPerson", "patient=Patient/pat-c", {"rp-1"}),
    ("RelatedPerson", "patient=pat-a", {"rp-2"}),
    ("RelatedPerson", "patient=https://elsewhere.example/fhir/Patient/pat-c", {"rp-1"}),
    ("RelatedPerson", "patient=Patient/pat-b", set()),
    ("RelatedPerson", "patient=Practitioner/pat-c", set()),
    ("RelatedPerson", f"patient.identifier={NHS_A}", {"rp-2"}),
    ("RelatedPerson", f"patient.identifier={MRN}|MRN003", {"rp-1"}),
    ("RelatedPerson", f"patient.identifier={NOBODY}", set()),
    ("RelatedPerson", f"identifier={MRN}|MRN-MOTHER", {"rp-1"}),
    ("RelatedPerson", "identifier=MRN001", set()),
    ("RelatedPerson", "relationship=MTH", {"rp-1"}),
    ("RelatedPerson", f"relationship={ROLE}|FTH", {"rp-2"}),
    ("RelatedPerson", "relationship=http://other.example|FTH", set()),
    ("RelatedPerson", "relationship:not=MTH", {"rp-2"}),
    # Encounter
    ("Encounter", "_id=enc-2", {"enc-2"}),
    ("Encounter", "patient=pat-a", {"enc-1"}),
    ("Encounter", "patient=Patient/pat-c", {"enc-2"}),
    ("Encounter", "patient=pat-b", set()),
    ("Encounter", "subject=Patient/pat-c", {"enc-2"}),
    ("Encounter", "subject:Patient=pat-a", {"enc-1"}),
    ("Encounter", "subject:Group=pat-a", set()),
    ("Encounter", f"patient.identifier={NHS_A}", {"enc-1"}),
    ("Encounter", f"patient.identifier={NHS_B}", set()),
    ("Encounter", "status=finished", {"enc-1"}),
    ("Encounter", "status=planned", set()),
    ("Encounter", "date=2026-01-10", {"enc-1"}),
    ("Encounter", "date=2026-03-01T07:30:00Z", {"enc-2"}),  # 08:30+01:00
    ("Encounter", "date=2026-03-01T08:30:00Z", set()),
    ("Encounter", "date=ge2026-03-01", {"enc-2"}),
    ("Encounter", "date=lt2026-03-01T08:00:00%2B00:00", {"enc-1", "enc-2"}),
    ("Encounter", "date=gt2026-03-01T07:30:00Z", set()),
    ("Encounter", "date=lt2026", set()),
    ("Encounter", "identifier=V1", {"enc-1"}),
    ("Encounter", "identifier=V9", set()),
    # Appointment
    ("Appointment", "_id=appt-3", {"appt-3"}),
    ("Appointment", "patient=pat-a", {"appt-1"}),
    ("Appointment", "patient=Patient/pat-c", {"appt-3"}),  # stored as an absolute URL
    ("Appointment", "patient=Practitioner/dr-1", set()),
    ("Appointment", "patient=dr-1", set()),
    ("Appointment", "actor=Practitioner/dr-1", {"appt-1"}),
    ("Appointment", "actor=dr-1", {"appt-1"}),
    ("Appointment", "actor:Practitioner=dr-1", {"appt-1"}),
    ("Appointment", "actor=Patient/pat-b", {"appt-2"}),
    ("Appointment", f"patient.identifier={NHS_B}", {"appt-2"}),
    ("Appointment", f"patient.identifier={NHS}|", {"appt-1", "appt-2"}),
    ("Appointment", "status=noshow", {"appt-1", "appt-3"}),
    ("Appointment", "status=cancelled", set()),
    ("Appointment", "status=noshow&patient=pat-a", {"appt-1"}),
    ("Appointment", "date=2026-03-01", {"appt-1"}),
    ("Appointment", "date=2026-03", {"appt-1"}),
    ("Appointment", "date=ge2026-03-01", {"appt-1", "appt-2"}),
    ("Appointment", "date=lt2026-01-01", {"appt-3"}),
    ("Appointment", "date=le2026-03-01T09:00:00%2B00:00", {"appt-1", "appt-3"}),
    ("Appointment", "date=gt2026-03-01T09:00:00Z", {"appt-2"}),
    ("Appointment", "date=ne2026-03-01", {"appt-2", "appt-3"}),
    ("Appointment", "date=2027", set()),
    ("Appointment", "identifier=APPT-2", {"appt-2"}),
    # Flag
    ("Flag", "_id=flag-2", {"flag-2"}),
    ("Flag", "patient=pat-a", {"flag-1", "flag-3"}),
    ("Flag", "patient=Patient/pat-c", {"flag-2"}),
    ("Flag", "patient=pat-d", set()),
    ("Flag", "subject=Patient/pat-c", {"flag-2"}),
    ("Flag", f"patient.identifier={NHS_A}", {"flag-1", "flag-3"}),
    ("Flag", f"patient.identifier={NOBODY}", set()),
    ("Flag", f"patient.identifier={NHS_A}&status=inactive", set()),
    ("Flag", "status=active", {"flag-1", "flag-3"}),
    ("Flag", "status=inactive", {"flag-2"}),
    ("Flag", "code=http://snomed.info/sct|342191000000101", {"flag-1"}),
    ("Flag", "code=342191000000101,919461000000108", {"flag-1", "flag-3"}),
    ("Flag", "code=http://loinc.org|342191000000101", set()),
    ("Flag", "code:not=342191000000101", {"flag-2", "flag-3"}),
    ("Flag", "category=safety", {"flag-1", "flag-2", "flag-3"}),
    ("Flag", "category=https://fhir.carethread.org/CodeSystem/flag-category|", {"flag-2"}),
    ("Flag", "category=clinical", set()),
    # Provenance
    ("Provenance", "_id=prov-1", {"prov-1"}),
    ("Provenance", "target=Flag/flag-1", {"prov-1"}),
    ("Provenance", "target=pat-a", {"prov-1"}),
    ("Provenance", "target:Patient=pat-a", {"prov-1"}),
    ("Provenance", "target=Patient/pat-b", set()),
    ("Provenance", "target:missing=false", {"prov-1"}),
    # no criteria: everything of the type
    ("Patient", "", {"pat-a", "pat-b", "pat-c", "pat-d"}),
]


def _ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.mark.parametrize(("rtype", "query", "expected"), CASES, ids=[f"{t}?{q}" for t, q, _ in CASES])
async def test_search(client: httpx.AsyncClient, rtype: str, query: str, expected: set[str]) -> None:
    response = await client.get(f"/fhir/{rtype}?{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    ids = _ids(bundle)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert bundle["total"] == len(expected)
    assert all(e["resource"]["resourceType"] == rtype for e in bundle.get("entry", []))


@pytest.mark.parametrize(("rtype", "query", "expected"), CASES[::7])
async def test_post_search_is_the_same_as_get(
    client: httpx.AsyncClient, rtype: str, query: str, expected: set[str]
) -> None:
    response = await client.post(f"/fhir/{rtype}/_search", content=query.encode(),
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    assert set(_ids(response.json())) == expected


async def test_post_search_combines_query_string_and_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/fhir/Flag/_search?status=active",
                                 data={"patient": "pat-a", "code": "919461000000108"})
    assert set(_ids(response.json())) == {"flag-3"}


async def test_escaped_comma_is_part_of_the_value(client: httpx.AsyncClient) -> None:
    escaped = await client.get("/fhir/Patient", params={"name": "smith\\,brown"})
    assert escaped.status_code == 200 and escaped.json()["total"] == 0
    listed = await client.get("/fhir/Patient", params={"name": "smith,brown"})
    assert listed.json()["total"] == 2
