"""Memoized FHIR R4 validation whose verdict is exactly ``fhir.resources.R4B``'s, at a fraction of the cost.

Why: every resource we store must pass ``get_fhir_model_class(rt).model_validate(resource)``, which costs
~100 µs because fhir_core runs Python validators on every element.  Bulk ingest needs far less than that per
resource, and a mapper emits few distinct *shapes* (same keys, nesting, list lengths and leaf Python types),
differing only in primitive leaf values.

How: the shape key is the resourceType plus a flat token sequence of the dict (dict/list brackets, keys, the
exact type of each leaf: str, bool, int, float, None).  The first resource of a shape gets the full
``model_validate``; if it passes, the models are walked alongside the dict to compile one checker per leaf:
the pydantic validator of that leaf's *own field annotation* (``TypeAdapter(Annotated[str, Code()])`` etc.,
the very schema pydantic compiled into the model field, regexes, bounds and fhir_core's Python date logic
included).  A later resource of the same shape only runs those checkers; if any of them rejects a value, the
full ``model_validate`` runs and its error is the one reported.  Failures are never cached.

Why the verdicts are equal: for a fixed shape, the only inputs fhir.resources' validation reads are (a) each
leaf's value, checked by that leaf's field schema, which the checker is; (b) None-ness, list lengths and key
presence (``reject_null_complex_elements``, required primitives, one-of-many ``[x]`` choices,
FHIRPrimitiveExtension's "id or extension" rule, ``extra="forbid"``), all fixed by the shape; and (c) the
``resourceType`` compared in ``FHIRAbstractModel.__init__``, checked by an equality checker.  Anything the
walk cannot place with certainty makes the shape "always validate fully": keys that are not a field alias
(``class_fhir`` by name), ``resource_type`` keys, fields whose model is chosen by value (``contained``,
``Bundle.entry.resource``: ``FhirElementOrResourceBase``), unions, values where a model is expected (a JSON
string), lists where none is expected, and leaf kinds not on ``_FAST_KINDS`` (xhtml narrative ``div``, uuid).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any, get_args, get_origin

from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as ft
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import TypeAdapter, ValidationError

__all__ = ["R4ValidationError", "validate_r4_resource", "clear_cache", "cache_info"]

Checker = Callable[[Any], object]
Plan = tuple[tuple[int, Checker, Any], ...]  # (leaf index, checker, the value the first resource had there)
Model = type[FHIRAbstractModel]

# fhir_core markers whose field schema we reuse as a leaf checker (xhtml, uuid: always validated fully).
_FAST_KINDS = (ft.String, ft.Code, ft.Id, ft.Uri, ft.Canonical, ft.Url, ft.Oid, ft.Markdown, ft.Base64Binary,
               ft.Decimal, ft.Integer, ft.Integer64, ft.UnsignedInt, ft.PositiveInt, ft.Date, ft.DateTime,
               ft.Instant, ft.Time)
_LEAF_TYPES = frozenset({str, bool, int, float, type(None)})
_OPEN_DICT, _OPEN_LIST, _CLOSE = object(), object(), object()
_MAX_SHAPES = 4096
_NEW = object()  # shape never seen (a cached shape maps to its Plan, or to None if uncertain)


class R4ValidationError(ValueError):
    """fhir.resources R4B rejected a resource.  Names where and why, never the offending value (patient data)."""

    def __init__(self, resource_type: str, path: str, error_type: str) -> None:
        self.resource_type = resource_type
        self.path = path  # FHIRPath-like: Patient.name[0].given[1]
        self.error_type = error_type  # pydantic / fhir_core error type, e.g. string_pattern_mismatch
        super().__init__(f"{resource_type} fails FHIR R4 validation at {path} ({error_type})")


_plans: dict[tuple[str, tuple[object, ...]], Plan | None] = {}
_stats = {"fast": 0, "full": 0}


def clear_cache() -> None:
    """Forget every compiled shape (and reset the counters)."""
    _plans.clear()
    _stats.update(fast=0, full=0)


def cache_info() -> dict[str, int]:
    """shapes cached, fast-path verdicts, full ``model_validate`` runs since the last ``clear_cache``."""
    return {"shapes": len(_plans), **_stats}


def validate_r4_resource(resource: dict[str, Any]) -> None:
    """Raise R4ValidationError iff ``get_fhir_model_class(rt).model_validate(resource)`` would raise."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    model = _model(rtype) if isinstance(rtype, str) else None
    if model is None or not isinstance(rtype, str):
        raise R4ValidationError("<unknown>", "resourceType", "unknown-resource-type")
    tokens: list[object] = []
    leaves: list[Any] = []
    key = (rtype, tuple(tokens)) if type(resource) is dict and _shape(resource, tokens, leaves) else None
    plan = _plans.get(key, _NEW) if key is not None else None
    if isinstance(plan, tuple) and _leaves_pass(plan, leaves):
        _stats["fast"] += 1
        return
    _full(model, rtype, resource)  # raises fhir.resources' own error
    if key is not None and plan is _NEW:
        if len(_plans) >= _MAX_SHAPES:
            _plans.clear()
        _plans[key] = _compile(model, resource, leaves)


def _leaves_pass(plan: Plan, leaves: list[Any]) -> bool:
    try:
        for index, check, seen in plan:
            value = leaves[index]
            if value != seen or type(value) is float:  # an equal str/int/bool gets the same verdict
                check(value)
    except Exception:  # noqa: BLE001 - any rejection: fhir.resources decides (and explains)
        return False
    return True


