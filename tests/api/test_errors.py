"""Every error path answers with an OperationOutcome, the right status and no data from the request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fhir.resources.R4B.operationoutcome import OperationOutcome

from adapter.api import create_app
from adapter.errors import StoreError
from adapter.store.base import InboundMessage, SearchResult, StoredResource

from .conftest import client_for

SECRET = "9999999999"  # stands for patient data that must never come back in an error


def assert_outcome(response: httpx.Response, status: int, code: str, expression: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    body = response.json()
    OperationOutcome.model_validate(body)
    issue = body["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == code and issue["diagnostics"]
    if expression is not None:
        assert issue["expression"] == [expression]
    assert SECRET not in response.text
    return body


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/fhir/Medication", 404, "not-supported"),
    (f"/fhir/{SECRET}", 404, "not-supported"),
    ("/fhir/Medication/x", 404, "not-supported"),
    ("/fhir/Patient/nope", 404, "not-found"),
    ("/fhir/Patient/nope/_history", 404, "not-found"),
    ("/fhir/Patient/nope/_history/1", 404, "not-found"),
    ("/fhir/Patient/pat-a/_history/2", 404, "not-found"),
    ("/fhir/Patient/pat-a/_history/0", 404, "not-found"),
    ("/fhir/Patient/pat-a/_history/one", 400, "invalid"),
    ("/fhir/Patient/pat-a/_history/99999999999999999999", 400, "invalid"),
    ("/fhir/Patient/pat-a/_history/²", 400, "invalid"),
    ("/fhir/Patient/bad%20id!", 400, "invalid"),
    (f"/fhir/Patient/{'x' * 65}", 400, "invalid"),
    ("/fhir/Patient/a/b/c/d", 404, "not-found"),
    ("/fhir", 404, "not-found"),
    ("/fhir/", 404, "not-found"),
])
async def test_not_found_and_invalid(client: httpx.AsyncClient, path: str, status: int, code: str) -> None:
    assert_outcome(await client.get(path), status, code)


@pytest.mark.parametrize(("method", "path"), [  # create and update are served: see test_write.py
    ("DELETE", "/fhir/Patient/pat-a"),
    ("PATCH", "/fhir/Patient/pat-a"),
    ("DELETE", "/fhir/Patient"),
    ("PUT", "/fhir/Patient"),
    ("PUT", "/fhir/Patient/pat-a/_history/1"),
])
async def test_unsupported_interactions(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={"resourceType": "Patient", "id": "pat-a"})
    assert_outcome(response, 405, "not-supported")
    assert "GET" in response.headers["allow"] or "POST" in response.headers["allow"]


@pytest.mark.parametrize(("query", "code", "expression"), [
    ("unknown=1", "not-supported", "unknown"),
    ("name:fuzzy=smith", "not-supported", "name:fuzzy"),
    ("gender:contains=fem", "not-supported", "gender:contains"),
    (f"birthdate=not-a-date-{SECRET}", "invalid", "birthdate"),
    ("birthdate=lt2010-13-01", "invalid", "birthdate"),
    ("birthdate=ap2010", "not-supported", "birthdate"),
    ("_count=lots", "invalid", "_count"),
    ("_count=-1", "invalid", "_count"),
    ("_offset=-1", "invalid", "_offset"),
    ("_offset=99999999999999999999999", "invalid", "_offset"),
    ("_sort=family", "not-supported", "_sort"),
    ("_summary=count", "not-supported", "_summary"),
    ("_include=Patient:general-practitioner", "not-supported", "_include"),
    ("identifier.system=x", "not-supported", "identifier.system"),
    (f"{SECRET}=1", "not-supported", "(unrecognised parameter)"),
])
async def test_bad_search_parameters(
    client: httpx.AsyncClient, query: str, code: str, expression: str
) -> None:
    assert_outcome(await client.get(f"/fhir/Patient?{query}"), 400, code, expression)


async def test_bad_post_search_bodies(client: httpx.AsyncClient) -> None:
    wrong_type = await client.post("/fhir/Patient/_search", content=b'{"name": "smith"}',
                                   headers={"content-type": "application/json"})
    assert_outcome(wrong_type, 415, "not-supported")
    bad_param = await client.post("/fhir/Patient/_search", data={"nickname": SECRET})
    assert_outcome(bad_param, 400, "not-supported", "nickname")
    xml_format = await client.post("/fhir/Patient/_search", data={"_format": "xml"})
    assert_outcome(xml_format, 406, "not-supported", "_format")
    not_utf8 = await client.post("/fhir/Patient/_search", content=b"name=\xff\xfe",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert_outcome(not_utf8, 400, "invalid")
    unknown_type = await client.post("/fhir/Medication/_search", data={})
    assert_outcome(unknown_type, 404, "not-supported")


@pytest.mark.parametrize(("path", "headers"), [
    ("/fhir/Patient/pat-a?_format=xml", {}),
    ("/fhir/Patient/pat-a?_format=application/fhir%2Bxml", {}),
    ("/fhir/Patient?_format=text/turtle", {}),
    ("/fhir/Patient/pat-a", {"accept": "application/fhir+xml"}),
    ("/fhir/metadata", {"accept": "application/xml, text/xml"}),
    ("/fhir/Patient", {"accept": "application/fhir+json;q=0, application/fhir+xml"}),
])
async def test_xml_is_not_acceptable(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    assert_outcome(await client.get(path, headers=headers), 406, "not-supported")


async def test_validation_errors_under_fhir_are_outcomes(seeded_store: Any) -> None:
    router = APIRouter(prefix="/fhir/$test")

    @router.get("/number")
    def number(n: int) -> dict[str, int]:
        return {"n": n}

    async with client_for(create_app(seeded_store, routers=[router])) as extra:
        assert (await extra.get("/fhir/$test/number?n=4")).json() == {"n": 4}
        assert_outcome(await extra.get(f"/fhir/$test/number?n={SECRET}x"), 400, "invalid", "query.n")


async def test_other_paths_keep_fastapi_errors(seeded_store: Any) -> None:
    router = APIRouter(prefix="/hl7v2")

    @router.get("/number")
    def number(n: int) -> dict[str, int]:
        return {"n": n}

    async with client_for(create_app(seeded_store, routers=[router])) as extra:
        missing = await extra.get("/elsewhere")
        assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
        invalid = await extra.get("/hl7v2/number?n=x")
        assert invalid.status_code == 422 and "detail" in invalid.json()


class _FailingStore:
    """A Store whose every call fails the way the given exception says."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        raise self.exc

    def search(
        self, resource_type: str, params: list[tuple[str, str]], *, count: int, offset: int
    ) -> SearchResult:
        raise self.exc

    def inbound(self, archive_id: int) -> InboundMessage | None:
        raise self.exc


@pytest.mark.parametrize(("exc", "status", "code"), [
    (StoreError(f"store read failed for {SECRET}"), 503, "transient"),
    (RuntimeError(f"internal detail {SECRET}"), 500, "exception"),
    (KeyError(SECRET), 500, "exception"),
])
async def test_server_errors_hide_internals(exc: Exception, status: int, code: str) -> None:
    app = create_app(_FailingStore(exc))  # type: ignore[arg-type]
    async with client_for(app, raise_app_exceptions=False) as failing:
        for path in ("/fhir/Patient/pat-a", "/fhir/Flag?status=active"):
            body = assert_outcome(await failing.get(path), status, code)
            assert "Traceback" not in str(body) and type(exc).__name__ not in str(body)
