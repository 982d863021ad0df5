"""The interpreter: a compiled MappingSet + one record -> resources + warnings + a trace.

Pure: no I/O, no settings (the one look-up outside the record, a stored birth date, comes through the
context).  The record is an HL7 v2 message (``map_message``), a tabular row or a JSON object
(``map_record``); STU3 resources go through ``apply_stu3_diff``.

    message file (by MSH-9)  ->  entries in order  ->  resource file per scope  ->  fields
                                   (merge / place)        (vars, id, when)          (datatypes, code tables)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from adapter.errors import MappingError, UnsupportedMessage
from adapter.inbound.er7 import Delimiters, Er7Message, Segment
from adapter.inbound.hl7v2 import Header
from adapter.mapping.codes import CodeTables
from adapter.mapping.compiler import CompiledEntry, CompiledMessage, CompiledResource, MappingSet
from adapter.mapping.runtime import Frame, Scope
from adapter.records import Issue

__all__ = ["MappingContext", "MappedMessage", "MappingTrace", "map_message", "map_record", "apply_stu3_diff",
           "default_mappings"]

# Fields the inbound stage reads before any mapping runs (delimiters, routing, processing id, version).
_INBOUND_FIELDS = frozenset({("MSH", 1), ("MSH", 2), ("MSH", 9), ("MSH", 10), ("MSH", 11), ("MSH", 12)})


@dataclass
class MappingContext:
    """Everything a mapping may consult besides the record itself."""

    source: str  # the feed: 'maternity'
    sending_facility: str  # MSH-4.1: the trust's ODS code by NHS convention
    control_id: str
    tz: ZoneInfo  # for date-times sent without an offset
    codes: CodeTables
    birth_date_of: Callable[[str], str | None]  # stored Patient.birthDate by id (no-show age decision)
    warnings: list[Issue] = field(default_factory=list)
    mappings: MappingSet | None = None  # the loaded set; None: the one `codes` was loaded with
    now: str | None = None  # the time of mapping (Provenance.recorded without MSH-7); None: the clock

    def warn(self, code: str, location: str | None, message: str) -> None:
        self.warnings.append(Issue(code=code, location=location, message=message, severity="W"))  # type: ignore[arg-type]


class MappingTrace:
    """Which mapping files ran (in order of first use) and which source fields were present but unused
    (no mapping that ran refers to them).  ``unused_fields`` is computed when asked."""

    def __init__(self, files: tuple[str, ...], mset: MappingSet | None, record: Any = None) -> None:
        self.files = files
        self._mset = mset
        self._record = record

    @cached_property
    def fields_used(self) -> frozenset[tuple[str, int]]:
        used: set[tuple[str, int]] = set(_INBOUND_FIELDS)
        if self._mset is not None:
            for name in self.files:
                used |= self._mset.fields_used.get(name, frozenset())
        return frozenset(used)

    @cached_property
    def unused_fields(self) -> tuple[str, ...]:
        record, used = self._record, self.fields_used
        out: dict[str, None] = {}
        if isinstance(record, Er7Message):
            for seg in record.segments:
                for n, raw in enumerate(seg.raw_fields()[1:], 1):
                    if raw.strip() and (seg.name, n) not in used:
                        out[f"{seg.name}-{n}"] = None
        elif isinstance(record, dict) and self._mset is not None:
            columns = {c for name in self.files for c in self._mset.columns_used.get(name, ())}
            for k, v in record.items():
                if v not in (None, "", [], {}) and k not in columns:
                    out[f"column:{k}"] = None
        return tuple(out)

    def __repr__(self) -> str:
        return f"MappingTrace(files={self.files!r})"


@dataclass
class MappedMessage:
    resources: list[dict[str, Any]]
    source_time: str | None  # MSH-7 as a UTC ISO instant, for ordering out-of-order updates
    warnings: list[Issue] = field(default_factory=list)
    trace: MappingTrace = field(default_factory=lambda: MappingTrace((), None))


class _Run:
    """The state of one mapping run; also the ``env`` transforms see."""

    __slots__ = ("ctx", "source", "tz", "warnings", "files", "delimiters", "meta_source", "seen", "_now", "_done",
                 "_current", "_order")

    def __init__(self, ctx: MappingContext, delimiters: Delimiters | None) -> None:
        self.ctx = ctx
        self.source = ctx.source
        self.tz = ctx.tz
        self.warnings = ctx.warnings
        self.files: dict[str, None] = {}
        self.delimiters = delimiters
        self.meta_source: str | None = None
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}  # (type, id) -> the resource produced
        self._now = ctx.now
        self._done: list[dict[str, Any]] = []  # resources of finished groups
        self._current: dict[str, list[dict[str, Any]]] = {}
        self._order: list[str] = []

    def warn(self, code: str, location: str | None, message: str) -> None:
        self.warnings.append(Issue(code=code, location=location, message=message, severity="W"))  # type: ignore[arg-type]

    def now(self) -> str:
        if self._now is None:
            self._now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self._now

    def stored_birth_date(self, patient_id: str) -> str | None:
        return self.ctx.birth_date_of(patient_id)

    def produced(self) -> list[dict[str, Any]]:
        current = self._current
        return self._done + [r for name in self._order for r in current.get(name, ())]


_default: list[MappingSet] = []


def default_mappings() -> MappingSet:
    """The shipped mappings (no overlay), loaded once."""
    if not _default:
        from adapter.mapping.loader import load_mappings

        _default.append(load_mappings())
    return _default[0]


def _mapping_set(ctx: MappingContext) -> MappingSet:
    return ctx.mappings or getattr(ctx.codes, "mapping_set", None) or default_mappings()


def map_message(msg: Er7Message, header: Header, ctx: MappingContext) -> MappedMessage:
    """One HL7 v2 message -> its resources in dependency order (+ one Provenance), by the message file
    for MSH-9.1^MSH-9.2.  Raises MappingError (ACK AE) naming a location, never a value."""
    mset = _mapping_set(ctx)
    cm = mset.message_for(header.message_type, header.trigger)
    if cm is None:
        raise UnsupportedMessage("no mapping file for this message type and trigger", location="MSH-9")
    run = _Run(ctx, msg.delimiters)
    for name in cm.files:
        run.files[name] = None
    by_name: dict[str, list[Segment]] | None = getattr(msg, "_by_name", None)  # Er7Message's own index
    if by_name is None:
        by_name = {}
        for seg in msg.segments:
            by_name.setdefault(seg.name, []).append(seg)
    top = Scope(run, msg.segments[0], by_name, None, None, {})
    top.frame = Frame({}, {}, top)
    source_time = cm.source_time(top) if cm.source_time is not None else None
    for name in cm.require:
        if name not in by_name:
            raise MappingError(f"message has no {name} segment", code="missing-segment", location=name)
    if cm.meta_source is not None:
        run.meta_source = cm.meta_source(top)
    if cm.group_start is not None:
        for segs in _groups(msg, cm.group_start):
            for name in cm.group_require:
                if name not in segs:
                    raise MappingError(f"a {cm.group_start} group has no {name} segment", code="missing-segment",
                                       location=name)
            _run_entries(run, cm.group_entries, cm.group_order, segs, None)
            run._done = run.produced()
            run._current, run._order = {}, []
    _run_entries(run, cm.entries, cm.order, by_name, None)
    return MappedMessage(run.produced(), source_time, ctx.warnings, MappingTrace(tuple(run.files), mset, msg))


def _groups(msg: Er7Message, start: str) -> list[dict[str, list[Segment]]]:
    """Segments split at each ``start`` segment; those before the first one are seen by every group."""
    head: dict[str, list[Segment]] = {}
    groups: list[dict[str, list[Segment]]] = []
    current: dict[str, list[Segment]] | None = None
    for seg in msg.segments:
        if seg.name == start:
            current = {start: [seg]}
            groups.append(current)
        elif current is None:
            head.setdefault(seg.name, []).append(seg)
        else:
            current.setdefault(seg.name, []).append(seg)
    for group in groups:  # a group's own segments first; MSH, EVN... from before the first group
        for name, segs in head.items():
            group.setdefault(name, segs)
    return groups


def _run_entries(run: _Run, entries: list[CompiledEntry], order: list[str], segs: dict[str, list[Segment]],
                 record: Any) -> None:
    named: dict[str, dict[str, Any]] = {}
    run._order = order
    current = run._current
    for entry in entries:
        if entry.segment is not None:
            scopes: list[Segment | None] = list(segs.get(entry.segment, ()))
            if not entry.repeat:
                scopes = scopes[:1]
        else:
            scopes = [None]  # a tabular row / JSON object: the record is the scope
        out: list[dict[str, Any]] = []
        for seg in scopes:
            s = Scope(run, seg, segs, None, None, named, record)
            if entry.when is not None:
                s.frame = Frame({}, {}, s)
                if not entry.when(s):
                    continue
            params = {k: f(s) for k, f in entry.with_fns} if entry.with_fns else {}
            resource = _build(entry.resource, s, params)
            if resource is None:
                continue
            if entry.merge is not None:
                target = _merge_target(current.get(entry.merge.into, ()), entry.merge.where)
                if target is not None:
                    _merge(target, resource, entry.merge.append)
                    named.setdefault(entry.name, target)
                    continue
            key = (resource["resourceType"], resource["id"])
            same = run.seen.get(key)
            if same is not None:  # the same record twice in one message (two equal NK1): one resource
                _fill(same, resource)
                named.setdefault(entry.name, same)
                continue
            run.seen[key] = resource
            out.append(resource)
        if out:
            current[entry.name] = out
            named.setdefault(entry.name, out[0])


def _build(r: CompiledResource, s: Scope, params: dict[str, Any]) -> dict[str, Any] | None:
    if r.params:
        values = {p: None for p in r.params}
        values.update(params)
    else:
        values = {}
    frame = s.frame = Frame(values, r.var_fns, s)
    run = s.run
    run.files[r.name] = None
    if r.when is not None and not r.when(s):
        return None
    rid = r.id_fn(s)
    if not rid:
        raise MappingError(f"no id could be made for a {r.rtype}", code="missing-field")
    frame.own_id = rid
    meta: dict[str, Any] = {}
    if run.meta_source is not None:
        meta["source"] = run.meta_source
    if r.profile:
        meta["profile"] = [r.profile]
    out: dict[str, Any] = {"resourceType": r.rtype, "id": rid, "meta": meta}
    r.fields(s, out)
    for k in r.needs:
        if k not in out:
            return None
    if r.security is not None:
        labels = r.security(s)
        if labels:
            meta["security"] = labels if isinstance(labels, list) else [labels]
    if not meta:
        del out["meta"]
    return out


def _values_at(value: Any, path: list[str]) -> list[Any]:
    if not path:
        return value if isinstance(value, list) else [value]
    items = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and path[0] in item:
            out += _values_at(item[path[0]], path[1:])
    return out


def _merge_target(candidates: Any, where: dict[str, list[Any]]) -> dict[str, Any] | None:
    for resource in candidates:
        if all(any(str(v) in {str(x) for x in accepted} for v in _values_at(resource, path.split(".")))
               for path, accepted in where.items()):
            return resource  # type: ignore[no-any-return]
    return None


def _merge(target: dict[str, Any], source: dict[str, Any], elements: list[str]) -> None:
    for element in elements:
        if element not in source:
            continue
        existing = target.setdefault(element, [])
        for value in source[element]:
            if value not in existing:
                existing.append(value)


def _fill(target: dict[str, Any], later: dict[str, Any]) -> None:
    """A resource produced twice in one message: the first wins; the later one adds the elements the
    first lacks and the list items it does not have."""
    for key, value in later.items():
        if key not in target:
            target[key] = value
        elif isinstance(value, list) and isinstance(target[key], list) and key != "meta":
            target[key] = target[key] + [v for v in value if v not in target[key]]


def map_record(mset: MappingSet, feed: str, record: dict[str, Any], ctx: MappingContext) -> MappedMessage:
    """One tabular row (column -> text) or JSON object -> resources, by the feed file ``feed``."""
    cm: CompiledMessage | None = mset.feeds.get(feed)
    if cm is None:
        raise UnsupportedMessage(f"no feed file named {feed}", location=None)
    run = _Run(ctx, None)
    for name in cm.files:
        run.files[name] = None
    top = Scope(run, None, {}, None, None, {}, record)
    top.frame = Frame({}, {}, top)
    source_time = cm.source_time(top) if cm.source_time is not None else None
    if cm.meta_source is not None:
        run.meta_source = cm.meta_source(top)
    _run_entries(run, cm.entries, cm.order, {}, record)
    return MappedMessage(run.produced(), source_time, ctx.warnings, MappingTrace(tuple(run.files), mset, record))


def apply_stu3_diff(mset: MappingSet, resource: dict[str, Any]) -> dict[str, Any]:
    """An STU3 resource -> its R4 shape by ``stu3/<Resource>.yaml`` (rename, wrap in a list, drop);
    a resource type without a diff file is returned unchanged (a copy)."""
    diff = mset.stu3.get(str(resource.get("resourceType")))
    out = dict(resource)
    if diff is None:
        return out
    for element in diff.drop:
        out.pop(element, None)
    for old, new in diff.rename.items():
        if old in out:
            out[new] = out.pop(old)
    for element in diff.wrap:
        if element in out and not isinstance(out[element], list):
            out[element] = [out[element]]
    return out
