"""Health visiting exports through their real entry points: `carethread ingest --source health-visiting`
and `POST /ingest/health-visiting` (multipart), asserted through the FHIR API of a running service."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import httpx
import pytest

from collections.abc import Iterator

from tests.e2e.conftest import ROOT, Service, start_service, stop_service
from tests.e2e.test_cli import run_cli

EXAMPLE = ROOT / "sandbox" / "health-visiting" / "example"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SUMMARY = "https://fhir.carethread.org/StructureDefinition/ingest-summary"
EXAMPLE_ROWS = sum(1 for f in EXAMPLE.iterdir() for line in f.read_text().splitlines()[f.suffix == ".csv":]
                   if line.strip())
# rows appended to the example's contacts: each is rejected at its line and column, the rest goes in
BAD_CONTACTS = [
    ("CC100,HV0002,2026-05-01,10:00,30,NOT_A_TYPE,3,HV Practitioner TWO,Team A,CLINIC", "AE", "column:contact_type"),
    ("CC101,HV0002,2026-13-45,10:00,30,CLINIC,3,HV Practitioner TWO,Team A,CLINIC", "AE", "column:care_contact_date"),
    (",HV0002,2026-05-01,10:00,30,CLINIC,3,HV Practitioner TWO,Team A,CLINIC", "AE", "column:care_contact_id"),
    ("CC103,HV0002", "AR", None),
    ("CC104,HV9999,2026-05-01,10:00,30,CLINIC,3,HV Practitioner TWO,Team A,CLINIC", "AE", "column:local_patient_id"),
]



@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service of its own: these tests load patients other e2e tests count."""
    svc = start_service(tmp_path_factory.mktemp("hv"))
    yield svc
    assert stop_service(svc) == 0

def summary_of(stdout: str) -> dict[str, int]:
    return json.loads(stdout.strip().splitlines()[-1])


def export_with_bad_rows(tmp: Path) -> tuple[Path, list[int]]:
    folder = tmp / "export"
    shutil.copytree(EXAMPLE, folder)
    contacts = folder / "care_contacts.csv"
    first = len(contacts.read_text().splitlines()) + 1
    with contacts.open("a") as f:
        f.write("".join(row + "\n" for row, _, _ in BAD_CONTACTS))
    return folder, list(range(first, first + len(BAD_CONTACTS)))


def test_cli_ingests_the_example_export_and_again_changes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "db.sqlite3")
    first = run_cli("ingest", "--source", "health-visiting", "--db", db, str(EXAMPLE))
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary_of(first.stdout) == {"accepted": EXAMPLE_ROWS, "errors": 0, "rejected": 0, "duplicates": 0}
    again = run_cli("ingest", "--source", "health-visiting", "--db", db, str(EXAMPLE))
    assert summary_of(again.stdout) == {"accepted": 0, "errors": 0, "rejected": 0, "duplicates": EXAMPLE_ROWS}


def test_cli_rejects_bad_rows_at_their_line_and_column_and_ingests_the_rest(tmp_path: Path) -> None:
    folder, lines = export_with_bad_rows(tmp_path)
    result = run_cli("ingest", "--source", "health-visiting", "--db", str(tmp_path / "db.sqlite3"), str(folder))
    assert result.returncode == 1
    assert summary_of(result.stdout) == {"accepted": EXAMPLE_ROWS, "errors": 4, "rejected": 1, "duplicates": 0}
    for line, (_, status, column) in zip(lines, BAD_CONTACTS):
        reported = [x for x in result.stdout.splitlines() if x.startswith(f"care_contacts.csv:{line}: {status} ")]
        assert len(reported) == 1, (line, result.stdout)
        assert column is None or f" at {column}:" in reported[0]
    assert "NOT_A_TYPE" not in result.stdout + result.stderr and "HV9999" not in result.stdout + result.stderr
    listed = [json.loads(x) for x in run_cli("replay", "--db", str(tmp_path / "db.sqlite3"), "--list").stdout.splitlines()]
    assert {(r["source"], r["status"]) for r in listed} == {("health-visiting", "AE"), ("health-visiting", "AR")}
    assert any(r["error_location"] == f"care_contacts.csv:{lines[0]} column:contact_type" for r in listed)


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"export-2026-06/{f.name}")
    return buffer.getvalue()


def test_http_upload_of_a_zip_reports_per_row_outcomes(service: Service, tmp_path: Path) -> None:
    folder, lines = export_with_bad_rows(tmp_path)
    response = httpx.post(f"{service.http}/ingest/health-visiting", timeout=60,
                          files={"file": ("export.zip", zipped(folder), "application/zip")})
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    counts = {e["url"]: e["valueInteger"] for e in outcome["extension"][0]["extension"]}
    assert counts["errors"] == 4 and counts["rejected"] == 1
    assert counts["accepted"] + counts["duplicates"] == EXAMPLE_ROWS
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    located = {i["location"][0] for i in errors}
    for line, (_, _, column) in zip(lines, BAD_CONTACTS):
        where = f"export-2026-06/care_contacts.csv:{line}"
        assert (f"{where} {column}" if column else where) in located
    assert "NOT_A_TYPE" not in response.text

    # what went in is served by the FHIR API, in one shape
    fhir = f"{service.http}/fhir"
    baby = "999 000 1014".replace(" ", "")
    noshows = httpx.get(f"{fhir}/Appointment", params={"patient.identifier": f"{NHS}|{baby}", "status": "noshow"}).json()
    outcomes = [ext["valueCodeableConcept"]["coding"][0]["code"] for e in noshows["entry"]
                for ext in e["resource"].get("extension", [])]
    assert outcomes and set(outcomes) == {"was-not-brought"}
    flags = httpx.get(f"{fhir}/Flag", params={"patient.identifier": f"{NHS}|9990001006"}).json()
    assert {e["resource"]["status"] for e in flags["entry"]} == {"active", "inactive"}
    fathers = httpx.get(f"{fhir}/RelatedPerson", params={"relationship": "FTH"}).json()
    assert any(e["resource"].get("birthDate") == "2009-07-03" for e in fathers["entry"])


def test_http_upload_of_single_files_and_a_later_export_that_drops_a_row(service: Service) -> None:
    people = (EXAMPLE / "people.csv").read_bytes()
    first = httpx.post(f"{service.http}/ingest/health-visiting", files={"file": ("people.csv", people, "text/csv")})
    assert first.status_code == 200
    fewer = b"\n".join(people.splitlines()[:2]) + b"\n"  # a later export with one person only
    second = httpx.post(f"{service.http}/ingest/health-visiting", files={"file": ("people.csv", fewer, "text/csv")})
    counts = {e["url"]: e["valueInteger"] for e in second.json()["extension"][0]["extension"]}
    assert counts == {"accepted": 0, "errors": 0, "rejected": 0, "duplicates": 1}
    still = httpx.get(f"{service.http}/fhir/Patient", params={
        "identifier": f"{NHS}|9990001030", "_tag:not": "https://fhir.carethread.org/CodeSystem/record-type|master"}).json()
    assert still["total"] == 1  # the dropped person is still there


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"content": b"local_patient_id\nX\n", "headers": {"content-type": "text/csv"}}, 400),
    ({"files": {"note": ("notes.txt", b"x", "text/plain")}, "data": {}}, 200),
])
def test_http_upload_without_an_export(service: Service, kwargs: dict, status: int) -> None:
    response = httpx.post(f"{service.http}/ingest/health-visiting", **kwargs)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
