"""OperationOutcome responses, and which error becomes which HTTP status.

Every non-2xx body the FHIR API sends is an OperationOutcome built here. Diagnostics say *what kind* of
problem and *where* (a parameter name), never a value from the request or the data: no identifiers, names
or dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi.responses import JSONResponse

from adapter.errors import AdapterError, ConfigError, InboundError, MappingError, StoreError
from adapter.store.query import SearchParamError

__all__ = [
    "FHIR_JSON",
    "ApiError",
    "FhirJSONResponse",
    "IssueSeverity",
    "error_outcome",
    "issue",
    "issue_code_for_status",
    "operation_outcome",
    "outcome_resource",
]

FHIR_JSON = "application/fhir+json"
IssueSeverity = Literal["fatal", "error", "warning", "information"]

# HTTP status -> OperationOutcome issue code, for errors raised without a more specific code
_ISSUE_CODES: dict[int, str] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}

# Adapter errors (their messages say where, never what, so they may be shown)
_ADAPTER_ERRORS: tuple[tuple[type[AdapterError], int, str], ...] = (
    (InboundError, 400, "structure"),
    (MappingError, 422, "processing"),
    (StoreError, 503, "transient"),
    (ConfigError, 500, "exception"),
)


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


class ApiError(Exception):
    """Raised by a route to answer with an OperationOutcome. ``diagnostics`` must hold no patient data."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        expression: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.headers = dict(headers or {})


def issue_code_for_status(status: int) -> str:
    return _ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")


def issue(
    code: str, diagnostics: str, expression: str | None = None, severity: IssueSeverity = "error"
) -> dict[str, Any]:
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression is not None:
        entry["expression"] = [expression]
    return entry


def outcome_resource(*issues: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def operation_outcome(
    status: int,
    code: str,
    diagnostics: str,
    expression: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A response whose body is an OperationOutcome with one error issue."""
    return FhirJSONResponse(
        outcome_resource(issue(code, diagnostics, expression)), status_code=status, headers=headers
    )


def error_outcome(exc: Exception) -> JSONResponse:
    """The response for an exception that reached the API: its status and issue code, and no internals."""
    if isinstance(exc, ApiError):
        return operation_outcome(exc.status, exc.code, exc.diagnostics, exc.expression, headers=exc.headers)
    if isinstance(exc, SearchParamError):
        return operation_outcome(400, exc.code, str(exc), exc.param)
    if isinstance(exc, AdapterError):
        for cls, status, code in _ADAPTER_ERRORS:
            if isinstance(exc, cls):
                if status >= 500:
                    return operation_outcome(status, code, "The request could not be completed; retry later")
                return operation_outcome(status, code, exc.message, exc.location)
    return operation_outcome(500, "exception", "Internal server error")
