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
           "stu3_diff_files", "default_mappings"]

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


def apply_stu3_diff(mset: MappingSet, resource: dict[str, Any], *,
                    references: Callable[[str], str] | None = None,
                    warnings: list[Issue] | None = None, location: str | None = None) -> dict[str, Any]:
    """An STU3 resource -> its R4 shape by ``stu3/<Resource>.yaml`` (and ``stu3/_common.yaml``, ``resource:
    "*"``); see Stu3DiffFile for the rules and their order.  A type without a diff file is returned as a
    copy.  The input is never changed.  Contained resources get their own type's diff.

    ``references``: rewrites every ``Reference.reference`` (and nothing else), in the same pass.
    ``warnings``: where data R4 cannot hold is reported (``location`` prefixes the element path)."""
    plan = _stu3_plan(mset, str(resource.get("resourceType")))
    if plan is None and references is None:
        copied: dict[str, Any] = _json_copy(resource)
        return copied
    if plan is None:
        plan = _EMPTY_PLAN
    out: dict[str, Any] = _deep_copy(resource, plan, references)
    contained = resource.get("contained")
    if type(contained) is list:
        out["contained"] = [apply_stu3_diff(mset, c, references=references, warnings=warnings,
                                            location=f"{location or resource.get('resourceType')}.contained[{i}]")
                            if type(c) is dict else c for i, c in enumerate(contained)]
    if plan.structural:
        _apply_plan(plan, out, warnings, location or str(resource.get("resourceType")))
    return out


def stu3_diff_files(mset: MappingSet, resource_type: str) -> tuple[str, ...]:
    """The stu3/ files that apply to a resource type (for the trace): _common first, then its own."""
    plan = _stu3_plan(mset, resource_type)
    return plan.files if plan is not None else ()


@dataclass(frozen=True)
class _Stu3Plan:
    """One resource type's diff (+ the common one), ready to apply."""

    files: tuple[str, ...]
    systems: dict[str, str]
    prefixes: tuple[tuple[str, str], ...]
    ext_urls: dict[str, tuple[str, str | None]]  # stu3 url -> (r4 url, code_to_concept system)
    drop_ext: frozenset[str]
    ext_to_element: dict[str, list[str]]
    drop: list[list[str]]
    values: list[tuple[list[str], dict[str, str | None]]]
    when_true: list[tuple[list[str], list[tuple[list[str], Any]]]]
    code_to_concept: list[tuple[list[str], str]]
    text_to_concept: list[list[str]]
    to_annotation: list[list[str]]
    split: list[tuple[list[str], Any]]
    rename: list[tuple[list[str], list[str]]]  # deepest first
    wrap: list[list[str]]
    unwrap: list[list[str]]
    defaults: list[tuple[list[str], Any]]
    structural: bool  # anything beyond the deep pass


_EMPTY_PLAN = _Stu3Plan((), {}, (), {}, frozenset(), {}, [], [], [], [], [], [], [], [], [], [], [], False)
_plans: dict[tuple[int, str], tuple[MappingSet, _Stu3Plan | None]] = {}


def _stu3_plan(mset: MappingSet, rtype: str) -> _Stu3Plan | None:
    cached = _plans.get((id(mset), rtype))
    if cached is not None and cached[0] is mset:
        return cached[1]
    own, common = mset.stu3.get(rtype), mset.stu3.get("*")
    plan = None if own is None and common is None else _compile_stu3(mset, own, common)
    if len(_plans) > 512:
        _plans.clear()
    _plans[(id(mset), rtype)] = (mset, plan)
    return plan


