"""Build synthetic HL7 v2 messages by field number, so tests never miscount pipes."""

from __future__ import annotations

import itertools

__all__ = ["seg", "msh", "message", "next_control_id"]

_ids = itertools.count(1)


def next_control_id(prefix: str = "T") -> str:
    return f"{prefix}{next(_ids):06d}"


def seg(name: str, fields: dict[int, str]) -> str:
    values = [""] * max(fields)
    for n, v in fields.items():
        values[n - 1] = v
    return "|".join([name, *values])


def msh(event: str, control_id: str, *, ts: str = "20260301091500", version: str = "2.4", processing: str = "P",
        sender: str = "MATEPR", facility: str = "RX1") -> str:
    return f"MSH|^~\\&|{sender}|{facility}|CARETHREAD|CARETHREAD|{ts}||{event}|{control_id}|{processing}|{version}"


def message(event: str, *segments: str, control_id: str | None = None, eol: str = "\r", **kw: str) -> bytes:
    return (eol.join([msh(event, control_id or next_control_id(), **kw), *segments]) + eol).encode()
