"""Kept where the pipeline imports ``MappingContext`` from; the segment mappings are now data
(``mappings/hl7v2/resources/``), run by :mod:`adapter.mapping.engine`."""

from __future__ import annotations

from adapter.mapping.engine import MappingContext

__all__ = ["MappingContext"]