def _compile_stu3(mset: MappingSet, own: Any, common: Any) -> _Stu3Plan:
    diffs = [d for d in (common, own) if d is not None]
    names = {id(f.model): name for name, f in mset.files.items() if f.kind == "stu3"}
    systems: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    ext_urls: dict[str, tuple[str, str | None]] = {}
    drop_ext: set[str] = set()
    for d in diffs:  # the type's own file wins over _common
        systems.update({str(k).strip(): str(v) for k, v in d.code_systems.items()})
        prefixes.update({str(k): str(v) for k, v in d.code_system_prefixes.items()})
        for k, v in d.extension_urls.items():
            ext_urls[str(k)] = (str(v), None) if isinstance(v, str) else (str(v.url), v.code_to_concept)
        drop_ext |= {str(u) for u in d.drop_extensions}

    def split(path: str) -> list[str]:
        return [str(p) for p in str(path).split(".")]

    o = own
    if o is None:
        return _Stu3Plan(tuple(names[id(d)] for d in diffs), systems, tuple(prefixes.items()), ext_urls,
                         frozenset(drop_ext), {}, [], [], [], [], [], [], [], [], [], [], [], False)
    rename = sorted(((split(k), split(v)) for k, v in o.rename.items()), key=lambda kv: -len(kv[0]))
    plan = _Stu3Plan(
        files=tuple(names[id(d)] for d in diffs),
        systems=systems, prefixes=tuple(prefixes.items()), ext_urls=ext_urls, drop_ext=frozenset(drop_ext),
        ext_to_element={str(k): split(v) for k, v in o.extension_to_element.items()},
        drop=[split(p) for p in o.drop],
        values=[(split(k), {str(c): (None if t is None else str(t)) for c, t in v.items()}) for k, v in o.values.items()],
        when_true=[(split(k), [(split(e), _plain(val)) for e, val in v.items()]) for k, v in o.when_true.items()],
        code_to_concept=[(split(k), str(v)) for k, v in o.code_to_concept.items()],
        text_to_concept=[split(p) for p in o.text_to_concept],
        to_annotation=[split(p) for p in o.to_annotation],
        split=[(split(k), v) for k, v in o.split.items()],
        rename=rename,
        wrap=[split(p) for p in o.wrap],
        unwrap=[split(p) for p in o.unwrap],
        defaults=[(split(k), _plain(v)) for k, v in o.defaults.items()],
        structural=True,
    )
    return plan


def _plain(value: Any) -> Any:
    """A constant from YAML (line-numbered dict / list / str subclasses) -> plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _json_copy(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return {k: _json_copy(v) for k, v in value.items()}
    if t is list:
        return [_json_copy(v) for v in value]
    return value


def _deep_copy(value: Any, plan: _Stu3Plan, references: Callable[[str], str] | None) -> Any:
    """A copy of a JSON value with code systems, extension urls and references rewritten (one pass).
    ``contained`` is left out: its items get their own type's diff."""
    systems, prefixes, ext_urls, drop_ext = plan.systems, plan.prefixes, plan.ext_urls, plan.drop_ext

    def walk(node: Any) -> Any:
        t = type(node)
        if t is list:
            return [walk(v) for v in node]
        if t is not dict:
            return node
        out: dict[str, Any] = {}
        for k, v in node.items():
            tv = type(v)
            if tv is str:
                if k == "system":
                    key = v.strip()
                    mapped = systems.get(key)
                    if mapped is None:
                        for old, new in prefixes:
                            if key.startswith(old):
                                mapped = new + key[len(old):]
                                break
                    out[k] = mapped if mapped is not None else v
                elif k == "reference" and references is not None:
                    out[k] = references(v)
                else:
                    out[k] = v
            elif tv is list:
                if k in ("extension", "modifierExtension"):
                    items = []
                    for item in v:
                        if type(item) is dict:
                            url = item.get("url")
                            if url in drop_ext:
                                continue
                            item = walk(item)
                            rule = ext_urls.get(url) if type(url) is str else None
                            if rule is not None:
                                item["url"] = rule[0]
                                if rule[1] is not None and type(item.get("valueCode")) is str:
                                    item["valueCodeableConcept"] = {
                                        "coding": [{"system": rule[1], "code": item.pop("valueCode")}]}
                        items.append(item)
                    if items:
                        out[k] = items
                elif k != "contained":
                    out[k] = [walk(x) for x in v]
            elif tv is dict:
                out[k] = walk(v)
            else:
                out[k] = v
        return out

    return walk(value)


def _parents(node: dict[str, Any], parts: list[str]) -> list[dict[str, Any]]:
    """The objects holding the last element of a dotted path (lists crossed)."""
    current = [node]
    for name in parts[:-1]:
        found: list[dict[str, Any]] = []
        for c in current:
            v = c.get(name)
            if type(v) is dict:
                found.append(v)
            elif type(v) is list:
                found += [x for x in v if type(x) is dict]
        if not found:
            return []
        current = found
    return current


def _prune(node: dict[str, Any], key: str) -> None:
    """Remove objects and lists left empty under ``node[key]`` (after an element was moved out)."""
    def empty(v: Any) -> bool:
        if type(v) is dict:
            for k in [k for k, x in v.items() if empty(x)]:
                del v[k]
            return not v
        if type(v) is list:
            v[:] = [x for x in v if not empty(x)]
            return not v
        return False

    if key in node and empty(node[key]):
        del node[key]


