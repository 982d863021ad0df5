"""Mapping: source records -> FHIR R4 resources, driven by the mapping files under mappings/.

    load_mappings(shipped, overlay) -> MappingSet      once, at start-up (ConfigError names file:line)
    map_message(msg, header, ctx) -> MappedMessage     one HL7 v2 message (ctx.mappings: the set)
    map_record(mset, feed, record, ctx)                one tabular row / JSON object
"""

from __future__ import annotations

from adapter.mapping.compiler import MappingSet
from adapter.mapping.engine import MappedMessage, MappingContext, MappingTrace, map_message, map_record
from adapter.mapping.loader import load_mappings

__all__ = ["MappingSet", "MappingContext", "MappedMessage", "MappingTrace", "load_mappings", "map_message",
           "map_record"]
