"""Run-time state of one mapping run: the scope a compiled spec reads, and the items ``each:`` yields.

Shared by the path readers (paths.py), the compiler (compiler.py, codegen.py) and the interpreter
(engine.py).  Slots everywhere: these objects are made per message and per repetition on the ingest
hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.inbound.er7 import Delimiters, Segment, unescape

__all__ = ["MISSING", "Frame", "Scope", "Hl7Item", "ValueItem", "JsonItem"]

MISSING: Any = object()


class Frame:
    """The variables of one mapping file as it runs (resource, datatype): computed on first use."""

    __slots__ = ("vars", "fns", "base", "own_id")

    def __init__(self, values: dict[str, Any], fns: dict[str, Callable[[Scope], Any]], base: Scope | None,
                 own_id: str | None = None) -> None:
        self.vars = values
        self.fns = fns
        self.base = base  # the scope the file's vars are evaluated in
        self.own_id = own_id


class Scope:
    """What a compiled spec reads: the current segment and item, the group's segments, the file's
    frame, the resources produced so far (by entry name) and the run (context, warnings, trace)."""

    __slots__ = ("run", "seg", "segs", "item", "frame", "named", "record")

    def __init__(self, run: Any, seg: Segment | None, segs: dict[str, list[Segment]], item: Any,
                 frame: Frame | None, named: dict[str, dict[str, Any]], record: Any = None) -> None:
        self.run = run
        self.seg = seg
        self.segs = segs
        self.item = item
        self.frame = frame
        self.named = named
        self.record = record  # a tabular row (dict) or a JSON object

    def with_item(self, item: Any, seg: Segment | None = None) -> Scope:
        return Scope(self.run, seg or self.seg, self.segs, item, self.frame, self.named, self.record)


class Hl7Item:
    """One repetition of an HL7 field: ``get(c, s)`` reads component c, sub-component s, decoded and
    trimmed (None when empty), exactly as Segment.value() would."""

    __slots__ = ("seg", "n", "rep", "raw", "d", "_comps")

    def __init__(self, seg: Segment, n: int, rep: int, raw: str, d: Delimiters) -> None:
        self.seg = seg
        self.n = n
        self.rep = rep
        self.raw = raw
        self.d = d
        self._comps: list[str] | None = None

    def get(self, comp: int, sub: int) -> str | None:
        comps = self._comps
        if comps is None:
            comps = self._comps = self.raw.split(self.d.component)
        if comp > len(comps):
            return None
        text = comps[comp - 1]
        d = self.d
        if sub > 1 or d.subcomponent in text:
            parts = text.split(d.subcomponent)
            text = parts[sub - 1] if sub <= len(parts) else ""
        if d.escape in text:
            text = unescape(text, d)
        return text.strip() or None

    def value(self) -> str | None:
        return self.get(1, 1)

    def present(self) -> bool:
        return bool(self.raw.strip())

    @property
    def location(self) -> str:
        return f"{self.seg.name}-{self.n}[{self.rep}]" if self.rep > 1 else f"{self.seg.name}-{self.n}"


class ValueItem:
    """An item that is a plain value (a list element of a variable, a tabular cell)."""

    __slots__ = ("v", "location")

    def __init__(self, v: Any, location: str | None = None) -> None:
        self.v = v
        self.location = location

    def get(self, comp: int, sub: int) -> Any:
        return self.v if comp == 1 and sub == 1 else None

    def value(self) -> Any:
        return self.v

    def present(self) -> bool:
        return self.v is not None and self.v != ""


class JsonItem:
    """An element of a JSON array (or the record itself): relative paths are ``.`` or ``./a/b``."""

    __slots__ = ("v", "location")

    def __init__(self, v: Any, location: str) -> None:
        self.v = v
        self.location = location

    def get(self, comp: int, sub: int) -> Any:
        return self.v if comp == 1 and sub == 1 and not isinstance(self.v, (dict, list)) else None

    def value(self) -> Any:
        return self.v

    def present(self) -> bool:
        return self.v not in (None, "", [], {})
