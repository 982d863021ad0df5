"""Carethread's error tree.

Messages carry *where* (a location such as ``PID-3[2].1``) and a stable code, never *what*: no
field values, names or identifiers ever appear in an error.

    AdapterError                 .code, .location
    ├── ConfigError              start-up only: settings, mappings; the process refuses to start
    ├── InboundError             -> ACK AR, HTTP 400
    │   ├── ParseError           not valid ER7 (no MSH, broken delimiters, undecodable bytes)
    │   ├── UnsupportedMessage   no mapping for this MSH-9 -> ACK AR, issue "not-supported"
    │   └── ProcessingIdRejected MSH-11 not accepted by the configuration -> ACK AR
    ├── MappingError             understood but cannot be applied (missing PID, bad NHS number where
    │                            required, unknown code in a required field) -> ACK AE, HTTP 422
    └── StoreError               the store failed; the sender should retry -> ACK AE, HTTP 503
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AdapterError",
    "ConfigError",
    "ErrorCode",
    "InboundError",
    "MappingError",
    "ParseError",
    "ProcessingIdRejected",
    "StoreError",
    "UnsupportedMessage",
]

ErrorCode = Literal[
    "config-invalid",
    "empty-message",
    "not-hl7v2",
    "bad-encoding",
    "message-too-large",
    "bad-msh",
    "unsupported-version",
    "unsupported-event",
    "processing-id-rejected",
    "missing-segment",
    "missing-field",
    "invalid-nhs-number",
    "invalid-date",
    "unmapped-code",
    "invalid-resource",
    "store-failure",
    "version-conflict",
    "internal-error",
    # tabular exports (health visiting) and FHIR bundles (GP)
    "unknown-file",
    "malformed-header",
    "malformed-row",
    "unknown-person",
    "invalid-json",
    "not-a-bundle",
    "no-patient",
    "missing-resource",
    "unsupported-resource",
]


class AdapterError(Exception):
    """Base of every error Carethread raises on purpose."""

    code: ErrorCode = "internal-error"

    def __init__(self, message: str, *, code: ErrorCode | None = None, location: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.location = location

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(AdapterError):
    code: ErrorCode = "config-invalid"


class InboundError(AdapterError):
    """The payload cannot be processed at all (ACK AR)."""


class ParseError(InboundError):
    code: ErrorCode = "not-hl7v2"


class UnsupportedMessage(InboundError):
    code: ErrorCode = "unsupported-event"


class ProcessingIdRejected(InboundError):
    code: ErrorCode = "processing-id-rejected"


class MappingError(AdapterError):
    """The message is understood but cannot be applied (ACK AE)."""

    code: ErrorCode = "missing-field"


class StoreError(AdapterError):
    code: ErrorCode = "store-failure"
