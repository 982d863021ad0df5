"""One synthetic family through all three sources into one store, in one shape: maternity HL7 v2 over MLLP,
a health visiting export over HTTP, a GP Connect bundle over HTTP.

    mother  17  NHS 9990001006   maternity (PID-21 on the baby), health visiting, GP
    father  16  (no NHS number)  NK1 on the baby, a health visiting household member
    baby        NHS 9990001014   maternity, health visiting, GP: a no-show in each
    sibling     NHS 9990001022   health visiting, GP
    grandmother                  NK1 on the baby, a health visiting household member
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapter.inbound.mllp import MLLPClient
from tests.e2e.conftest import Service, start_service, stop_service
from tests.hl7builder import message, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MOTHER, BABY, SIBLING = "9990001006", "9990001014", "9990001022"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"


@pytest.fixture(scope="module")
def family_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("family"))
    yield svc
    assert stop_service(svc) == 0


def maternity_messages() -> list[bytes]:
    baby_pid = seg("PID", {1: "1", 3: f"{BABY}^^^NHS^NH~MAT900^^^RX1^MR", 5: "SYNTHETIC^^^^^^L", 7: "20260220",
                           8: "M", 21: f"{MOTHER}^^^NHS^NH", 24: "N", 32: "NSTS01"})
    mother_pid = seg("PID", {1: "1", 3: f"{MOTHER}^^^NHS^NH~MAT901^^^RX1^MR", 5: "SYNTHETIC^Amber", 7: "20080912",
                             8: "F", 32: "NSTS01"})
    father = seg("NK1", {1: "1", 2: "PLACEHOLDER^Jordan", 3: "FTH^Father^HL70063", 16: "20090703"})
    grandmother = seg("NK1", {1: "2", 2: "SYNTHETIC^Pat", 3: "GMO^Grandmother^HL70063", 16: "19790330"})
    pv1 = seg("PV1", {1: "1", 2: "I", 3: "RX1WARD^^^RX1", 10: "501", 19: "V900", 44: "20260220080000"})
    noshow = seg("SCH", {2: "FAM-APPT-1^EPR", 9: "30", 10: "min", 11: "^^^20260410103000", 25: "Noshow"})
    return [
        message("ADT^A04", mother_pid, pv1, ts="20260220090000"),
        message("ADT^A01", baby_pid, father, grandmother, pv1, ts="20260220100000"),
        message("SIU^S26^SIU_S12", noshow, baby_pid, ts="20260410120000"),
    ]


def health_visiting_export() -> dict[str, tuple[str, bytes, str]]:
    people = ("local_patient_id,nhs_number,nhs_number_status,person_birth_date,person_stated_gender_code,postcode,"
              "gp_practice_code,person_family_name,person_given_name\n"
              f"FAM01,{MOTHER},01,2008-09-12,2,ZZ99 1AA,Y12345,SYNTHETIC,Amber\n"
              f"FAM02,{BABY},01,2026-02-20,1,ZZ99 1AA,Y12345,SYNTHETIC,Robin\n"
              f"FAM03,{SIBLING},01,2024-10-15,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n")
    household = ("household_member_id,local_patient_id,relationship,member_family_name,member_given_name,"
                 "member_birth_date,member_gender_code,member_nhs_number,member_local_patient_id\n"
                 "FAMH1,FAM02,FATHER,PLACEHOLDER,Jordan,2009-07-03,1,,\n"
                 "FAMH2,FAM02,GRANDMOTHER,SYNTHETIC,Pat,1979-03-30,2,,\n"
                 f"FAMH3,FAM02,MOTHER,SYNTHETIC,Amber,2008-09-12,2,{MOTHER},FAM01\n"
                 f"FAMH4,FAM02,SIBLING,SYNTHETIC,Sky,2024-10-15,2,{SIBLING},FAM03\n")
    contacts = ("care_contact_id,local_patient_id,care_contact_date,care_contact_time,contact_duration_minutes,"
                "contact_type,attended_or_did_not_attend,care_professional_name,care_professional_team,"
                "contact_location_type\n"
                "FAMC1,FAM02,2026-03-04,10:30,60,NEW_BIRTH_VISIT,5,HV Practitioner ONE,Team A,HOME\n"
                "FAMC2,FAM02,2026-04-16,11:00,30,6_8_WEEK_REVIEW,3,HV Practitioner TWO,Team A,CLINIC\n")
    return {"people": ("people.csv", people.encode(), "text/csv"),
            "household": ("household_members.csv", household.encode(), "text/csv"),
            "contacts": ("care_contacts.csv", contacts.encode(), "text/csv")}


def gp_bundle() -> dict:
    def patient(pid: str, nhs: str, given: str, born: str, gender: str) -> dict:
        return {"resource": {"resourceType": "Patient", "id": pid, "active": True,
                             "identifier": [{"system": NHS, "value": nhs}],
                             "name": [{"use": "official", "family": "SYNTHETIC", "given": [given]}],
                             "gender": gender, "birthDate": born,
                             "managingOrganization": {"reference": "Organization/gp-org"}}}
    return {"resourceType": "Bundle", "type": "collection", "meta": {"lastUpdated": "2026-05-01T09:00:00Z"}, "entry": [
        patient("gp-baby", BABY, "Robin", "2026-02-20", "male"),
        {"resource": {"resourceType": "Organization", "id": "gp-org", "name": "Example Surgery",
                      "identifier": [{"system": ODS, "value": "Y12345"}]}},
        {"resource": {"resourceType": "Observation", "id": "gp-dna-1", "status": "final",
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "281399006",
                                           "display": "Did not attend"}]},
                      "subject": {"reference": "Patient/gp-baby"}, "effectiveDateTime": "2026-04-20T09:10:00+01:00"}},
    ]}


def test_one_family_from_three_sources_lands_in_one_store_in_one_shape(family_service: Service) -> None:
    svc = family_service
    with MLLPClient("127.0.0.1", svc.mllp_port) as client:
        for msg in maternity_messages():
            assert b"MSA|AA|" in client.send(msg)
    hv = httpx.post(f"{svc.http}/ingest/health-visiting", files=list(health_visiting_export().items()), timeout=30)
    assert hv.status_code == 200 and not [i for i in hv.json()["issue"] if i["severity"] == "error"], hv.text
    gp = httpx.post(f"{svc.http}/ingest/gp", json=gp_bundle(), timeout=30)
    assert gp.status_code == 200 and not [i for i in gp.json()["issue"] if i["severity"] == "error"], gp.text

    fhir = f"{svc.http}/fhir"
    noshows = httpx.get(f"{fhir}/Appointment", params={"patient.identifier": f"{NHS}|{BABY}", "status": "noshow"}).json()
    sources = {e["resource"]["meta"]["source"].split("#")[0].rsplit("/", 1)[-1] for e in noshows["entry"]}
    assert sources == {"maternity", "health-visiting", "gp"}, noshows
    for entry in noshows["entry"]:
        [outcome] = entry["resource"]["extension"]
        assert outcome["valueCodeableConcept"]["coding"][0]["code"] == "was-not-brought"

    # one Patient record per source for the baby, each saying where it came from
    babies = httpx.get(f"{fhir}/Patient", params={"identifier": f"{NHS}|{BABY}", "_tag:not": MASTER}).json()["entry"]
    assert sorted(b["resource"]["meta"]["source"].split("#")[0].rsplit("/", 1)[-1] for b in babies) == \
        ["gp", "health-visiting", "maternity"]
    # the father and grandmother from maternity and health visiting, as RelatedPerson in one shape
    related = []
    for baby in babies:
        bundle = httpx.get(f"{fhir}/RelatedPerson", params={"patient": f"Patient/{baby['resource']['id']}"}).json()
        related += [e["resource"] for e in bundle.get("entry", [])]
    roles = {(r["relationship"][0]["coding"][0]["code"], r["meta"]["source"].split("#")[0].rsplit("/", 1)[-1])
             for r in related}
    assert {("FTH", "maternity"), ("FTH", "health-visiting"), ("GRMTH", "maternity"), ("GRMTH", "health-visiting")} <= roles
    assert all(r["meta"]["profile"] for r in related)
    # every resource names where it came from
    for rtype in ("Patient", "RelatedPerson", "Encounter", "Appointment", "Flag", "Condition", "Observation"):
        for e in httpx.get(f"{fhir}/{rtype}", params={"_count": "200"}).json().get("entry", []):
            assert e["resource"]["meta"]["source"].startswith("https://fhir.carethread.org/source/"), (rtype, e)
    mothers = httpx.get(f"{fhir}/Patient", params={"identifier": f"{NHS}|{MOTHER}", "_tag:not": MASTER}).json()
    assert mothers["total"] == 2  # maternity and health visiting (not in the GP bundle)
    # and each human is one identity: one master Patient linking every source record (issue 5)
    for nhs, sources in ((BABY, 3), (MOTHER, 2), (SIBLING, 1)):
        [master] = httpx.get(f"{fhir}/Patient", params={"identifier": f"{NHS}|{nhs}", "_tag": MASTER}).json()["entry"]
        seealso = [link["other"]["reference"] for link in master["resource"]["link"] if link["type"] == "seealso"]
        assert len(seealso) == sources, nhs
        for ref in seealso:
            back = httpx.get(f"{fhir}/Patient", params={"link": ref, "_tag": MASTER}).json()
            assert [e["resource"]["id"] for e in back["entry"]] == [master["resource"]["id"]]
    noshows_of_identity = httpx.get(f"{fhir}/Appointment", params={"identity": f"Patient/{babies[0]['resource']['id']}",
                                                                    "status": "noshow"}).json()
    assert noshows_of_identity["total"] == 3  # any one record of the baby finds all three sources' no-shows
    assert json.dumps(hv.json()).count(MOTHER) == 0  # the report names rows, never values


def test_the_same_inputs_again_change_nothing(family_service: Service) -> None:
    svc = family_service
    before = httpx.get(f"{svc.http}/fhir/Appointment", params={"_count": "200"}).json()
    versions = {e["resource"]["id"]: e["resource"]["meta"]["versionId"] for e in before["entry"]}
    with MLLPClient("127.0.0.1", svc.mllp_port) as client:
        for msg in maternity_messages():  # new control ids, same data
            assert b"MSA|AA|" in client.send(msg)
    httpx.post(f"{svc.http}/ingest/health-visiting", files=list(health_visiting_export().items()), timeout=30)
    httpx.post(f"{svc.http}/ingest/gp", json=gp_bundle(), timeout=30)
    after = httpx.get(f"{svc.http}/fhir/Appointment", params={"_count": "200"}).json()
    assert {e["resource"]["id"]: e["resource"]["meta"]["versionId"] for e in after["entry"]} == versions
