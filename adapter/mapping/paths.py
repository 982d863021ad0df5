"""Source paths: parsed and checked at load, compiled to small reader functions.

    PID-3  PID-3.4.1  PID-3[2].1  PV1        HL7 v2 (dash notation; 1-based).  The segment is the scope's
                                             own if the names match, else the first of that name in the
                                             group (A40: the PID group), else in the message (MSH, EVN).
    .1  .4.1  .                              relative to the item of `each:` / `use:` (a repetition)
    column:nhs_no                            a tabular row's column (CSV header / JSON key of a flat row)
    /name/0/family  ./given                  JSON pointer (RFC 6901), from the record or the item
    $var  $var.code  $id                     a variable of this file (or a param); $id: the resource's id
    @patient  @patient.birthDate             the id (or a top-level element) of another entry's resource
    ctx:source  ctx:now                      the feed name; the time of mapping (UTC)
    ctx:control_id                           the record's control id (MSH-10; a tabular row's hash)
    scope:line  scope:location               the scope segment's line; the item's location (PID-3[2])

A reader returns a value or None (absent).  Text is trimmed; empty text is absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from adapter.inbound.er7 import Delimiters, Segment, unescape
from adapter.mapping.runtime import MISSING, Hl7Item, JsonItem, Scope, ValueItem

__all__ = ["PathRef", "PathError", "parse_path", "reader", "item_reader", "each_reader", "static_location",
           "location_reader", "SOURCE_KINDS"]

Reader = Callable[[Scope], Any]
SourceKind = Literal["hl7v2", "tabular"]
SOURCE_KINDS: dict[str, SourceKind] = {"hl7v2": "hl7v2", "csv": "tabular", "json": "tabular"}

_HL7 = re.compile(r"^([A-Z][A-Z0-9]{2})(?:-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?)?$")
_REL = re.compile(r"^\.(?:(\d+)(?:\.(\d+))?)?$")
_VAR = re.compile(r"^\$([a-z][a-z0-9_]*)(?:\.([A-Za-z][A-Za-z0-9_]*))?$")
_RES = re.compile(r"^@([a-z][a-z0-9_]*)(?:\.([A-Za-z][A-Za-z0-9_]*))?$")
_CTX = {"ctx:source", "ctx:now", "ctx:control_id"}
_SCOPE = {"scope:line", "scope:location"}
_COLUMN = re.compile(r"^column:(\S.*)$")
_POINTER = re.compile(r"^\.?(/([^/]*))+$")


class PathError(ValueError):
    """A path that does not parse, or is not allowed where it is written."""


@dataclass(frozen=True)
class PathRef:
    text: str
    kind: Literal["hl7", "rel", "var", "res", "ctx", "scope", "column", "pointer"]
    seg: str = ""  # hl7
    field: int = 0  # hl7: 0 = the segment itself
    rep: int = 1
    comp: int = 1
    sub: int = 1
    rep_given: bool = False
    has_comp: bool = False
    name: str = ""  # var / res / ctx / scope / column
    key: str = ""  # var / res: the element after the dot
    tokens: tuple[str, ...] = ()  # pointer
    relative: bool = False  # pointer starting with ./


def parse_path(text: str, source: SourceKind) -> PathRef:
    text = str(text).strip()
    if m := _HL7.match(text):
        if source != "hl7v2":
            raise PathError(f"HL7 v2 location {text!r} in a {source} mapping")
        seg, f, r, c, s = m.groups()
        if f is None:
            return PathRef(text, "hl7", seg=seg)
        if int(f) < 1 or (r and int(r) < 1) or (c and int(c) < 1) or (s and int(s) < 1):
            raise PathError(f"{text!r}: HL7 positions start at 1")
        return PathRef(text, "hl7", seg=seg, field=int(f), rep=int(r or 1), comp=int(c or 1), sub=int(s or 1),
                       rep_given=r is not None, has_comp=c is not None)
    if m := _REL.match(text):
        return PathRef(text, "rel", comp=int(m.group(1) or 1), sub=int(m.group(2) or 1))
    if m := _VAR.match(text):
        return PathRef(text, "var", name=m.group(1), key=m.group(2) or "")
    if m := _RES.match(text):
        return PathRef(text, "res", name=m.group(1), key=m.group(2) or "")
    if text in _CTX:
        return PathRef(text, "ctx", name=text[4:])
    if text in _SCOPE:
        return PathRef(text, "scope", name=text[6:])
    if m := _COLUMN.match(text):
        if source != "tabular":
            raise PathError(f"column path {text!r} in an {source} mapping")
        return PathRef(text, "column", name=m.group(1).strip())
    if _POINTER.match(text) and source == "tabular":
        relative = text.startswith("./")
        raw = text[2:] if relative else text[1:]
        tokens = tuple(t.replace("~1", "/").replace("~0", "~") for t in raw.split("/"))
        return PathRef(text, "pointer", tokens=tokens, relative=relative)
    raise PathError(f"{text!r} is not a source path here (HL7 like PID-3[2].1, .1, $var, @name, ctx:source, "
                    "column:name or /json/pointer)")


def static_location(ref: PathRef) -> str | None:
    """The location an error at this path names, when it does not depend on the item."""
    if ref.kind == "hl7" and ref.field:
        return ref.text
    if ref.kind == "column":
        return f"column:{ref.name}"
    if ref.kind == "pointer" and not ref.relative:
        return ref.text
    return None


def location_reader(ref: PathRef, explicit: str | None) -> Callable[[Scope], str | None]:
    if explicit:
        return lambda s: explicit
    fixed = static_location(ref)
    if fixed or ref.kind != "rel":
        return lambda s: fixed
    suffix = ref.text if ref.text != "." else ""

    def rel_location(s: Scope) -> str | None:
        base = getattr(s.item, "location", None)
        return f"{base}{suffix}" if base else None
    return rel_location


def _segment(name: str) -> Callable[[Scope], Segment | None]:
    def find(s: Scope) -> Segment | None:
        seg = s.seg
        if seg is not None and seg.name == name:
            return seg
        found = s.segs.get(name)
        return found[0] if found else None
    return find


def _clean(v: Any) -> Any:
    if isinstance(v, str):
        return v.strip() or None
    if v == [] or v == {}:
        return None
    return v


def _walk(value: Any, tokens: tuple[str, ...]) -> Any:
    for t in tokens:
        if isinstance(value, dict):
            value = value.get(t)
        elif isinstance(value, list) and t.isdecimal() and int(t) < len(value):
            value = value[int(t)]
        else:
            return None
        if value is None:
            return None
    return value


def reader(ref: PathRef) -> Reader:
    """A function scope -> value | None for this path (``.ref`` on it: the parsed path)."""
    fn = _reader(ref)
    fn.ref = ref  # type: ignore[attr-defined]
    return fn


def _reader(ref: PathRef) -> Reader:  # noqa: C901 - one small closure per path kind
    if ref.kind == "hl7":
        name, n, rep, comp, sub = ref.seg, ref.field, ref.rep, ref.comp, ref.sub
        if not n:
            def has_segment(s: Scope) -> Any:
                seg = s.seg
                return True if (seg is not None and seg.name == name) or s.segs.get(name) else None
            return has_segment

        simple = rep == 1 and comp == 1 and sub == 1

        def hl7(s: Scope) -> Any:
            seg = s.seg
            if seg is None or seg.name != name:
                found = s.segs.get(name)
                if not found:
                    return None
                seg = found[0]
            fields = seg.raw_fields()
            if n >= len(fields):
                return None
            raw = fields[n]
            if not raw:
                return None
            d = s.run.delimiters
            if simple and d.component not in raw and d.repetition not in raw and d.subcomponent not in raw \
                    and d.escape not in raw:
                return raw.strip() or None
            return field_value(raw, rep, comp, sub, d).strip() or None
        return hl7
    if ref.kind == "rel":
        comp, sub = ref.comp, ref.sub

        def rel(s: Scope) -> Any:
            it = s.item
            if type(it) is not Hl7Item:
                return it.get(comp, sub) if it is not None else None
            comps = it._comps  # Hl7Item.get, inlined: the hottest read
            if comps is None:
                comps = it._comps = it.raw.split(it.d.component)
            if comp > len(comps):
                return None
            text = comps[comp - 1]
            d = it.d
            if sub > 1 or d.subcomponent in text:
                parts = text.split(d.subcomponent)
                text = parts[sub - 1] if sub <= len(parts) else ""
            if d.escape in text:
                text = unescape(text, d)
            return text.strip() or None
        return rel
    if ref.kind == "var":
        return _var_reader(ref.name, ref.key)
    if ref.kind == "res":
        name, key = ref.name, ref.key or "id"

        def res(s: Scope) -> Any:
            r = s.named.get(name)
            return None if r is None else r.get(key)
        return res
    if ref.kind == "ctx":
        if ref.name == "source":
            return lambda s: s.run.source
        if ref.name == "control_id":
            return lambda s: s.run.ctx.control_id or None
        return lambda s: s.run.now()
    if ref.kind == "scope":
        if ref.name == "line":
            return lambda s: str(s.seg.line_no) if s.seg is not None else None
        return lambda s: getattr(s.item, "location", None) or (s.seg.name if s.seg is not None else None)
    if ref.kind == "column":
        col = ref.name
        return lambda s: _clean(s.record.get(col)) if s.record is not None else None
    tokens = ref.tokens
    if ref.relative:
        return lambda s: _clean(_walk(s.item.v, tokens)) if s.item is not None else None
    return lambda s: _clean(_walk(s.record, tokens))


def field_value(raw: str, rep: int, comp: int, sub: int, d: Delimiters) -> str:
    """What Segment.value(n, rep, comp, sub) returns for a field's raw text (decoded, not trimmed)."""
    if rep == 1:
        if d.repetition in raw:
            raw = raw.split(d.repetition, 1)[0]
    else:
        reps = raw.split(d.repetition)
        if rep > len(reps):
            return ""
        raw = reps[rep - 1]
    if comp > 1 or d.component in raw:
        parts = raw.split(d.component)
        raw = parts[comp - 1] if comp <= len(parts) else ""
    if sub > 1 or d.subcomponent in raw:
        parts = raw.split(d.subcomponent)
        raw = parts[sub - 1] if sub <= len(parts) else ""
    return unescape(raw, d) if d.escape in raw else raw


