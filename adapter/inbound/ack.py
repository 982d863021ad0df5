"""Outcome -> HL7 v2 ACK (AA / AE / AR with ERR segments).  Never raises.

ERR follows the message's version: v2.3/2.4 use ERR-1 (ELD: segment^sequence^field^code), v2.5 and
later use ERR-2 (ERL location), ERR-3 (HL7 table 0357 code), ERR-4 (severity) and ERR-8 (user
message).  Locations and codes only; never a value from the message.

The ACK is built by hand rather than with hl7apy: it is on the MLLP hot path (hl7apy needs ~1.5 ms
per ACK here) and its structure is three segments.  Tests parse every ACK with hl7apy to check it.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

from adapter.errors import ErrorCode
from adapter.inbound.er7 import Delimiters, escape, parse_location
from adapter.inbound.hl7names import describe_location
from adapter.inbound.hl7v2 import Header
from adapter.records import AckCode, Issue, Outcome

__all__ = ["build_ack", "HL7_ERROR_CODES"]

_D = Delimiters()
_counter = itertools.count(1)

# Stable error code -> HL7 table 0357 (message error condition codes).
HL7_ERROR_CODES: dict[ErrorCode, tuple[str, str]] = {
    "empty-message": ("100", "Segment sequence error"),
    "not-hl7v2": ("100", "Segment sequence error"),
    "bad-msh": ("102", "Data type error"),
    "bad-encoding": ("102", "Data type error"),
    "message-too-large": ("102", "Data type error"),
    "unsupported-version": ("203", "Unsupported version id"),
    "unsupported-event": ("201", "Unsupported event code"),
    "processing-id-rejected": ("202", "Unsupported processing id"),
    "missing-segment": ("100", "Segment sequence error"),
    "missing-field": ("101", "Required field missing"),
    "invalid-nhs-number": ("102", "Data type error"),
    "invalid-date": ("102", "Data type error"),
    "unmapped-code": ("103", "Table value not found"),
    "invalid-resource": ("207", "Application internal error"),
    "store-failure": ("207", "Application internal error"),
    "version-conflict": ("207", "Application internal error"),
    "internal-error": ("207", "Application internal error"),
    "config-invalid": ("207", "Application internal error"),
}


def _ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def _location_parts(location: str | None) -> tuple[str, str, str, str, str, str] | None:
    if not location:
        return None
    if len(location) == 3 and location.isalnum() and location.isupper():  # a whole segment, e.g. "PID"
        return (location, "1", "", "", "", "")
    try:
        seg, field, rep, comp, sub = parse_location(location)
    except ValueError:
        return None
    has_comp = "." in location
    return (seg, "1", str(field), str(rep), str(comp) if has_comp else "", str(sub) if location.count(".") > 1 else "")


def _before_2_5(version: str) -> bool:
    """ERR-1 (ELD) for v2.4 and earlier, or an unreadable version; ERR-2..8 from v2.5."""
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) < (2, 5)


def _err_segment(issue: Issue, version: str) -> str:
    code, text = HL7_ERROR_CODES.get(issue.code, ("207", "Application internal error"))
    parts = _location_parts(issue.location)
    user_message = issue.message
    if issue.location:
        user_message = f"{describe_location(issue.location, version)}: {issue.message}"
    user_message = escape(f"[{issue.code}] {user_message}", _D)
    if _before_2_5(version):
        # ERR-1 ELD: segment id ^ sequence ^ field position ^ code (CE as sub-components)
        seg, seq, field = (parts[0], parts[1], parts[2]) if parts else ("", "", "")
        eld = f"{seg}^{seq}^{field}^{code}&{text}&HL70357"
        return f"ERR|{eld}"
    erl = "^".join(p for p in parts) if parts else ""
    erl = erl.rstrip("^")
    return f"ERR||{erl}|{code}^{text}^HL70357|{issue.severity}||||{user_message}"


def build_ack(outcome: Outcome, header: Header | None) -> bytes:
    """The ACK for an outcome; ``header`` is None when the MSH itself could not be read."""
    code: AckCode = outcome.ack_code or "AR"
    if header is not None:
        version = header.version or "2.4"
        trigger = header.trigger
        processing = header.processing_id or "P"
        sending_app, sending_fac = header.receiving_app or "CARETHREAD", header.receiving_facility
        receiving_app, receiving_fac = header.sending_app, header.sending_facility
        control = header.control_id
    else:
        version, trigger, processing = "2.4", "", "P"
        sending_app, sending_fac, receiving_app, receiving_fac, control = "CARETHREAD", "", "", "", ""
    e = lambda s: escape(s, _D)  # noqa: E731 - header values are echoed back escaped
    ack_id = f"CT{int(time.time() * 1000)}{next(_counter):06d}"
    msh = "|".join(
        [
            "MSH", "^~\\&", e(sending_app), e(sending_fac), e(receiving_app), e(receiving_fac), _ts(), "",
            f"ACK^{e(trigger)}^ACK" if trigger else "ACK", ack_id, e(processing), e(version),
        ]
    )
    errors = [i for i in outcome.issues]
    text = ""
    if code != "AA" and errors:
        text = e(errors[0].message)[:80]
    msa = f"MSA|{code}|{e(control)}" + (f"|{text}" if text else "")
    segments = [msh, msa]
    segments.extend(_err_segment(i, version) for i in errors)
    return ("\r".join(segments) + "\r").encode("utf-8")
