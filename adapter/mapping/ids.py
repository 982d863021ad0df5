"""Deterministic resource ids: uuid5 over the source and the business key, so the same message
always yields the same ids and a resend updates instead of duplicating."""

from __future__ import annotations

import uuid

__all__ = ["resource_id"]

_NAMESPACE = uuid.UUID("5b0f6c1e-2f7c-4c55-9d0e-6a1f0c2d7a11")  # Carethread's, fixed forever


def resource_id(source: str, resource_type: str, *key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((source, resource_type, *key))))
