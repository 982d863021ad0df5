"""FHIRPath invariants: a plain-Python fast path for the ones every stored resource meets, fhirpathpy for the rest.

fhirpathpy costs ~50-70 µs per evaluation, more than the whole per-resource budget, and cannot evaluate some
base R4 invariants at all (``hasValue()`` in ele-1, ``htmlChecks()`` in txt-1/2).  So each invariant is looked
up by (key, expression) in :data:`FAST_PATHS`; a fast path returns True/False, or None when it cannot decide
(a date comparison across precisions, say), and only then does fhirpathpy run.  Keying on the exact
expression text means a profile that redefines an invariant silently gets fhirpathpy, never a stale fast
path; ``tests/conformance/test_invariants.py`` checks every fast path against fhirpathpy.

ele-1 and ext-1 are checked inline by the validator's walk (see ``INLINE``).  Best-practice invariants
(dom-6 "should have narrative") are not evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from adapter.fhir import ATTENDANCE_OUTCOME_EXT, INVALID_NHS_NUMBER_SYSTEM

__all__ = ["FAST_PATHS", "INLINE", "TRIGGERS", "Invariants"]

Verdict = bool | None
FastPath = Callable[[Any, Any, Any], Verdict]  # (element value, %resource, %rootResource)

ELE_1 = "hasValue() or (children().count() > id.count())"
EXT_1 = "extension.exists() != value.exists()"
INLINE = {("ele-1", ELE_1), ("ext-1", EXT_1)}

_R4 = models["r4"]


def _discard(label: str, value: Any) -> None:
    """fhirpathpy trace() sink: never print instance values."""


def _has(value: Any, name: str) -> bool:
    return isinstance(value, dict) and (name in value or "_" + name in value)


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            out.append(item)
    return out


def _references(value: Any) -> list[Any]:
    out: list[Any] = []
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if "reference" in item:
                out.append(item["reference"])
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return out


def _dom3(value: Any, resource: Any, root: Any) -> Verdict:
    contained = value.get("contained")
    if not contained:
        return True
    strings = set(_strings(resource))
    for c in contained:
        cid = c.get("id") if isinstance(c, dict) else None
        if isinstance(cid, str) and "#" + cid in strings:
            continue
        if "#" in _references(c):
            continue
        return False
    return True


def _contained_meta(value: Any, *names: str) -> bool:
    for c in value.get("contained") or ():
        meta = c.get("meta") if isinstance(c, dict) else None
        if isinstance(meta, dict) and any(_has(meta, n) for n in names):
            return False
    return True


_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


def _compare(a: Any, b: Any) -> int | None:
    """-1/0/1 for two FHIR date/dateTime/instant strings of the same precision, else None (undecided)."""
    if not isinstance(a, str) or not isinstance(b, str):
        return None
    if _DATE.fullmatch(a) and _DATE.fullmatch(b):
        if len(a) != len(b):
            return None
        return (a > b) - (a < b)
    if "T" in a and "T" in b:
        try:
            x, y = datetime.fromisoformat(a), datetime.fromisoformat(b)
        except ValueError:
            return None
        if x.tzinfo is None or y.tzinfo is None:
            return None
        return (x > y) - (x < y)
    return None


def _per1(value: Any, resource: Any, root: Any) -> Verdict:
    start, end = value.get("start"), value.get("end")
    if start is None or end is None:
        return True
    order = _compare(start, end)
    return None if order is None else order <= 0


def _inv1(value: Any, resource: Any, root: Any) -> Verdict:
    modified, authored = value.get("lastModified"), value.get("authoredOn")
    if not _has(value, "lastModified") or not _has(value, "authoredOn"):
        return True
    order = _compare(modified, authored)
    return None if order is None else order >= 0


def _ref1(value: Any, resource: Any, root: Any) -> Verdict:
    """R4 ref-1 as corrected in R5: a contained resource may point back at its container with ``#``.

    R4's expression rejects ``#`` (the CP-IS Flag pattern: a contained Provenance whose target is its Flag);
    R5 added ``or (reference='#' and %rootResource!=%resource)``, and the HL7 validator applies that fix to R4.
    """
    ref = value.get("reference")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return True
    if ref == "#" and resource is not root:
        return True
    ids = [c.get("id") for c in (root.get("contained") or ()) if isinstance(c, dict)]
    return ref[1:] in ids


_TAGS = re.compile(r"<[^>]*>")


def _txt1(value: Any, resource: Any, root: Any) -> Verdict:
    if not isinstance(value, str):
        return None
    div = value.strip()
    if not div.startswith("<div") or not div.endswith("</div>") or 'xmlns="http://www.w3.org/1999/xhtml"' not in div:
        return False
    lowered = div.lower()
    return not any(bad in lowered for bad in ("<script", "<form", "<iframe", "<object", "<embed", "<head", "<body",
                                              " onclick=", " onload=", "javascript:"))


def _txt2(value: Any, resource: Any, root: Any) -> Verdict:
    if not isinstance(value, str):
        return None
    return bool(_TAGS.sub("", value).strip()) or "<img" in value


def _app3(value: Any, resource: Any, root: Any) -> Verdict:
    if _has(value, "start") and _has(value, "end"):
        return True
    status = value.get("status")
    return None if status is None else status in ("proposed", "cancelled", "waitlist")


def _app4(value: Any, resource: Any, root: Any) -> Verdict:
    if not _has(value, "cancelationReason"):
        return True
    status = value.get("status")
    return None if status is None else status in ("noshow", "cancelled")


def _ct_app1(value: Any, resource: Any, root: Any) -> Verdict:
    status = value.get("status")
    if status is None:
        return False
    present = any(isinstance(e, dict) and e.get("url") == ATTENDANCE_OUTCOME_EXT for e in value.get("extension") or ())
    return bool(present == (status == "noshow"))


def _ct_app2(value: Any, resource: Any, root: Any) -> Verdict:
    status = value.get("status")
    absent = not _has(value, "cancelationReason")
    if status is None:
        return absent
    return status != "noshow" or absent


def _ct_pat1(value: Any, resource: Any, root: Any) -> Verdict:
    return any(isinstance(i, dict) and isinstance(i.get("system"), str) and i["system"] != INVALID_NHS_NUMBER_SYSTEM
               for i in value.get("identifier") or ())


def _ct_com1(value: Any, resource: Any, root: Any) -> Verdict:
    for payload in value.get("payload") or ():
        ref = payload.get("contentReference") if isinstance(payload, dict) else None
        if isinstance(ref, dict):
            target = ref.get("reference")
            if isinstance(target, str) and (target.startswith("Flag/") or "/Flag/" in target):
                return True
            if ref.get("type") == "Flag":
                return True
    return False


def _either(a: str, b: str) -> FastPath:
    return lambda value, resource, root: _has(value, a) or _has(value, b)


def _implies_present(a: str, b: str) -> FastPath:
    """``a.empty() or b.exists()`` and friends."""
    return lambda value, resource, root: not _has(value, a) or _has(value, b)


DOM_3 = ("contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) "
         "| %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference "
         "= '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) "
         "= '#').exists()).not()).trace('unmatched', id).empty()")
APP_4 = "Appointment.cancelationReason.exists() implies (Appointment.status='noshow' or Appointment.status='cancelled')"
REF_1 = ("reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
         "%rootResource.contained.id.trace('ids'))")
CT_COM_1 = ("payload.content.ofType(Reference).where(reference.startsWith('Flag/') or "
            "reference.contains('/Flag/') or type = 'Flag').exists()")

FAST_PATHS: dict[tuple[str, str], FastPath] = {
    ("dom-2", "contained.contained.empty()"):
        lambda v, r, root: not any(_has(c, "contained") for c in v.get("contained") or ()),
    ("dom-3", DOM_3): _dom3,
    ("dom-4", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"):
        lambda v, r, root: _contained_meta(v, "versionId", "lastUpdated"),
    ("dom-5", "contained.meta.security.empty()"): lambda v, r, root: _contained_meta(v, "security"),
    ("app-1", "type.exists() or actor.exists()"): _either("type", "actor"),
    ("app-2", "start.exists() = end.exists()"): lambda v, r, root: _has(v, "start") == _has(v, "end"),
    ("app-3", "(start.exists() and end.exists()) or (status in ('proposed' | 'cancelled' | 'waitlist'))"): _app3,
    ("app-4", APP_4): _app4,
    ("pat-1", "name.exists() or telecom.exists() or address.exists() or organization.exists()"):
        lambda v, r, root: any(_has(v, n) for n in ("name", "telecom", "address", "organization")),
    ("per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)"): _per1,
    ("inv-1", "lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn"): _inv1,
    ("cpt-2", "value.empty() or system.exists()"): _implies_present("value", "system"),
    ("att-1", "data.empty() or contentType.exists()"): _implies_present("data", "contentType"),
    ("qty-3", "code.empty() or system.exists()"): _implies_present("code", "system"),
    ("ref-1", REF_1): _ref1,
    ("txt-1", "htmlChecks()"): _txt1,
    ("txt-2", "htmlChecks()"): _txt2,
    ("ct-app-1", f"extension.where(url = '{ATTENDANCE_OUTCOME_EXT}').exists() = (status = 'noshow')"): _ct_app1,
    ("ct-app-2", "status = 'noshow' implies cancelationReason.empty()"): _ct_app2,
    ("ct-pat-1", f"identifier.where(system != '{INVALID_NHS_NUMBER_SYSTEM}').exists()"): _ct_pat1,
    ("ct-com-1", CT_COM_1): _ct_com1,
}


# An invariant that is trivially true when this key is absent from its context object: the walk skips the
# call altogether (dom-2..5 on every resource without contained resources, ref-1 on every Reference...).
TRIGGERS: dict[str, str] = {
    "dom-2": "contained", "dom-3": "contained", "dom-4": "contained", "dom-5": "contained", "ref-1": "reference",
    "per-1": "end", "inv-1": "lastModified", "cpt-2": "value", "att-1": "data", "qty-3": "code",
    "app-4": "cancelationReason",
}


class Invariants:
    """Evaluates invariants: fast path first, then fhirpathpy (each expression compiled once)."""

    def __init__(self) -> None:
        self._compiled: dict[str, Callable[..., list[Any]]] = {}

    def check(self, constraints: tuple[tuple[Any, FastPath | None, str | None], ...], value: Any, type_name: str,
              loc: str, ctx: Any) -> None:
        """Evaluate (invariant, fast path, trigger) triples on one value and report through ``ctx.add``."""
        for c, fast, trigger in constraints:
            if trigger is not None and trigger not in value:
                continue
            verdict = fast(value, ctx.resource, ctx.root) if fast is not None else None
            if verdict is None:
                verdict = self.evaluate(c.expression or "", value, type_name, ctx.resource, ctx.root)
                if verdict is None:
                    ctx.add("warning", "invariant", loc, f"{c.key}: could not be evaluated")
                    continue
            if not verdict:
                ctx.add("error" if c.severity == "error" else "warning", "invariant", loc, f"{c.key}: {c.human}")

    @staticmethod
    def fast_path(key: str, expression: str | None) -> FastPath | None:
        return FAST_PATHS.get((key, expression or ""))

    def evaluate(self, expression: str, value: Any, type_name: str, resource: Any, root: Any) -> Verdict:
        """fhirpathpy's verdict (only ``[true]`` passes), or None if the expression cannot be evaluated."""
        try:
            fn = self._compiled.get(expression)
            if fn is None:
                # traceFn: fhirpathpy would otherwise print trace() arguments (instance values) to stdout
                fn = self._compiled[expression] = fhirpathpy.compile(expression, _R4, {"traceFn": _discard})
            node = value if isinstance(value, dict) and "resourceType" in value else ResourceNode.create_node(value, type_name)
            result = fn(node, {"resource": resource, "rootResource": root})
        except Exception:  # noqa: BLE001 - fhirpathpy raises bare Exceptions for unsupported functions
            return None
        return result == [True]
