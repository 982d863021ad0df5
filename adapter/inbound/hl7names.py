"""Human names for HL7 v2 locations, from hl7apy's version-aware structure tables.

Used only on the error path (ERR-8 user messages, OperationOutcome diagnostics), so hl7apy's cost
never touches the ingest hot path; results are cached per (location, version).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from hl7apy.core import Component, Field
from hl7apy.exceptions import HL7apyException

from adapter.inbound.er7 import parse_location

__all__ = ["describe_location"]

_log = logging.getLogger("carethread.hl7names")


def _title(name: str | None) -> str:
    return name.replace("_", " ").title() if name else ""


@lru_cache(maxsize=2048)
def describe_location(location: str | None, version: str = "2.4") -> str:
    """``PID-3.4`` -> ``PID-3.4 (Patient Identifier List / Assigning Authority)``; unknown parts are left out."""
    if not location:
        return ""
    try:
        seg, field, _rep, comp, _sub = parse_location(location)
    except ValueError:
        return location
    hl7apy_version = version if version in _HL7APY_VERSIONS else "2.5"
    try:
        f = Field(f"{seg}_{field}", version=hl7apy_version)
        parts = [_title(f.long_name)]
        if "." in location and f.datatype and len(f.datatype) <= 3:
            try:
                parts.append(_title(Component(f"{f.datatype}_{comp}", version=hl7apy_version).long_name))
            except HL7apyException:
                pass
    except HL7apyException:
        return location  # Z-segments and fields the version does not define
    names = " / ".join(p for p in parts if p)
    return f"{location} ({names})" if names else location


_HL7APY_VERSIONS = frozenset({"2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"})
