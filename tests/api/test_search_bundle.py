"""The searchset Bundle: _include, paging links, _count, lenient handling, and R4 validity."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from adapter.store.sqlite import SqliteStore

from .seed import NHS


def _entries(bundle: dict, mode: str) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] == mode]


def _link(bundle: dict, relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


def _params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


@pytest.mark.parametrize(("query", "matches", "included"), [
    ("Flag?patient=pat-a&_include=Flag:patient", {"Flag/flag-1", "Flag/flag-3"}, ["Patient/pat-a"]),
    ("Flag?_include=Flag:subject", {"Flag/flag-1", "Flag/flag-2", "Flag/flag-3"},
     ["Patient/pat-a", "Patient/pat-c"]),
    ("Encounter?_include=Encounter:patient&_id=enc-2", {"Encounter/enc-2"}, ["Patient/pat-c"]),
    ("Encounter?_include=Encounter:subject&status=finished", {"Encounter/enc-1"}, ["Patient/pat-a"]),
    ("Appointment?_include=Appointment:patient&_id=appt-1,appt-3",
     {"Appointment/appt-1", "Appointment/appt-3"}, ["Patient/pat-a", "Patient/pat-c"]),
    # Practitioner/dr-1 is referenced but not stored: nothing to include for it
    ("Appointment?_include=Appointment:actor&_id=appt-1", {"Appointment/appt-1"}, ["Patient/pat-a"]),
    ("Appointment?_include=Appointment:actor:Patient&_id=appt-2", {"Appointment/appt-2"}, ["Patient/pat-b"]),
    ("RelatedPerson?_include=RelatedPerson:patient", {"RelatedPerson/rp-1", "RelatedPerson/rp-2"},
     ["Patient/pat-a", "Patient/pat-c"]),
    ("Provenance?_include=Provenance:target", {"Provenance/prov-1"}, ["Flag/flag-1", "Patient/pat-a"]),
    ("Flag?patient=pat-a&_include=Flag:patient&_include=Flag:subject", {"Flag/flag-1", "Flag/flag-3"},
     ["Patient/pat-a"]),
    ("Flag?patient=pat-d&_include=Flag:patient", set(), []),
])
async def test_include(client: httpx.AsyncClient, query: str, matches: set[str], included: list[str]) -> None:
    response = await client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert set(_entries(bundle, "match")) == matches
    assert sorted(_entries(bundle, "include")) == included  # each included resource once
    assert bundle["total"] == len(matches)  # includes are not counted


async def test_entries_have_absolute_full_urls_and_validate_as_r4(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/fhir/Flag?_include=Flag:patient")).json()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"http://test/fhir/{resource['resourceType']}/{resource['id']}"
        assert resource["meta"]["versionId"] == "1"
    Bundle.model_validate(bundle)
    lenient = await client.get("/fhir/Patient?bogus=1", headers={"Prefer": "handling=lenient"})
    Bundle.model_validate(lenient.json())


async def test_count_zero_gives_the_total_only(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/fhir/Flag?_count=0&status=active")).json()
    assert bundle["total"] == 2 and "entry" not in bundle
    assert _link(bundle, "next") is None and _link(bundle, "previous") is None


async def test_count_is_capped(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/fhir/Flag?_count=100000")).json()
    assert ("_count", "500") in _params(_link(bundle, "self") or "")


async def test_self_link_keeps_parameters(client: httpx.AsyncClient) -> None:
    bundle = (await client.get(f"/fhir/Flag?patient.identifier={NHS}|9999999999&status=active,inactive"
                               "&_include=Flag:patient&_format=json")).json()
    self_link = _link(bundle, "self") or ""
    assert self_link.startswith("http://test/fhir/Flag?")
    assert _params(self_link) == [("patient.identifier", f"{NHS}|9999999999"), ("status", "active,inactive"),
                                  ("_include", "Flag:patient"), ("_format", "json"), ("_count", "50"),
                                  ("_offset", "0")]


async def test_paging_through_next_links_yields_every_match_once(fresh_store: SqliteStore,
                                                                fresh_client: httpx.AsyncClient) -> None:
    with fresh_store.transaction() as tx:
        tx.put({"resourceType": "Patient", "id": "pat-p",
                "identifier": [{"system": NHS, "value": "9000000009"}]})
        for n in range(23):
            tx.put({"resourceType": "Flag", "id": f"flag-{n:02d}", "status": "active",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]},
                    "subject": {"reference": "Patient/pat-p"}})
        tx.put({"resourceType": "Flag", "id": "other", "status": "inactive",
                "code": {"text": "x"}, "subject": {"reference": "Patient/pat-p"}})
    url: str | None = "/fhir/Flag?status=active&_count=5&_include=Flag:patient"
    seen: list[str] = []
    pages = 0
    previous_urls = []
    while url is not None:
        bundle = (await fresh_client.get(url)).json()
        assert bundle["total"] == 23
        seen += _entries(bundle, "match")
        assert _entries(bundle, "include") == ["Patient/pat-p"]
        previous_urls.append(_link(bundle, "previous"))
        url = _link(bundle, "next")
        if url is not None:
            assert ("status", "active") in _params(url) and ("_include", "Flag:patient") in _params(url)
        pages += 1
    assert pages == 5
    assert len(seen) == 23 and set(seen) == {f"Flag/flag-{n:02d}" for n in range(23)}
    assert previous_urls[0] is None
    assert ("_offset", "15") in _params(previous_urls[-1] or "")
    # previous from an offset that is not a multiple of _count stops at 0
    bundle = (await fresh_client.get("/fhir/Flag?status=active&_count=5&_offset=3")).json()
    assert ("_offset", "0") in _params(_link(bundle, "previous") or "")
    beyond = (await fresh_client.get("/fhir/Flag?status=active&_offset=100")).json()
    assert beyond["total"] == 23 and "entry" not in beyond and _link(beyond, "next") is None


@pytest.mark.parametrize("bad", [
    "unknown=1", "name:fuzzy=x", "birthdate=2009-02-30", "_count=-5", "_sort=-_lastUpdated",
    "_include=Flag:patient", "identifier.value=x", "gender:missing=perhaps",
])
async def test_lenient_handling_ignores_and_reports(client: httpx.AsyncClient, bad: str) -> None:
    strict = await client.get(f"/fhir/Patient?name=smith&{bad}")
    assert strict.status_code == 400
    response = await client.get(f"/fhir/Patient?name=smith&{bad}", headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200
    bundle = response.json()
    assert _entries(bundle, "match") == ["Patient/pat-a"]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    issue = outcome[0]["resource"]["issue"][0]
    assert outcome[0]["resource"]["resourceType"] == "OperationOutcome"
    assert issue["severity"] == "warning" and issue["code"] in ("invalid", "not-supported")
    assert issue["expression"] == [bad.split("=")[0]]
    assert _params(_link(bundle, "self") or "") == [("name", "smith"), ("_count", "50"), ("_offset", "0")]


async def test_prefer_strict_and_other_preferences(client: httpx.AsyncClient) -> None:
    strict = await client.get("/fhir/Patient?unknown=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    prefer = {"Prefer": "return=minimal, handling=lenient"}
    combined = await client.get("/fhir/Patient?unknown=1", headers=prefer)
    assert combined.status_code == 200


async def test_lenient_request_without_problems_has_no_outcome(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/fhir/Patient?name=smith", headers={"Prefer": "handling=lenient"})).json()
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match"]
