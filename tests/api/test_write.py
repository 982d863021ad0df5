"""Create and update: validated before storing, archived always, versioned, conditional on If-Match."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapter.api import create_app
from adapter.store.sqlite import SqliteStore

from .conftest import client_for

FLAG: dict[str, Any] = {
    "resourceType": "Flag", "status": "active",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]},
    "subject": {"reference": "Patient/p1"},
}


def outcome_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    return response.json()  # type: ignore[no-any-return]


async def test_create_assigns_an_id_and_stores_version_1(fresh_client: httpx.AsyncClient,
                                                         fresh_store: SqliteStore) -> None:
    created = outcome_of(await fresh_client.post("/fhir/Flag", json=FLAG), 201)
    assert created["id"] and created["meta"]["versionId"] == "1"
    assert created["meta"]["source"] == "https://fhir.carethread.org/source/api"
    read = outcome_of(await fresh_client.get(f"/fhir/Flag/{created['id']}"), 200)
    assert read["code"] == FLAG["code"]
    archived = fresh_store.list_inbound(status="AA")
    assert [(r.channel, r.source) for r in archived] == [("http", "api")]
    assert json.loads(archived[0].payload) == FLAG


async def test_put_creates_then_updates_with_versions_and_location(fresh_client: httpx.AsyncClient) -> None:
    body = {**FLAG, "id": "f1"}
    first = await fresh_client.put("/fhir/Flag/f1", json=body)
    outcome_of(first, 201)
    assert first.headers["location"].endswith("/fhir/Flag/f1/_history/1") and first.headers["etag"] == 'W/"1"'
    second = await fresh_client.put("/fhir/Flag/f1", json={**body, "status": "inactive"})
    assert outcome_of(second, 200)["meta"]["versionId"] == "2"
    history = outcome_of(await fresh_client.get("/fhir/Flag/f1/_history"), 200)
    assert [e["resource"]["status"] for e in history["entry"]] == ["inactive", "active"]


async def test_if_match_makes_an_update_conditional(fresh_client: httpx.AsyncClient,
                                                    fresh_store: SqliteStore) -> None:
    body = {**FLAG, "id": "f2"}
    outcome_of(await fresh_client.put("/fhir/Flag/f2", json=body), 201)
    stale = await fresh_client.put("/fhir/Flag/f2", json={**body, "status": "inactive"}, headers={"If-Match": 'W/"7"'})
    assert outcome_of(stale, 412)["issue"][0]["code"] == "conflict"
    ok = await fresh_client.put("/fhir/Flag/f2", json={**body, "status": "inactive"}, headers={"If-Match": 'W/"1"'})
    outcome_of(ok, 200)
    assert [r.error_code for r in fresh_store.list_inbound(status="AE")] == ["version-conflict"]  # still archived


async def test_an_invalid_resource_is_refused_with_every_issue_and_archived(fresh_client: httpx.AsyncClient,
                                                                            fresh_store: SqliteStore) -> None:
    body = {"resourceType": "Patient", "birthDate": "2009-13-40", "name": [{"family": "SECRETNAME"}]}
    response = await fresh_client.post("/fhir/Patient", json=body)
    outcome = outcome_of(response, 422)
    assert outcome["issue"][0]["expression"] == ["Patient.birthDate"]
    assert "2009-13-40" not in response.text and "SECRETNAME" not in response.text
    assert (await fresh_client.get("/fhir/Patient", params={"_count": "0"})).json()["total"] == 0
    assert [(r.status, r.error_location) for r in fresh_store.list_inbound(status="AE")] == [("AE", "Patient.birthDate")]


async def test_a_custom_validator_sees_every_write(fresh_store: SqliteStore) -> None:
    def validator(resource: dict[str, Any]) -> list[dict[str, Any]]:
        if resource.get("status") == "wasnotbrought":
            return [{"severity": "error", "code": "code-invalid", "diagnostics": "not in the value set",
                     "expression": ["Appointment.status"]}]
        return []

    async with client_for(create_app(fresh_store, validate_resource=validator)) as client:
        appt = {"resourceType": "Appointment", "status": "wasnotbrought",
                "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}
        outcome = outcome_of(await client.post("/fhir/Appointment", json=appt), 422)
        assert outcome["issue"][0]["expression"] == ["Appointment.status"]


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/fhir/Flag", b"{not json", 400, "structure"),
    ("/fhir/Flag", b"[1, 2]", 400, "structure"),
    ("/fhir/Flag", json.dumps({**FLAG, "resourceType": "Patient"}).encode(), 400, "invalid"),
    ("/fhir/Flag/abc", json.dumps({**FLAG, "id": "other"}).encode(), 400, "invalid"),
    ("/fhir/Medication", b"{}", 404, "not-supported"),
    ("/fhir/Flag/bad id!", b"{}", 400, "invalid"),
])
async def test_bad_requests(fresh_client: httpx.AsyncClient, path: str, body: bytes, status: int, code: str) -> None:
    method = "PUT" if path.count("/") == 3 else "POST"
    response = await fresh_client.request(method, path, content=body, headers={"content-type": "application/fhir+json"})
    assert outcome_of(response, status)["issue"][0]["code"] == code