def _var_reader(name: str, key: str) -> Reader:
    if name == "id":
        return lambda s: s.frame.own_id

    def var(s: Scope) -> Any:
        fr = s.frame
        v = fr.vars.get(name, MISSING)
        if v is MISSING:
            v = fr.vars[name] = fr.fns[name](fr.base)
        return v

    if not key:
        return var

    def var_key(s: Scope) -> Any:
        v = var(s)
        return v.get(key) if isinstance(v, dict) else None
    return var_key


def item_reader(ref: PathRef) -> Reader:
    """For ``from: PATH, use: FILE``: the single item the object file is applied to, or None."""
    if ref.kind == "hl7":
        if not ref.field or ref.has_comp:
            raise PathError(f"{ref.text!r}: `use:` applies to a field (PID-3) or one repetition (PID-3[2])")
        find, n, rep = _segment(ref.seg), ref.field, ref.rep

        def hl7_item(s: Scope) -> Any:
            seg = find(s)
            if seg is None:
                return None
            fields = seg.raw_fields()
            raw = fields[n] if n < len(fields) else ""
            if not raw:
                return None
            d = s.run.delimiters
            reps = raw.split(d.repetition) if d.repetition in raw else [raw]
            if rep > len(reps) or not reps[rep - 1].strip():
                return None
            return Hl7Item(seg, n, rep, reps[rep - 1], d)
        return hl7_item
    if ref.kind == "rel" and ref.text == ".":
        return lambda s: s.item if s.item is not None and s.item.present() else None
    if ref.kind == "pointer":
        read = reader(ref)
        return lambda s: None if (v := read(s)) is None else JsonItem(v, ref.text)
    if ref.kind in ("rel", "var", "res", "ctx", "column"):
        read, where = reader(ref), static_location(ref)
        return lambda s: None if (v := read(s)) is None else ValueItem(v, where)
    raise PathError(f"{ref.text!r} cannot be given to `use:`")


