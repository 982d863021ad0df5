"""``GET /fhir/Patient/{id}/$safeguarding-summary`` against a real `carethread serve`, one synthetic family loaded
through its real entry points (maternity HL7 v2 over MLLP, a health visiting export and GP Connect bundles over
HTTP), plus a derived flag with its Provenance and notifications written through the FHIR API (as the rules
engine will write them).

    mother  17  NHS 9990001006   maternity (an active CSE-risk alert), health visiting (a child protection
                                 plan that ended), GP (an ended plan as a Condition: flag-detail)
    father  16  (no NHS number)  NK1 on the baby, a health visiting household member
    baby        NHS 9990001014   was not brought: maternity 1, health visiting 2 (one over 12 months ago is
                                 not the baby's: the mother's, aged 15), GP 1
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from adapter.fhir import validate_r4
from adapter.inbound.mllp import MLLPClient
from tests.e2e.conftest import Service, start_service, stop_service
from tests.hl7builder import message, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"
RULE_CS = "https://fhir.carethread.org/CodeSystem/safeguarding-rule"
AGE_EXT = "https://fhir.carethread.org/StructureDefinition/Extension-Carethread-AgeAtSummary"
MOTHER, BABY = "9990001006", "9990001014"
MOTHER_DOB, FATHER_DOB, BABY_DOB = "2009-03-15", "2010-05-01", "2026-06-01"
OP = "$safeguarding-summary"


def age(born: str) -> int:
    b, t = date.fromisoformat(born), datetime.now(UTC).date()
    return t.year - b.year - ((t.month, t.day) < (b.month, b.day))


def maternity_messages() -> list[bytes]:
    mother_pid = seg("PID", {1: "1", 3: f"{MOTHER}^^^NHS^NH~SUM901^^^RX1^MR", 5: "SYNTHETIC^Amber",
                             7: MOTHER_DOB.replace("-", ""), 8: "F", 32: "NSTS01"})
    baby_pid = seg("PID", {1: "1", 3: f"{BABY}^^^NHS^NH~SUM900^^^RX1^MR", 5: "SYNTHETIC^^^^^^L",
                           7: BABY_DOB.replace("-", ""), 8: "M", 21: f"{MOTHER}^^^NHS^NH", 24: "N", 32: "NSTS01"})
    father = seg("NK1", {1: "1", 2: "PLACEHOLDER^Jordan", 3: "FTH^Father^HL70063", 16: FATHER_DOB.replace("-", "")})
    grandmother = seg("NK1", {1: "2", 2: "SYNTHETIC^Pat", 3: "GMO^Grandmother^HL70063", 16: "19790330"})
    mother_pv1 = seg("PV1", {1: "1", 2: "I", 3: "RX1WARD^^^RX1", 10: "501", 19: "V902", 44: "20260601070000"})
    pv1 = seg("PV1", {1: "1", 2: "I", 3: "RX1WARD^^^RX1", 10: "501", 19: "V901", 44: "20260601080000"})
    alert = seg("OBX", {1: "1", 2: "CE", 3: "ALERT^Alert^L", 5: "919461000000108^CSE risk^SCT", 11: "F", 14: "20250110"})
    noshow = seg("SCH", {2: "SUM-APPT-1^EPR", 9: "30", 10: "min", 11: "^^^20260810103000", 25: "Noshow"})
    return [
        message("ADT^A04", mother_pid, mother_pv1, alert, ts="20260601090000"),
        message("ADT^A01", baby_pid, father, grandmother, pv1, ts="20260601100000"),
        message("SIU^S26^SIU_S12", noshow, baby_pid, ts="20260810120000"),
    ]


def health_visiting_export() -> list[tuple[str, tuple[str, bytes, str]]]:
    people = ("local_patient_id,nhs_number,nhs_number_status,person_birth_date,person_stated_gender_code,postcode,"
              "gp_practice_code,person_family_name,person_given_name\n"
              f"SUM01,{MOTHER},01,{MOTHER_DOB},2,ZZ99 1AA,Y12345,SYNTHETIC,Amber\n"
              f"SUM02,{BABY},01,{BABY_DOB},1,ZZ99 1AA,Y12345,SYNTHETIC,Robin\n")
    household = ("household_member_id,local_patient_id,relationship,member_family_name,member_given_name,"
                 "member_birth_date,member_gender_code,member_nhs_number,member_local_patient_id\n"
                 f"SUMH1,SUM02,FATHER,PLACEHOLDER,Jordan,{FATHER_DOB},1,,\n"
                 "SUMH2,SUM02,GRANDMOTHER,SYNTHETIC,Pat,1979-03-30,2,,\n"
                 f"SUMH3,SUM02,MOTHER,SYNTHETIC,Amber,{MOTHER_DOB},2,{MOTHER},SUM01\n")
    contacts = ("care_contact_id,local_patient_id,care_contact_date,care_contact_time,contact_duration_minutes,"
                "contact_type,attended_or_did_not_attend,care_professional_name,care_professional_team,"
                "contact_location_type\n"
                "SUMC1,SUM02,2026-06-10,10:30,60,NEW_BIRTH_VISIT,5,HV Practitioner ONE,Team A,HOME\n"
                "SUMC2,SUM02,2026-07-20,11:00,30,6_8_WEEK_REVIEW,3,HV Practitioner TWO,Team A,CLINIC\n"
                "SUMC3,SUM02,2026-09-20,11:00,30,CLINIC,3,HV Practitioner TWO,Team A,CLINIC\n"
                "SUMC4,SUM01,2024-10-02,11:00,30,CLINIC,3,HV Practitioner TWO,Team A,CLINIC\n")
    concerns = ("concern_id,local_patient_id,concern_snomed_code,concern_start_date,concern_end_date,recorded_by\n"
                "SUMS1,SUM01,342191000000101,2022-01-10,2023-03-31,Named Nurse EXAMPLE\n")
    return [("people", ("people.csv", people.encode(), "text/csv")),
            ("household", ("household_members.csv", household.encode(), "text/csv")),
            ("contacts", ("care_contacts.csv", contacts.encode(), "text/csv")),
            ("concerns", ("safeguarding_concerns.csv", concerns.encode(), "text/csv"))]


def gp_bundle(pid: str, nhs: str, given: str, born: str, gender: str, *extra: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "meta": {"lastUpdated": "2026-11-01T09:00:00Z"}, "entry": [
        {"resource": {"resourceType": "Patient", "id": pid, "active": True, "identifier": [{"system": NHS, "value": nhs}],
                      "name": [{"use": "official", "family": "SYNTHETIC", "given": [given]}], "gender": gender,
                      "birthDate": born, "managingOrganization": {"reference": "Organization/gp-org"}}},
        {"resource": {"resourceType": "Organization", "id": "gp-org", "name": "Example Surgery",
                      "identifier": [{"system": ODS, "value": "Y12345"}]}},
        *({"resource": r} for r in extra)]}


BABY_GP = gp_bundle("gp-baby", BABY, "Robin", BABY_DOB, "male", {
    "resourceType": "Observation", "id": "gp-dna-1", "status": "final",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "281399006", "display": "Did not attend"}]},
    "subject": {"reference": "Patient/gp-baby"}, "effectiveDateTime": "2026-10-20T09:10:00+01:00"})
MOTHER_GP = gp_bundle("gp-mother", MOTHER, "Amber", MOTHER_DOB, "female", {
    "resourceType": "Condition", "id": "gp-cpp", "clinicalStatus": "inactive", "verificationStatus": "confirmed",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101",
                         "display": "Subject to child protection plan"}]},
    "subject": {"reference": "Patient/gp-mother"}, "onsetDateTime": "2021-11-01", "abatementDateTime": "2023-04-02"})


def get(svc: Service, path: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{svc.http}/fhir/{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype]


def put(svc: Service, resource: dict[str, Any]) -> None:
    response = httpx.put(f"{svc.http}/fhir/{resource['resourceType']}/{resource['id']}", json=resource, timeout=10)
    assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, str]]]:
    svc = start_service(tmp_path_factory.mktemp("summary"))
    try:
        with MLLPClient("127.0.0.1", svc.mllp_port) as client:
            for msg in maternity_messages():
                assert b"MSA|AA|" in client.send(msg)
        hv = httpx.post(f"{svc.http}/ingest/health-visiting", files=health_visiting_export(), timeout=30)
        assert hv.status_code == 200 and not [i for i in hv.json()["issue"] if i["severity"] == "error"], hv.text
        for bundle in (BABY_GP, MOTHER_GP):
            gp = httpx.post(f"{svc.http}/ingest/gp", json=bundle, timeout=30)
            assert gp.status_code == 200 and not [i for i in gp.json()["issue"] if i["severity"] == "error"], gp.text
        ids: dict[str, str] = {}
        for who, nhs in (("mother", MOTHER), ("baby", BABY)):
            [master] = resources(get(svc, "Patient", identifier=f"{NHS}|{nhs}", _tag=MASTER), "Patient")
            ids[who] = master["id"]
            sources = resources(get(svc, "Patient", identifier=f"{NHS}|{nhs}", **{"_tag:not": MASTER}), "Patient")
            ids[f"{who}-source"] = sorted(s["id"] for s in sources)[0]
            ids[f"{who}-sources"] = ",".join(sorted(s["id"] for s in sources))
        # what the rules engine writes: a derived flag on the master, its Provenance naming the rule and the
        # evidence, and notifications (one pending, one delivered)
        mother_flags = resources(get(svc, "Flag", identity=f"Patient/{ids['mother']}", status="active"), "Flag")
        encounter = resources(get(svc, "Encounter", identity=f"Patient/{ids['mother']}"), "Encounter")[0]
        put(svc, {"resourceType": "Flag", "id": "sum-derived-flag", "status": "active",
                  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category",
                                            "code": "safety"}]},
                               {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/flag-category",
                                            "code": "safeguarding"}]}],
                  "code": {"coding": [{"system": "http://snomed.info/sct", "code": "878111000000109",
                                       "display": "Unborn child is cause for safeguarding concern"}]},
                  "subject": {"reference": f"Patient/{ids['mother']}"}, "period": {"start": "2026-03-01"}})
        put(svc, {"resourceType": "Provenance", "id": "sum-derived-prov",
                  "target": [{"reference": "Flag/sum-derived-flag"}], "recorded": "2026-03-01T10:00:00+00:00",
                  "policy": ["https://fhir.carethread.org/safeguarding-rule/pregnancy-under-18-or-history"],
                  "reason": [{"coding": [{"system": RULE_CS, "code": "pregnancy-under-18-or-history"}]}],
                  "agent": [{"who": {"display": "Carethread safeguarding rules"}}],
                  "entity": [{"role": "source", "what": {"reference": f"Flag/{mother_flags[0]['id']}"}},
                             {"role": "source", "what": {"reference": f"Encounter/{encounter['id']}"}}]})
        for cid, status in (("sum-pending", "in-progress"), ("sum-done", "completed")):
            put(svc, {"resourceType": "Communication", "id": cid, "status": status, "priority": "urgent",
                      "subject": {"reference": f"Patient/{ids['mother']}"},
                      "recipient": [{"reference": "Organization/ods-ZSG001"}], "sent": "2026-11-20T08:00:00+00:00",
                      "reasonCode": [{"coding": [{"system": RULE_CS, "code": "adult-setting-presentation"}]}],
                      "payload": [{"contentReference": {"reference": "Flag/sum-derived-flag"}}]})
        ids["derived-evidence"] = f"Encounter/{encounter['id']}"
        yield svc, ids
    finally:
        assert stop_service(svc) == 0


def summary(svc: Service, pid: str) -> dict[str, Any]:
    response = httpx.get(f"{svc.http}/fhir/Patient/{pid}/{OP}", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    validate_r4(bundle)
    return bundle


def sections(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    return {s["title"]: s for s in composition["section"]}


def refs(section: dict[str, Any]) -> list[str]:
    return [e["reference"] for e in section.get("entry", []) if "reference" in e]


def included(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"][1:]}


def test_the_mothers_summary_has_her_flags_with_their_why_her_partner_and_notifications(family) -> None:
    svc, ids = family
    bundle = summary(svc, ids["mother"])
    assert bundle["type"] == "collection"
    composition = bundle["entry"][0]["resource"]
    assert composition["subject"] == {"reference": f"Patient/{ids['mother']}"}
    assert composition["type"]["coding"][0] == {"system": "http://loinc.org", "code": "60591-5",
                                                "display": "Patient summary Document"}
    by_title = sections(bundle)
    assert list(by_title) == [
        "Safeguarding flags (active)", "Safeguarding flag history",
        "Was not brought (last 12 months) - maternity", "Was not brought (last 12 months) - health visiting",
        "Was not brought (last 12 months) - GP", "Related persons", "Organisations involved",
        "Pending notifications"]
    held = included(bundle)
    for section in by_title.values():  # every literal reference is to a resource in the Bundle
        for ref in refs(section) + [r for sub in section.get("section", []) for r in refs(sub)]:
            assert ref in held, ref
    # active: the derived flag and maternity's alert (and whatever the rules engine derived), newest first;
    # history: health visiting's and GP's ended plans
    active = [held[r] for r in refs(by_title["Safeguarding flags (active)"])]
    assert {"Flag/sum-derived-flag"} <= set(refs(by_title["Safeguarding flags (active)"]))
    assert {"878111000000109", "919461000000108"} <= {f["code"]["coding"][0]["code"] for f in active}
    assert all(f["status"] == "active" for f in active)
    starts = [f["period"]["start"] for f in active]
    assert starts == sorted(starts, reverse=True)
    history = [held[r] for r in refs(by_title["Safeguarding flag history"])]
    assert {f["code"]["coding"][0]["code"] for f in history} == {"342191000000101"} and len(history) == 2
    assert {f["meta"]["source"].split("#")[0].rsplit("/", 1)[-1] for f in history} == {"health-visiting", "gp"}
    assert all(f["status"] == "inactive" for f in history)
    # each flag's why: the derived one names its rule and carries its evidence; a source flag its message
    why = {s["title"]: s for s in by_title["Safeguarding flags (active)"]["section"]}
    derived = why["Why: Unborn child is cause for safeguarding concern"]
    assert "Provenance/sum-derived-prov" in refs(derived) and ids["derived-evidence"] in refs(derived)
    assert "rule pregnancy-under-18-or-history" in derived["text"]["div"]
    maternity = why["Why: At risk of sexual exploitation"]
    assert any(held[r]["resourceType"] == "Provenance" for r in refs(maternity))
    assert "source maternity" in by_title["Safeguarding flags (active)"]["text"]["div"]
    history_why = [r for s in by_title["Safeguarding flag history"]["section"] for r in refs(s)]
    assert any(r.startswith("Condition/") for r in history_why)  # the GP flag's flag-detail
    # the father of her baby, 16, found through the baby's records
    related = by_title["Related persons"]
    fathers = [e for e in related["entry"] if held[e["reference"]]["relationship"][0]["coding"][0]["code"] == "FTH"]
    assert fathers and related["entry"][:len(fathers)] == fathers  # fathers first
    assert {e["extension"][0]["valueAge"]["value"] for e in fathers} == {age(FATHER_DOB)} == {16}
    assert "age 16 (under 18)" in related["text"]["div"]
    # notifications: pending ones only (ours, and any the rules engine raised); organisations: the GP practice
    # and the recipient, sources listed
    pending = refs(by_title["Pending notifications"])
    assert "Communication/sum-pending" in pending and "Communication/sum-done" not in pending
    assert all(held[r]["status"] in ("in-progress", "preparation") for r in pending)
    organisations = by_title["Organisations involved"]
    assert {"Organization/ods-Y12345", "Organization/ods-ZSG001"} <= set(refs(organisations))
    assert {"type": "Organization", "identifier": {"system": ODS, "value": "RX1"}} in organisations["entry"]
    [systems] = organisations["section"]
    # the three feeds (and "api": the derived flag above was written through the FHIR API), not Carethread's own
    assert {e["display"] for e in systems["entry"]} - {"api"} == {"gp", "health-visiting", "maternity"}
    # the mother's own was-not-brought (aged 15) is over 12 months ago: not there
    for source in ("maternity", "health visiting", "GP"):
        assert "entry" not in by_title[f"Was not brought (last 12 months) - {source}"]
    # every Patient record of the identity, the master first
    patients = resources(bundle, "Patient")
    assert patients[0]["id"] == ids["mother"] and len(patients) == 4  # master, maternity, health visiting, GP
    assert age(MOTHER_DOB) == 17


def test_the_babys_summary_counts_was_not_brought_by_source(family) -> None:
    svc, ids = family
    bundle = summary(svc, ids["baby"])
    by_title = sections(bundle)
    held = included(bundle)
    counts = {}
    for source in ("maternity", "health visiting", "GP"):
        section = by_title[f"Was not brought (last 12 months) - {source}"]
        counts[source] = len(refs(section))
        assert f"{counts[source]} was-not-brought event(s)" in section["text"]["div"]
        for ref in refs(section):
            appointment = held[ref]
            assert appointment["status"] == "noshow"
            assert appointment["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "was-not-brought"
    assert counts == {"maternity": 1, "health visiting": 2, "GP": 1}
    related = by_title["Related persons"]
    codes = [held[e["reference"]]["relationship"][0]["coding"][0]["code"] for e in related["entry"]]
    assert codes[:2] == ["FTH", "FTH"] and "GRMTH" in codes  # maternity's and health visiting's fathers first
    # every flag says why: a rule (with its evidence) or the source that sent it
    for title in ("Safeguarding flags (active)", "Safeguarding flag history"):
        section = by_title[title]
        if "entry" not in section:
            assert section["emptyReason"]["coding"][0]["code"] == "nilknown"
        for why in section.get("section", []):
            assert "rule " in why["text"]["div"] or "source " in why["text"]["div"]
            assert any(held[r]["resourceType"] == "Provenance" for r in refs(why))


def test_a_source_record_gives_the_same_summary_as_its_master(family) -> None:
    svc, ids = family

    def content(bundle: dict[str, Any]) -> str:
        composition = dict(bundle["entry"][0]["resource"], id="x", date="x")
        return json.dumps([composition, *(e for e in bundle["entry"][1:])], sort_keys=True)

    for who in ("mother", "baby"):
        by_master = content(summary(svc, ids[who]))
        for source in ids[f"{who}-sources"].split(","):
            assert content(summary(svc, source)) == by_master, (who, source)


def test_unknown_or_bad_ids_are_operation_outcomes_without_values(family) -> None:
    svc, ids = family
    unknown = httpx.get(f"{svc.http}/fhir/Patient/no-such-patient-9990001006/{OP}")
    assert unknown.status_code == 404
    body = unknown.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-found"
    assert "no-such-patient" not in unknown.text and MOTHER not in unknown.text
    bad = httpx.get(f"{svc.http}/fhir/Patient/bad%20id%3Cx%3E/{OP}")
    assert bad.status_code == 400 and "bad" not in bad.text and bad.json()["resourceType"] == "OperationOutcome"
    xml = httpx.get(f"{svc.http}/fhir/Patient/{ids['mother']}/{OP}", headers={"accept": "application/fhir+xml"})
    assert xml.status_code == 406 and ids["mother"] not in xml.text
    # a Flag id is not a Patient
    flag = httpx.get(f"{svc.http}/fhir/Patient/sum-derived-flag/{OP}")
    assert flag.status_code == 404 and "sum-derived-flag" not in flag.text


def test_the_capability_statement_declares_the_operation(family) -> None:
    svc, _ = family
    statement = get(svc, "metadata")
    [patient] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert "safeguarding-summary" in {op["name"] for op in patient["operation"]}
