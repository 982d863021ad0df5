"""The CapabilityStatement says exactly what the server does: all it declares works, nothing else does."""

from __future__ import annotations

import re

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from .seed import ONE_PER_TYPE

# a well-formed value of each search parameter type
SAMPLE_VALUES = {"token": "x", "string": "x", "date": "ge2020-01", "reference": "Patient/x"}


@pytest.fixture
async def statement(client: httpx.AsyncClient) -> dict:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    return response.json()


async def test_statement_is_valid_r4(statement: dict) -> None:
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["status"] == "active" and statement["kind"] == "instance"
    assert "json" in statement["format"]
    assert statement["implementation"]["url"] == "http://test/fhir"


async def test_declared_resource_types_are_served(client: httpx.AsyncClient, statement: dict) -> None:
    declared = [r["type"] for r in statement["rest"][0]["resource"]]
    assert sorted(declared) == sorted(ONE_PER_TYPE)
    assert (await client.get("/fhir/Medication")).status_code == 404


async def test_declared_interactions_work(client: httpx.AsyncClient, statement: dict) -> None:
    for resource in statement["rest"][0]["resource"]:
        rtype, rid = resource["type"], ONE_PER_TYPE[resource["type"]]
        urls = {"read": f"/fhir/{rtype}/{rid}", "vread": f"/fhir/{rtype}/{rid}/_history/1",
                "history-instance": f"/fhir/{rtype}/{rid}/_history", "search-type": f"/fhir/{rtype}"}
        declared = [i["code"] for i in resource["interaction"]]
        assert sorted(declared) == sorted([*urls, "create", "update"])  # writes: tests/api/test_write.py
        for code in urls:
            assert (await client.get(urls[code])).status_code == 200, (rtype, code)
        for method in ("DELETE", "PATCH"):  # not declared, not served
            assert (await client.request(method, f"/fhir/{rtype}/{rid}")).status_code == 405


async def test_declared_search_params_are_accepted_and_others_rejected(
    client: httpx.AsyncClient, statement: dict
) -> None:
    for resource in statement["rest"][0]["resource"]:
        rtype = resource["type"]
        names = [p["name"] for p in resource["searchParam"]]
        assert len(names) == len(set(names))
        for param in resource["searchParam"]:
            assert param["type"] in SAMPLE_VALUES
            query = {param["name"]: SAMPLE_VALUES[param["type"]]}
            response = await client.get(f"/fhir/{rtype}", params=query)
            assert response.status_code == 200, (rtype, param["name"], response.text)
        for include in resource.get("searchInclude", []):
            response = await client.get(f"/fhir/{rtype}", params={"_include": include})
            assert response.status_code == 200, (rtype, include)
        candidates = ("name", "status", "code", "patient", "date", "family")
        undeclared = next(n for n in candidates if n not in names)
        rejected = await client.get(f"/fhir/{rtype}", params={undeclared: "x"})
        assert rejected.status_code == 400, (rtype, undeclared)
        wrong_include = await client.get(f"/fhir/{rtype}", params={"_include": f"{rtype}:{undeclared}"})
        assert wrong_include.status_code == 400


async def test_chains_are_documented_where_supported(client: httpx.AsyncClient, statement: dict) -> None:
    for resource in statement["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            query = {f"{param['name']}.identifier": "x"}
            chained = await client.get(f"/fhir/{resource['type']}", params=query)
            documented = "patient.identifier" in param["documentation"]
            assert (chained.status_code == 200) == documented, (resource["type"], param["name"])


async def test_documented_modifiers_are_accepted(client: httpx.AsyncClient, statement: dict) -> None:
    for resource in statement["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            documented = re.search(r"Modifiers (.*)\.$", param["documentation"])
            modifiers = re.findall(r":([\w\[\]]+)", documented.group(1)) if documented else []
            for modifier in modifiers:
                target = re.search(r"references a (\w+)", param["documentation"])
                name = f"{param['name']}:{(target.group(1) if target else 'Patient') if modifier == '[type]' else modifier}"
                value = {"missing": "true", "[type]": "x"}.get(modifier, SAMPLE_VALUES[param["type"]])
                response = await client.get(f"/fhir/{resource['type']}", params={name: value})
                assert response.status_code == 200, (resource["type"], name, response.text)
            rejected = await client.get(f"/fhir/{resource['type']}", params={f"{param['name']}:fuzzy": "x"})
            assert rejected.status_code == 400