def _full(model: Model, rtype: str, resource: dict[str, Any]) -> None:
    _stats["full"] += 1
    error: R4ValidationError | None = None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        error = R4ValidationError(rtype, rtype + _fhirpath(model, resource, first["loc"]), first["type"])
    except Exception as exc:  # noqa: BLE001 - e.g. KeyError for an unknown contained resourceType
        error = R4ValidationError(rtype, rtype, type(exc).__name__)
    if error is not None:
        raise error  # raised outside the handler: no __context__ carrying the value


def _fhirpath(model: Model | None, node: Any, loc: tuple[int | str, ...]) -> str:
    """FHIRPath-like location.  Only element names of the models walked are echoed: an unknown key may be data."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if type(node) is list and -len(node) <= part < len(node) else None
            continue
        if part.startswith("function-"):  # pydantic's validator tags
            continue
        if isinstance(node, dict) and isinstance(node.get("resourceType"), str):  # e.g. a contained resource
            model = _model(node["resourceType"]) or model
        spec = (_fields(model) or {}).get(part) if model is not None else None
        path += f".{part}" if spec is not None or part in ("resourceType", "resource_type") else ".?"
        model = spec[1] if spec is not None and isinstance(spec[1], type) else None
        node = node.get(part) if isinstance(node, dict) else None
    return path


@lru_cache(maxsize=256)
def _model(rtype: str) -> Model | None:
    try:
        return get_fhir_model_class(rtype)
    except (ValueError, TypeError, KeyError):
        return None


# --- shape key -----------------------------------------------------------------------------------------


def _shape(node: dict[str, Any], tokens: list[object], leaves: list[Any]) -> bool:
    """Append ``node``'s structure to ``tokens`` and its leaf values to ``leaves``; False if not cacheable."""
    add = tokens.append
    add(_OPEN_DICT)
    for key, value in node.items():
        if type(key) is not str:
            return False
        add(key)
        kind = type(value)
        if kind in _LEAF_TYPES:
            add(kind)
            leaves.append(value)
        elif kind is dict:
            if not _shape(value, tokens, leaves):
                return False
        elif kind is list:
            add(_OPEN_LIST)
            for item in value:
                kind = type(item)
                if kind in _LEAF_TYPES:
                    add(kind)
                    leaves.append(item)
                elif kind is not dict or not _shape(item, tokens, leaves):
                    return False
            add(_CLOSE)
        else:
            return False
    add(_CLOSE)
    return True


# --- compiling a shape into leaf checkers ---------------------------------------------------------------


def _compile(model: Model, resource: dict[str, Any], leaves: list[Any]) -> Plan | None:
    """Checkers for every leaf of a resource that passed full validation, in ``_shape``'s leaf order."""
    checkers: list[Checker | None] = []
    if not _walk(model, resource, checkers) or len(checkers) != len(leaves):
        return None  # uncertain: this shape is always validated fully
    return tuple((i, check, leaves[i]) for i, check in enumerate(checkers) if check is not None)


def _walk(model: Model, node: dict[str, Any], out: list[Checker | None]) -> bool:
    fields = _fields(model)
    if fields is None:
        return False
    for key, value in node.items():
        if key in fields:
            is_list, target = fields[key]
        elif key == "resourceType":  # popped and compared by FHIRAbstractModel.__init__
            is_list, target = False, _equals(model.get_resource_type())
        else:
            return False  # a field given by name (class_fhir), resource_type, ...: not worth the doubt
        if target is None:
            return False
        if value is None:
            out.append(None)  # the shape fixes it: the full validation saw the same None
            continue
        if is_list != (type(value) is list):
            return False
        for item in value if is_list else (value,):
            if item is None:
                out.append(None)
            elif isinstance(target, type):  # a complex type: recurse into its model
                if type(item) is not dict or not _walk(target, item, out):
                    return False
            elif type(item) in _LEAF_TYPES:
                out.append(target)
            else:
                return False
    return True


FieldSpec = tuple[bool, Model | Checker | None]  # (is a list, model class | leaf checker | None if uncertain)


@lru_cache(maxsize=None)
def _fields(model: Model) -> dict[str, FieldSpec] | None:
    """Fields by the key pydantic reads them from (the alias), or None if the model is not introspectable."""
    if model.model_config != FHIRAbstractModel.model_config:
        return None
    specs: dict[str, FieldSpec] = {}
    for name, info in model.model_fields.items():
        if info.validation_alias not in (None, info.alias) or info.metadata:
            specs[info.alias or name] = (False, None)
        else:
            specs[info.alias or name] = _field_spec(info.annotation)
    return specs


def _field_spec(annotation: Any) -> FieldSpec:
    item = _without_none(annotation)
    is_list = get_origin(item) is list
    if is_list:
        item = _without_none(get_args(item)[0])
    if isinstance(item, type) and issubclass(item, ft.FhirBase):
        if issubclass(item, ft.FhirElementOrResourceBase):  # model picked by the value's resourceType
            return is_list, None
        return is_list, item.get_model_klass()
    return is_list, _leaf_checker(item)


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else None  # str | list[str] (fhir_comments): uncertain
    return annotation


def _leaf_checker(annotation: Any) -> Checker | None:
    if annotation is bool:
        return _adapter(bool)
    if get_origin(annotation) is Annotated:
        markers = [m for m in annotation.__metadata__ if isinstance(m, ft.Xhtml) or type(m) in _FAST_KINDS]
        if len(markers) == 1 and not isinstance(markers[0], ft.Xhtml):
            return _adapter(annotation)
    return None


@lru_cache(maxsize=None)
def _adapter(annotation: Any) -> Checker:
    """The same pydantic schema the model field compiled, as a standalone validator."""
    return TypeAdapter(annotation, config=FHIRAbstractModel.model_config).validate_python


@lru_cache(maxsize=None)
def _equals(resource_type: str) -> Checker:
    def check(value: object) -> object:
        if value != resource_type:
            raise ValueError("wrong resource type")
        return value

    return check
