"""FHIR create (``POST /fhir/{type}``) and update (``PUT /fhir/{type}/{id}``), validated before storing.

A resource that fails validation is refused with 422 and an OperationOutcome listing every issue
with its FHIRPath location; nothing is stored.  Every request body, accepted or refused, is archived
(channel ``http``, source ``api``) in the same transaction as what it produced, as HL7 v2 messages
are.  ``If-Match: W/"<version>"`` makes an update conditional (412 when stale).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from adapter.api.outcomes import ApiError, FhirJSONResponse, issue, outcome_resource
from adapter.api.routes import get_store
from adapter.api.routes.fhir import check_id, check_type, fhir_base
from adapter.errors import MappingError
from adapter.fhir import CT, validate_r4
from adapter.notify import subscriptions
from adapter.store.base import Store, StoredResource

__all__ = ["ResourceValidator", "r4_structure_issues", "router"]

# resource -> OperationOutcome issue dicts (severity, code, diagnostics, expression); errors refuse the write
ResourceValidator = Callable[[dict[str, Any]], list[dict[str, Any]]]
API_SOURCE = f"{CT}/source/api"

router = APIRouter(tags=["fhir"])


def r4_structure_issues(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The default validator: FHIR R4 structure (fhir.resources R4B)."""
    try:
        validate_r4(resource)
    except MappingError as exc:
        return [issue("structure", exc.message, exc.location)]
    return []


def _validator(request: Request) -> ResourceValidator:
    validator: ResourceValidator = request.app.state.validate_resource  # set by create_app
    return validator


def _parse_body(body: bytes, resource_type: str, resource_id: str | None) -> dict[str, Any]:
    try:
        resource = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "structure", "The body is not valid JSON") from None
    if not isinstance(resource, dict):
        raise ApiError(400, "structure", "The body is not a FHIR resource (JSON object)")
    if resource.get("resourceType") != resource_type:
        raise ApiError(400, "invalid", "resourceType does not match the URL", "resourceType")
    if resource_id is not None and resource.get("id") != resource_id:
        raise ApiError(400, "invalid", "id in the body does not match the URL", f"{resource_type}.id")
    return resource


def _expected_version(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise ApiError(400, "invalid", 'If-Match must be a version ETag such as W/"3"')
    return int(tag)


def _write(store: Store, body: bytes, resource: dict[str, Any], issues: list[dict[str, Any]],
           expected: int | None) -> tuple[str, StoredResource | None]:
    """Archive the body and, if it is valid and the version matches, store it, in one transaction.

    Returns ("invalid" | "conflict" | "created" | "updated", stored)."""
    with store.transaction() as tx:
        archive_id = tx.archive(channel="http", source="api", sender=None, control_id=None, payload=body)
        errors = [i for i in issues if i["severity"] in ("error", "fatal")]
        if errors:
            tx.set_status(archive_id, "AE", error_code="invalid-resource",
                          error_location=(errors[0].get("expression") or [None])[0])
            return "invalid", None
        current = tx.read(resource["resourceType"], resource["id"])
        if expected is not None and (current is None or current.version_id != expected):
            tx.set_status(archive_id, "AE", error_code="version-conflict")
            return "conflict", None
        stored, _changed = tx.put(resource)
        tx.set_status(archive_id, "AA")
        return ("created" if current is None else "updated"), stored


def _server_rules(store: Store, resource: dict[str, Any]) -> list[dict[str, Any]]:
    """What the server itself decides on a write, before validation: a Subscription is checked for what
    Carethread can deliver and activated (``requested`` -> ``active``; adapter.notify.subscriptions)."""
    if resource["resourceType"] != "Subscription":
        return []
    current = store.read("Subscription", resource["id"])
    return subscriptions.accept(resource, current.resource if current else None)


async def _handle(request: Request, resource_type: str, resource_id: str | None) -> FhirJSONResponse:
    check_type(resource_type)
    if resource_id is not None:
        check_id(resource_id)
    body = await request.body()
    resource = _parse_body(body, resource_type, resource_id)
    if resource_id is None:
        resource["id"] = str(uuid.uuid4())  # create: the server assigns the id
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    resource["meta"] = {**meta, "source": meta.get("source", API_SOURCE)}
    expected = _expected_version(request)
    issues = await run_in_threadpool(_server_rules, get_store(request), resource)
    issues += await run_in_threadpool(_validator(request), resource)
    result, stored = await run_in_threadpool(_write, get_store(request), body, resource, issues, expected)
    if result == "invalid":
        return FhirJSONResponse(outcome_resource(*issues), status_code=422)
    if result == "conflict" or stored is None:
        raise ApiError(412, "conflict", "The resource has changed since the version in If-Match")
    location = f"{fhir_base(request)}/{resource_type}/{stored.resource['id']}/_history/{stored.version_id}"
    return FhirJSONResponse(stored.resource, status_code=201 if result == "created" else 200,
                            headers={"Location": location, "ETag": f'W/"{stored.version_id}"'})


@router.post("/{resource_type}", status_code=201, summary="create: validated against the profiles, then stored")
async def create(resource_type: str, request: Request) -> FhirJSONResponse:
    return await _handle(request, resource_type, None)


@router.put("/{resource_type}/{resource_id}", summary="update (or create with this id): validated, then stored")
async def update(resource_type: str, resource_id: str, request: Request) -> FhirJSONResponse:
    return await _handle(request, resource_type, resource_id)
