"""``create_app(store)``: the FastAPI application. It wires things together and holds no logic of its own.

    app = create_app(SqliteStore(path), routers=[hl7v2.router], lifespan=lifespan)

The FHIR router is mounted at ``/fhir``; extra routers are included as given (they carry their own prefix)
and before it, so that an extra route under ``/fhir`` (an operation, say) wins over ``/fhir/{type}/{id}``.
Under ``/fhir`` every error, including an unknown path or a wrong method, is an OperationOutcome; elsewhere
FastAPI's own error bodies are kept, except that any unhandled exception or ``AdapterError`` becomes an
OperationOutcome everywhere, with no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Lifespan

from adapter.api.outcomes import ApiError, error_outcome, issue_code_for_status, operation_outcome
from adapter.api.routes import fhir, write
from adapter.errors import AdapterError
from adapter.store.base import Store
from adapter.store.query import SearchParamError

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_HTTP_DIAGNOSTICS = {
    404: "No such endpoint",
    405: "This interaction is not supported in this version",
}


def _is_fhir(request: Request) -> bool:
    path: str = request.scope.get("path", "")
    return path == fhir.FHIR_PREFIX or path.startswith(fhir.FHIR_PREFIX + "/")


async def _on_error(request: Request, exc: Exception) -> Response:
    return error_outcome(exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_fhir(request):
        return await http_exception_handler(request, exc)
    diagnostics = _HTTP_DIAGNOSTICS.get(exc.status_code, f"HTTP {exc.status_code}")
    return operation_outcome(exc.status_code, issue_code_for_status(exc.status_code), diagnostics,
                             headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_fhir(request):
        return await request_validation_exception_handler(request, exc)
    # FastAPI's error list echoes the input: report only where the problem is
    where = ".".join(str(part) for part in exc.errors()[0].get("loc", ())) if exc.errors() else None
    return operation_outcome(400, "invalid", "The request is not valid", where or None)


async def _on_unhandled(request: Request, exc: Exception) -> Response:
    log.error("unhandled %s in %s %s", type(exc).__name__, request.method,
              getattr(request.scope.get("route"), "path", "(no route)"))
    return error_outcome(exc)


def create_app(
    store: Store,
    *,
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan[FastAPI] | None = None,
    title: str = "Carethread",
    validate_resource: write.ResourceValidator = write.r4_structure_issues,
) -> FastAPI:
    """The application serving ``store``. The caller owns the store: it opens and closes it.

    ``validate_resource`` checks every resource a client creates or updates (default: FHIR R4 structure)."""
    app = FastAPI(title=title, lifespan=lifespan)
    app.state.store = store
    app.state.validate_resource = validate_resource
    for router in routers:  # first: a deliberate route under /fhir is not shadowed by /fhir/{type}/{id}
        app.include_router(router)
    app.include_router(fhir.router, prefix=fhir.FHIR_PREFIX)
    app.include_router(write.router, prefix=fhir.FHIR_PREFIX)
    for exc_class in (ApiError, SearchParamError, AdapterError):
        app.add_exception_handler(exc_class, _on_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unhandled)
    return app
