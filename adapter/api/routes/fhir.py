"""The FHIR REST API, reading side: metadata, read, vread, history, search (writes: ``write.py``).

Endpoints are plain ``def``s: FastAPI runs them in its threadpool, so the blocking store calls never hold up
the event loop (which the MLLP listener shares). Errors are raised as ``ApiError`` / ``SearchParamError`` and
rendered as OperationOutcomes by the handlers ``create_app`` registers.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request

from adapter.api.outcomes import ApiError, FhirJSONResponse, issue, outcome_resource
from adapter.api.routes import StoreDep
from adapter.api.routes.metadata import RESOURCE_TYPES, capability_statement
from adapter.store.base import SearchResult, Store, StoredResource
from adapter.store.query import DEFAULT_COUNT, SearchParamError, parse_search

__all__ = ["FHIR_PREFIX", "check_id", "check_type", "fhir_base", "negotiate", "router"]

FHIR_PREFIX = "/fhir"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
_JSON_MEDIA_RANGES = _JSON_FORMATS - {"json"} | {"*/*", "application/*"}
_PAGING = ("_count", "_offset")


def fhir_base(request: Request) -> str:
    """The absolute FHIR base URL of this request (honours the ASGI root_path)."""
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


def _check_format(value: str) -> None:
    if value.split(";")[0].strip().lower() not in _JSON_FORMATS:
        raise ApiError(406, "not-supported", "Only JSON is supported (_format json or application/fhir+json)",
                       "_format")


def _is_zero_q(param: str) -> bool:
    name, _, value = param.partition("=")
    try:
        return name.strip() == "q" and float(value) == 0
    except ValueError:
        return False


def negotiate(request: Request) -> None:
    """406 unless the client accepts JSON: ``_format`` wins over ``Accept``."""
    formats = request.query_params.getlist("_format")
    for value in formats:
        _check_format(value)
    accept = request.headers.get("accept")
    if formats or not accept:
        return
    for media_range in accept.split(","):
        media_type, *params = (part.strip().lower() for part in media_range.split(";"))
        if media_type in _JSON_MEDIA_RANGES and not any(_is_zero_q(p) for p in params):
            return
    raise ApiError(406, "not-supported", "Only JSON is supported (Accept application/fhir+json)")


router = APIRouter(dependencies=[Depends(negotiate)], default_response_class=FhirJSONResponse, tags=["FHIR"])


def check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:  # not echoed: a path segment may hold anything
        raise ApiError(404, "not-supported", "Resource type not supported by this server")


def check_id(resource_id: str) -> None:
    if not _ID.fullmatch(resource_id):
        raise ApiError(400, "invalid", "Invalid resource id (1-64 of A-Z a-z 0-9 - .)")


def _http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant), usegmt=True)


def _resource_response(stored: StoredResource) -> FhirJSONResponse:
    return FhirJSONResponse(
        stored.resource,
        headers={"ETag": f'W/"{stored.version_id}"', "Last-Modified": _http_date(stored.last_updated)},
    )


def _not_found(resource_type: str) -> ApiError:
    return ApiError(404, "not-found", f"{resource_type} not found")


@router.get("/metadata")
def metadata(request: Request) -> FhirJSONResponse:
    return FhirJSONResponse(capability_statement(fhir_base(request), title=request.app.title))


@router.get("/{resource_type}/{resource_id}")
def read(resource_type: str, resource_id: str, store: StoreDep) -> FhirJSONResponse:
    check_type(resource_type)
    check_id(resource_id)
    stored = store.read(resource_type, resource_id)
    if stored is None:
        raise _not_found(resource_type)
    return _resource_response(stored)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(resource_type: str, resource_id: str, version_id: str, store: StoreDep) -> FhirJSONResponse:
    check_type(resource_type)
    check_id(resource_id)
    if not (version_id.isascii() and version_id.isdigit()) or len(version_id) > 18:
        raise ApiError(400, "invalid", "Invalid version id (a positive integer)")
    stored = store.vread(resource_type, resource_id, int(version_id))
    if stored is None:
        if store.read(resource_type, resource_id) is None:
            raise _not_found(resource_type)
        raise ApiError(404, "not-found", f"{resource_type} version not found")
    return _resource_response(stored)


@router.get("/{resource_type}/{resource_id}/_history")
def history(resource_type: str, resource_id: str, request: Request, store: StoreDep) -> FhirJSONResponse:
    check_type(resource_type)
    check_id(resource_id)
    versions = store.history(resource_type, resource_id)
    if not versions:
        raise _not_found(resource_type)
    base = fhir_base(request)
    entries = []
    for stored in versions:
        created = stored.version_id == 1
        entries.append({
            "fullUrl": f"{base}/{resource_type}/{resource_id}",
            "resource": stored.resource,
            "request": {"method": "POST" if created else "PUT",
                        "url": resource_type if created else f"{resource_type}/{resource_id}"},
            "response": {"status": "201 Created" if created else "200 OK", "etag": f'W/"{stored.version_id}"',
                         "lastModified": stored.last_updated},
        })
    return FhirJSONResponse({
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": f"{base}/{resource_type}/{resource_id}/_history"}],
        "entry": entries,
    })


@router.get("/{resource_type}")
def search(resource_type: str, request: Request, store: StoreDep) -> FhirJSONResponse:
    return _search(request, store, resource_type, list(request.query_params.multi_items()))


async def form_params(request: Request) -> list[tuple[str, str]]:
    """The parameters in a POST _search body (application/x-www-form-urlencoded)."""
    body = await request.body()
    if not body:
        return []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "not-supported", "POST _search takes an application/x-www-form-urlencoded body")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid", "The form body could not be read") from None


@router.post("/{resource_type}/_search")
def search_post(
    resource_type: str, request: Request, store: StoreDep,
    form: Annotated[list[tuple[str, str]], Depends(form_params)],
) -> FhirJSONResponse:
    return _search(request, store, resource_type, [*request.query_params.multi_items(), *form])


def _prefers_lenient(request: Request) -> bool:
    headers = request.headers.getlist("prefer")
    return "handling=lenient" in {p.strip().lower() for header in headers for p in re.split("[,;]", header)}


def _search(
    request: Request, store: Store, resource_type: str, params: list[tuple[str, str]]
) -> FhirJSONResponse:
    check_type(resource_type)
    formats = [(k, v) for k, v in params if k == "_format"]
    for _, value in formats:  # a POST body may carry _format too
        _check_format(value)
    query = parse_search(resource_type, [(k, v) for k, v in params if k != "_format"],
                         lenient=_prefers_lenient(request))
    count = DEFAULT_COUNT if query.count is None else query.count
    offset = query.offset or 0
    criteria = [(k, v) for k, v in query.used if k not in _PAGING]
    result = store.search(resource_type, criteria, count=count, offset=offset)
    page = _Page(fhir_base(request), resource_type, [*criteria, *formats], count, offset)
    return FhirJSONResponse(_searchset(page, query.issues, result))


@dataclass(frozen=True, slots=True)
class _Page:
    base: str  # FHIR base URL
    resource_type: str
    kept: list[tuple[str, str]]  # the parameters every link repeats
    count: int
    offset: int

    def link(self, relation: str, offset: int) -> dict[str, str]:
        pairs = [*self.kept, ("_count", str(self.count)), ("_offset", str(offset))]
        return {"relation": relation, "url": f"{self.base}/{self.resource_type}?{urlencode(pairs)}"}


def _searchset(page: _Page, issues: tuple[SearchParamError, ...], result: SearchResult) -> dict[str, Any]:
    count, offset, base = page.count, page.offset, page.base
    link = page.link

    links = [link("self", offset)]
    if count and offset + count < result.total:
        links.append(link("next", offset + count))
    if count and offset > 0:
        links.append(link("previous", max(offset - count, 0)))

    def entry(stored: StoredResource, mode: str) -> dict[str, Any]:
        resource = stored.resource
        return {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource,
                "search": {"mode": mode}}

    entries = [entry(s, "match") for s in result.matches] + [entry(s, "include") for s in result.included]
    if issues:
        outcome = outcome_resource(*(issue(e.code, f"Ignored: {e}", e.param, "warning") for e in issues))
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": outcome,
                        "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": result.total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle
