"""Deterministic resource ids: uuid5 over the source and the business key, so the same message
always yields the same ids and a resend updates instead of duplicating."""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["resource_id"]

_NAMESPACE = uuid.UUID("5b0f6c1e-2f7c-4c55-9d0e-6a1f0c2d7a11")  # Carethread's, fixed forever
_NS_BYTES = _NAMESPACE.bytes


def resource_id(source: str, resource_type: str, *key: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, computed without building UUID objects (hot path)."""
    digest = bytearray(hashlib.sha1(_NS_BYTES + "\x1f".join((source, resource_type, *key)).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