def each_reader(ref: PathRef) -> tuple[Reader, bool]:
    """For ``each: PATH``: a function scope -> list of items, and whether the items are segments."""
    if ref.kind == "hl7":
        if ref.has_comp or ref.rep_given:
            raise PathError(f"{ref.text!r}: `each:` takes a segment (NK1) or a field (PID-3)")
        if not ref.field:
            name = ref.seg

            def segments(s: Scope) -> list[Any]:
                return s.segs.get(name, [])
            return segments, True
        find, n = _segment(ref.seg), ref.field

        def repetitions(s: Scope) -> list[Any]:
            seg = find(s)
            if seg is None:
                return []
            fields = seg.raw_fields()
            raw = fields[n] if n < len(fields) else ""
            if not raw:
                return []
            d = s.run.delimiters
            if d.repetition not in raw:
                return [Hl7Item(seg, n, 1, raw, d)]
            return [Hl7Item(seg, n, i, r, d) for i, r in enumerate(raw.split(d.repetition), 1)]
        return repetitions, False
    if ref.kind == "pointer":
        read, text = reader(ref), ref.text

        def json_items(s: Scope) -> list[Any]:
            v = read(s)
            if v is None:
                return []
            return [JsonItem(x, f"{text}/{i}") for i, x in enumerate(v)] if isinstance(v, list) else [JsonItem(v, text)]
        return json_items, False
    if ref.kind in ("var", "res", "rel"):
        read = reader(ref)

        def values(s: Scope) -> list[Any]:
            v = read(s)
            if v is None:
                return []
            if isinstance(v, list):
                return [x if isinstance(x, (Hl7Item, ValueItem, JsonItem)) else ValueItem(x) for x in v]
            return [ValueItem(v)]
        return values, False
    raise PathError(f"{ref.text!r} cannot be given to `each:`")
