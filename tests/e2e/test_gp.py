"""GP Connect STU3 bundles through their real entry points: `carethread ingest --source gp` and
`POST /ingest/gp`, asserted through the FHIR API of a running service."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from collections.abc import Iterator

from tests.e2e.conftest import ROOT, Service, start_service, stop_service
from tests.e2e.test_cli import run_cli

GOLDEN = ROOT / "tests" / "golden" / "gp"
SAMPLES = ROOT.parent / "shared" / "samples" / "gpconnect_stu3"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"



@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service of its own: these tests load patients other e2e tests count."""
    svc = start_service(tmp_path_factory.mktemp("gp"))
    yield svc
    assert stop_service(svc) == 0

def outcome_counts(response: httpx.Response) -> dict[str, int]:
    return {e["url"]: e["valueInteger"] for e in response.json()["extension"][0]["extension"]}


def nhs_of(bundle: dict) -> str:
    patient = next(e["resource"] for e in bundle["entry"] if e.get("resource", {}).get("resourceType") == "Patient")
    return next(i["value"] for i in patient["identifier"] if i["system"] == NHS)


def test_a_child_bundle_becomes_r4_records_flags_and_a_was_not_brought(service: Service) -> None:
    payload = (GOLDEN / "001-child-safeguarding.json").read_bytes()
    nhs = nhs_of(json.loads(payload))
    response = httpx.post(f"{service.http}/ingest/gp", content=payload,
                          headers={"content-type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    fhir = f"{service.http}/fhir"
    [patient] = [e["resource"] for e in httpx.get(f"{fhir}/Patient", params={
        "identifier": f"{NHS}|{nhs}", "_tag:not": MASTER}).json()["entry"]]
    nhs_id = next(i for i in patient["identifier"] if i["system"] == NHS)
    assert nhs_id["extension"][0]["url"].endswith("UKCore-NHSNumberVerificationStatus")
    flags = httpx.get(f"{fhir}/Flag", params={"patient.identifier": f"{NHS}|{nhs}"}).json()["entry"]
    assert {f["resource"]["status"] for f in flags} == {"active", "inactive"}
    ended = next(f["resource"] for f in flags if f["resource"]["status"] == "inactive")
    assert "end" in ended["period"]
    conditions = httpx.get(f"{fhir}/Condition", params={"patient": f"Patient/{patient['id']}"}).json()
    assert conditions["total"] >= 2
    noshows = httpx.get(f"{fhir}/Appointment", params={"patient.identifier": f"{NHS}|{nhs}", "status": "noshow"}).json()
    [outcome] = {x["valueCodeableConcept"]["coding"][0]["code"] for e in noshows["entry"]
                 for x in e["resource"]["extension"]}
    assert outcome == "was-not-brought"
    again = httpx.post(f"{service.http}/ingest/gp", content=payload)
    assert again.status_code == 200 and outcome_counts(again)["duplicates"] == 1


def test_whole_bundle_rejections(service: Service) -> None:
    not_json = httpx.post(f"{service.http}/ingest/gp", content=b"{not json")
    assert not_json.status_code == 400 and not_json.json()["resourceType"] == "OperationOutcome"
    not_bundle = httpx.post(f"{service.http}/ingest/gp", content=b'{"resourceType": "Basic"}')
    assert not_bundle.status_code == 400
    no_patient = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Organization", "id": "o1", "name": "Example"}}]}
    rejected = httpx.post(f"{service.http}/ingest/gp", json=no_patient)
    assert rejected.status_code == 422, rejected.text
    assert rejected.json()["issue"][1]["location"] == ["Bundle"]
    # an Appointment Management searchset naming a Patient nobody has sent yet
    unknown = httpx.post(f"{service.http}/ingest/gp", content=(SAMPLES / "gpc_appointments_retrieve_patient_"
                                                               "appointments_searchset.json").read_bytes(),
                         params={"practice": "Y99999"})
    assert unknown.status_code == 422


def test_bad_entries_are_named_and_the_rest_is_stored(service: Service) -> None:
    payload = (GOLDEN / "004-broken-entries.json").read_bytes()
    response = httpx.post(f"{service.http}/ingest/gp", content=payload)
    assert response.status_code == 200, response.text
    errors = [i for i in response.json()["issue"] if i["severity"] == "error"]
    assert errors and all(i["location"][0].startswith("Bundle.entry[") for i in errors)
    assert outcome_counts(response)["errors"] == 1  # archived AE: listed for replay
    nhs = nhs_of(json.loads(payload))
    flags = httpx.get(f"{service.http}/fhir/Flag", params={"patient.identifier": f"{NHS}|{nhs}"}).json()
    assert flags["total"] >= 1  # the safeguarding Condition still became a Flag


def test_cli_ingests_bundles_and_the_public_samples(tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    folder.mkdir()
    for name in ("gpc_spec_problems_response1.json", "gpc_spec_immunizations_response1.json",
                 "gpc_foundations_read_patient.json"):
        (folder / name).write_bytes((SAMPLES / name).read_bytes())
    (folder / "zz_appointments.json").write_bytes(
        (SAMPLES / "gpc_appointments_retrieve_patient_appointments_searchset.json").read_bytes())
    db = str(tmp_path / "db.sqlite3")
    result = run_cli("ingest", "--source", "gp", "--db", db, str(folder))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rejected"] == 0 and summary["accepted"] + summary["errors"] == 4, result.stdout + result.stderr
    again = run_cli("ingest", "--source", "gp", "--db", db, str(folder))
    assert json.loads(again.stdout.strip().splitlines()[-1])["duplicates"] == summary["accepted"]
