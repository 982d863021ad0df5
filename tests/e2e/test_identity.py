"""Identity reconciliation through the real entry points (MLLP, HTTP) of a running service: one master
Patient per human, twins kept apart, a 16-year-old's adult-services record linked, A40 merges with
history, flag-moving merges sent to review, a reviewer's decision applied, and Patient/$match."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapter.inbound.mllp import MLLPClient
from tests.e2e.conftest import Service, start_service, stop_service
from tests.hl7builder import message, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"
REVIEW = "https://fhir.carethread.org/CodeSystem/task-code|identity-review"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    s = start_service(tmp_path_factory.mktemp("identity"))
    yield s
    assert stop_service(s) == 0


def send(svc: Service, *msgs: bytes) -> None:
    with MLLPClient("127.0.0.1", svc.mllp_port) as client:
        for msg in msgs:
            reply = client.send(msg)
            assert b"MSA|AA|" in reply, reply


def pid(mrn: str, *, facility: str = "RX1", nhs: str | None = None, name: str = "SYNTHETIC^Amber",
        dob: str = "20090514", sex: str = "F", extra: dict[int, str] | None = None) -> str:
    ids = f"{mrn}^^^{facility}^MR" + (f"~{nhs}^^^NHS^NH" if nhs else "")
    return seg("PID", {1: "1", 3: ids, 5: name, 7: dob, 8: sex, 11: "1 Example Road^^Exampletown^^ZZ99 1AA",
                       **(extra or {})})


def fhir(svc: Service, path: str, **params: str) -> dict:
    r = httpx.get(f"{svc.http}/fhir/{path}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def master_of(svc: Service, source_id: str) -> dict:
    [entry] = fhir(svc, "Patient", link=f"Patient/{source_id}", _tag=MASTER)["entry"]
    return entry["resource"]


def source_ids(svc: Service, mrn: str, facility: str = "RX1") -> str:
    bundle = fhir(svc, "Patient", identifier=f"https://fhir.carethread.org/Id/maternity/{facility}|{mrn}")
    [entry] = bundle["entry"]
    return entry["resource"]["id"]


def test_a_16_year_olds_adult_services_record_joins_her_identity(svc: Service) -> None:
    send(svc, message("ADT^A04", pid("PAED16", nhs="9990001049", dob="20100401")),
         message("ADT^A04", pid("ADULT16", facility="RX2", nhs="9990001049", dob="20100401"), facility="RX2"))
    paed, adult = source_ids(svc, "PAED16"), source_ids(svc, "ADULT16", "RX2")
    master = master_of(svc, paed)
    assert master_of(svc, adult)["id"] == master["id"]
    assert master["identifier"] == [next(i for i in fhir(svc, f"Patient/{paed}")["identifier"] if i["system"] == NHS)]
    grades = {link["other"]["reference"]: link["extension"][0]["valueCode"] for link in master["link"]}
    assert grades == {f"Patient/{paed}": "certain", f"Patient/{adult}": "certain"}
    # any record of her finds the identity's resources
    assert {p["resource"]["id"] for p in fhir(svc, "Patient", identity=f"Patient/{adult}")["entry"]} == \
        {paed, adult, master["id"]}


def test_twins_stay_apart_and_a_later_record_never_joins_the_wrong_twin(svc: Service) -> None:
    mother = f"9990001006^^^NHS^NH"
    twin = {21: mother, 24: "Y"}
    send(svc,
         message("ADT^A01", pid("TWINA", name="TWINSON^TWIN 1", dob="20260301", sex="M", extra={**twin, 25: "1"})),
         message("ADT^A01", pid("TWINB", name="TWINSON^TWIN 2", dob="20260301", sex="M", extra={**twin, 25: "2"})))
    a, b = source_ids(svc, "TWINA"), source_ids(svc, "TWINB")
    assert master_of(svc, a)["id"] != master_of(svc, b)["id"]
    # the GP's record of twin 1, named now: linked to twin 1 or sent to review, never to twin 2
    gp = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "gp-twin-1", "active": True, "identifier": [{"system": NHS, "value": "9990001057"}],
                      "name": [{"family": "TWINSON", "given": ["Oliver"]}], "gender": "male", "birthDate": "2026-03-01",
                      "multipleBirthInteger": 1, "address": [{"postalCode": "ZZ99 1AA"}],
                      "managingOrganization": {"reference": "Organization/o"}}},
        {"resource": {"resourceType": "Organization", "id": "o",
                      "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}]}}]}
    r = httpx.post(f"{svc.http}/ingest/gp", json=gp)
    assert r.status_code == 200, r.text
    twin_b_master = master_of(svc, b)
    assert [link["other"]["reference"] for link in twin_b_master["link"]] == [f"Patient/{b}"]


def test_an_a40_merge_joins_identities_and_keeps_history(svc: Service) -> None:
    send(svc, message("ADT^A04", pid("MERGEKEEP", name="MERGER^Casey", dob="20120202")),
         message("ADT^A04", pid("MERGEGONE", name="DIFFERENT^Sam", dob="20120715")))
    keep, gone = source_ids(svc, "MERGEKEEP"), source_ids(svc, "MERGEGONE")
    retired = master_of(svc, gone)["id"]
    assert master_of(svc, keep)["id"] != retired
    send(svc, message("ADT^A40", pid("MERGEKEEP", name="MERGER^Casey", dob="20120202"),
                      seg("MRG", {1: "MERGEGONE^^^RX1^MR"})))
    survivor = master_of(svc, keep)
    assert {link["other"]["reference"] for link in survivor["link"]} == {f"Patient/{keep}", f"Patient/{gone}"}
    old = fhir(svc, f"Patient/{retired}")
    assert old["active"] is False and old["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"},
                                                         "type": "replaced-by"}]
    history = fhir(svc, f"Patient/{retired}/_history")
    assert history["total"] >= 2 and any(e["resource"]["active"] for e in history["entry"])


def test_a_merge_that_would_move_a_flag_goes_to_review_and_a_reviewer_decides(svc: Service) -> None:
    flag = seg("OBX", {1: "1", 2: "CE", 3: "ALERT^Alert^L", 5: "342191000000101^CPP^SCT", 11: "F", 14: "20221103"})
    send(svc, message("ADT^A04", pid("FLAGKEEP", name="FLAGGED^Robin", dob="20110303")),
         message("ADT^A04", pid("FLAGGONE", name="ANOTHER^Jude", dob="20110910"), flag))
    keep, gone = source_ids(svc, "FLAGKEEP"), source_ids(svc, "FLAGGONE")
    before = master_of(svc, gone)["id"]
    send(svc, message("ADT^A40", pid("FLAGKEEP", name="FLAGGED^Robin", dob="20110303"),
                      seg("MRG", {1: "FLAGGONE^^^RX1^MR"})))
    assert master_of(svc, gone)["id"] == before  # not merged: the flag would move
    tasks = fhir(svc, "Task", status="requested", code=REVIEW, patient=f"Patient/{gone}")["entry"]
    [task] = [t["resource"] for t in tasks]
    assert task["input"][0]["valueReference"]["reference"] == f"Patient/{master_of(svc, keep)['id']}"

    decided = {**task, "status": "completed", "output": [
        {"type": {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/task-input-type", "code": "decision"}]},
         "valueCode": "link"}]}
    r = httpx.put(f"{svc.http}/fhir/Task/{task['id']}", json=decided)
    assert r.status_code == 200, r.text
    assert master_of(svc, gone)["id"] == master_of(svc, keep)["id"]
    flags = fhir(svc, "Flag", identity=f"Patient/{keep}")
    assert flags["total"] == 1  # the flag follows the person now
    assert fhir(svc, "Task", status="requested", code=REVIEW, patient=f"Patient/{gone}").get("total") == 0


def test_a_reviewers_link_runs_the_rules_on_the_joined_identity(svc: Service) -> None:
    """A child's flag on one record and a no-show on another: apart, no pattern (an unflagged child needs two);
    once a reviewer links them, one no-show of a flagged child is the pattern, without waiting for an event."""
    flag = seg("OBX", {1: "1", 2: "CE", 3: "ALERT^Alert^L", 5: "342191000000101^CPP^SCT", 11: "F", 14: "20250110"})
    when = "20260415100000"
    send(svc, message("ADT^A04", pid("WNBKEEP", name="PATTERN^Rowan", dob="20200202"), flag),
         message("SIU^S26^SIU_S12", seg("SCH", {2: "WNB-APPT-1^EPR", 9: "30", 10: "min", 11: f"^^^{when}",
                                                  25: "Noshow"}),
                 pid("WNBGONE", name="UNLINKED^Kit", dob="20200707"), ts=when))
    keep, gone = source_ids(svc, "WNBKEEP"), source_ids(svc, "WNBGONE")
    pattern = "repeated-was-not-brought"
    assert fhir(svc, "Flag", identity=f"Patient/{keep}", code=pattern).get("total") == 0
    send(svc, message("ADT^A40", pid("WNBKEEP", name="PATTERN^Rowan", dob="20200202"),
                      seg("MRG", {1: "WNBGONE^^^RX1^MR"})))  # would move a flag: review
    [task] = [t["resource"] for t in fhir(svc, "Task", status="requested", code=REVIEW,
                                          patient=f"Patient/{gone}")["entry"]]
    decided = {**task, "status": "completed", "output": [
        {"type": {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/task-input-type", "code": "decision"}]},
         "valueCode": "link"}]}
    assert httpx.put(f"{svc.http}/fhir/Task/{task['id']}", json=decided).status_code == 200
    [derived] = [e["resource"] for e in fhir(svc, "Flag", identity=f"Patient/{keep}", code=pattern)["entry"]]
    assert derived["subject"]["reference"] == f"Patient/{master_of(svc, keep)['id']}"


def test_a_decision_must_say_link_or_not_a_match(svc: Service) -> None:
    tasks = fhir(svc, "Task", code=REVIEW)["entry"]
    task = {**tasks[0]["resource"], "status": "completed", "output": []}
    task.pop("meta")
    r = httpx.put(f"{svc.http}/fhir/Task/{task['id']}", json=task)
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"


def test_patient_match(svc: Service) -> None:
    probe = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990001049"}],
             "name": [{"family": "SYNTHETIC", "given": ["Amber"]}], "gender": "female", "birthDate": "2010-04-01"}
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": probe},
                                                          {"name": "onlyCertainMatches", "valueBoolean": True}]}
    r = httpx.post(f"{svc.http}/fhir/Patient/$match", json=params)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    [entry] = bundle["entry"]
    assert entry["search"]["extension"][0]["valueCode"] == "certain" and entry["search"]["score"] > 0.99
    assert entry["resource"]["meta"]["tag"][0]["code"] == "master"
    bad = httpx.post(f"{svc.http}/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": []})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
