"""The maternity feed's entry point, kept where the pipeline imports it from.

The mapping itself is data: ``mappings/hl7v2/messages/<TYPE>_<TRIGGER>.yaml`` says which resources each
event yields, ``mappings/hl7v2/resources/`` how each is made; :mod:`adapter.mapping.engine` runs them.
"""

from __future__ import annotations

from adapter.mapping.engine import MappedMessage, MappingTrace, map_message

__all__ = ["MappedMessage", "MappingTrace", "map_message"]