def _put(node: dict[str, Any], parts: list[str], value: Any) -> None:
    for name in parts[:-1]:
        nxt = node.setdefault(name, {})
        if type(nxt) is not dict:
            raise ValueError(f"cannot move into {'.'.join(parts)}: {name} is not a single object")
        node = nxt
    last = parts[-1]
    if last in node and type(node[last]) is list and type(value) is list:
        node[last] = node[last] + value
    else:
        node[last] = value


def _apply_plan(plan: _Stu3Plan, out: dict[str, Any], warnings: list[Issue] | None, where: str) -> None:
    def warn(code: str, path: list[str], message: str) -> None:
        if warnings is not None:
            warnings.append(Issue(code, f"{where}.{'.'.join(path)}", message, "W"))  # type: ignore[arg-type]

    if plan.ext_to_element and type(out.get("extension")) is list:
        kept = []
        for item in out["extension"]:
            target = plan.ext_to_element.get(str(item.get("url"))) if type(item) is dict else None
            if target is None:
                kept.append(item)
                continue
            value = next((v for k, v in item.items() if k.startswith("value")), None)
            if value is not None:
                _put(out, target, value)
        if kept:
            out["extension"] = kept
        else:
            del out["extension"]
    for path in plan.drop:
        for parent in _parents(out, path):
            parent.pop(path[-1], None)
        if len(path) > 1:
            _prune(out, path[0])
    for path, table in plan.values:
        for parent in _parents(out, path):
            v = parent.get(path[-1])
            if type(v) is str and v in table:
                if table[v] is None:
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = table[v]
            elif type(v) is list:
                parent[path[-1]] = [table.get(x, x) if type(x) is str else x for x in v
                                    if not (type(x) is str and x in table and table[x] is None)]
    for path, sets in plan.when_true:
        for parent in _parents(out, path):
            if parent.pop(path[-1], None) is True:
                for element, value in sets:
                    _put(parent, element, value)
    for path, system in plan.code_to_concept:
        for parent in _parents(out, path):
            v = parent.get(path[-1])
            if type(v) is str:
                parent[path[-1]] = {"coding": [{"system": system, "code": v}]}
    for paths in (plan.text_to_concept, plan.to_annotation):
        for path in paths:
            for parent in _parents(out, path):
                v = parent.get(path[-1])
                if type(v) is str:
                    parent[path[-1]] = {"text": v}
    for path, rule in plan.split:
        for parent in _parents(out, path):
            items = parent.pop(path[-1], None)
            for item in items if type(items) is list else [items] if items is not None else []:
                code = _first(item, str(rule.by).split("."))
                target = rule.into.get(code) if type(code) is str else None
                value = _first(item, str(rule.value).split("."))
                if target is None or value is None:
                    warn("unmapped-code", path, f"an item of {path[-1]} has no R4 element: not kept")
                    continue
                parent.setdefault(str(target), []).append(value)
    for old, new in plan.rename:
        if old[:-1] == new[:-1]:
            for parent in _parents(out, old):
                if old[-1] in parent:
                    value = parent.pop(old[-1])
                    existing = parent.get(new[-1])
                    parent[new[-1]] = existing + value if type(existing) is list and type(value) is list else value
        else:
            moved = []
            for parent in _parents(out, old):
                if old[-1] in parent:
                    moved.append(parent.pop(old[-1]))
            if moved:
                if len(old) > 1:
                    _prune(out, old[0])
                value = moved[0] if len(moved) == 1 else [x for m in moved for x in (m if type(m) is list else [m])]
                _put(out, new, value)
    for path in plan.wrap:
        for parent in _parents(out, path):
            v = parent.get(path[-1])
            if v is not None and type(v) is not list:
                parent[path[-1]] = [v]
    for path in plan.unwrap:
        for parent in _parents(out, path):
            v = parent.get(path[-1])
            if type(v) is list:
                if len(v) > 1:
                    warn("invalid-resource", path, f"R4 keeps one {path[-1]}: the first of {len(v)} kept")
                if v:
                    parent[path[-1]] = v[0]
                else:
                    del parent[path[-1]]
    for path, value in plan.defaults:
        parents = _parents(out, path)
        for parent in parents:
            if path[-1] not in parent:
                parent[path[-1]] = _json_copy(value)


def _first(item: Any, path: list[str]) -> Any:
    for name in path:
        if type(item) is list:
            item = item[0] if item else None
        if type(item) is not dict:
            return None
        item = item.get(name)
    return item
