"""read, vread and history over HTTP: bodies, ETag / Last-Modified, and the history Bundle."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
from fhir.resources.R4B.bundle import Bundle

from adapter.store.sqlite import SqliteStore

from .seed import NHS


def _patient(family: str) -> dict:
    return {"resourceType": "Patient", "id": "pat-r", "identifier": [{"system": NHS, "value": "9999999999"}],
            "name": [{"family": family}], "meta": {"source": "urn:carethread:maternity"}}


def _two_versions(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(_patient("First"))
    with store.transaction() as tx:
        tx.put(_patient("Second"))


async def test_read(fresh_store: SqliteStore, fresh_client: httpx.AsyncClient) -> None:
    _two_versions(fresh_store)
    response = await fresh_client.get("/fhir/Patient/pat-r")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.headers["etag"] == 'W/"2"'
    body = response.json()
    assert body["name"] == [{"family": "Second"}]
    assert body["meta"]["versionId"] == "2" and body["meta"]["source"] == "urn:carethread:maternity"
    modified = parsedate_to_datetime(response.headers["last-modified"])
    stored = fresh_store.read("Patient", "pat-r")
    assert stored is not None
    assert abs(modified.timestamp() - datetime.fromisoformat(stored.last_updated).timestamp()) < 1


async def test_vread(fresh_store: SqliteStore, fresh_client: httpx.AsyncClient) -> None:
    _two_versions(fresh_store)
    first = await fresh_client.get("/fhir/Patient/pat-r/_history/1")
    assert first.status_code == 200 and first.headers["etag"] == 'W/"1"'
    assert first.json()["name"] == [{"family": "First"}] and first.json()["meta"]["versionId"] == "1"
    second = await fresh_client.get("/fhir/Patient/pat-r/_history/2")
    assert second.json()["name"] == [{"family": "Second"}]


async def test_history(fresh_store: SqliteStore, fresh_client: httpx.AsyncClient) -> None:
    _two_versions(fresh_store)
    response = await fresh_client.get("/fhir/Patient/pat-r/_history")
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "history" and bundle["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "POST"]
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"2"', 'W/"1"']
    assert all(e["fullUrl"] == "http://test/fhir/Patient/pat-r" for e in bundle["entry"])
    Bundle.model_validate(bundle)


async def test_json_formats_are_accepted(client: httpx.AsyncClient) -> None:
    for query in ("", "?_format=json", "?_format=application/fhir%2Bjson", "?_format=application/json"):
        assert (await client.get(f"/fhir/Patient/pat-a{query}")).status_code == 200
    accepted = ("application/fhir+json", "application/json", "*/*", "application/fhir+json; fhirVersion=4.0",
                "text/html,application/xml;q=0.9,*/*;q=0.8", "application/xml;q=1, application/json;q=0.1")
    for accept in accepted:
        response = await client.get("/fhir/Patient/pat-a", headers={"accept": accept})
        assert response.status_code == 200, accept
