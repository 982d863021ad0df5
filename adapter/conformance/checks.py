"""Value checks compiled into closures once per element: fixed and pattern values, bindings, reference
target types, and the NHS number Modulus 11 check.  Each closure is ``check(value, location, context)`` and
reports through ``context.add``; diagnostics name definitions (paths, ValueSet URLs), never the value."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from adapter.conformance.profiles import Element
from adapter.conformance.terminology import Terminology

if TYPE_CHECKING:
    from adapter.conformance.validator import Context

__all__ = [
    "NHS_NUMBER_SYSTEM",
    "Announce",
    "Check",
    "binding_check",
    "contains",
    "fixed_check",
    "is_valid_nhs_number",
    "nhs_number_check",
    "pattern_check",
    "pattern_matcher",
    "reference_check",
    "reference_type",
    "values_at",
]

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
Check = Callable[[Any, str, "Context"], None]
Announce = Callable[[str, str, str, "Context"], None]  # (what, location, diagnostics, context): once per run
_BOUND_TYPES = {"code", "Coding", "CodeableConcept", "string", "uri"}
_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def contains(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every property of the pattern is in the value; list items matched in any order."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and contains(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(contains(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


def pattern_matcher(pattern: Any) -> Callable[[Any], bool]:
    """:func:`contains` compiled for one pattern."""
    if isinstance(pattern, dict):
        parts = [(k, pattern_matcher(v)) for k, v in pattern.items()]
        return lambda value: type(value) is dict and all(k in value and m(value[k]) for k, m in parts)
    if isinstance(pattern, list):
        items = [pattern_matcher(p) for p in pattern]
        return lambda value: type(value) is list and all(any(m(v) for v in value) for m in items)
    return lambda value: bool(value == pattern)


def is_valid_nhs_number(number: str) -> bool:
    """Modulus 11: weights 10..2 on the first nine digits; the check digit is 11 - remainder (11 -> 0, 10 invalid)."""
    if len(number) != 10 or not number.isascii() or not number.isdigit():
        return False
    d = number.encode()
    total = (10 * d[0] + 9 * d[1] + 8 * d[2] + 7 * d[3] + 6 * d[4] + 5 * d[5] + 4 * d[6] + 3 * d[7] + 2 * d[8]
             - 54 * 48)  # the digits' ASCII offset, times the sum of the weights
    check = 11 - total % 11
    return (0 if check == 11 else check) == d[9] - 48


def reference_type(ref: str, root: Any) -> str | None:
    if ref.startswith("#"):
        for c in root.get("contained") or ():
            if isinstance(c, dict) and c.get("id") == ref[1:]:
                return c.get("resourceType") if isinstance(c.get("resourceType"), str) else None
        return None
    m = _REF.search(ref)
    return m.group(1) if m else None


def values_at(item: Any, path: str) -> list[Any]:
    values = [item]
    if path == "$this":
        return values
    for seg in path.split("."):
        nxt: list[Any] = []
        for v in values:
            if isinstance(v, dict) and seg in v:
                x = v[seg]
                nxt.extend(x if isinstance(x, list) else [x])
        values = nxt
    return values


def fixed_check(node: Element) -> Check | None:
    if not node.has_fixed:
        return None
    fixed = node.fixed

    def check(v: Any, loc: str, ctx: Context) -> None:
        if v != fixed:
            ctx.add("error", "value", loc, f"value does not equal the fixed value of {node.path}")
    return check


def pattern_check(node: Element) -> Check | None:
    if not node.has_pattern:
        return None
    matches = pattern_matcher(node.pattern)

    def check(v: Any, loc: str, ctx: Context) -> None:
        if not matches(v):
            ctx.add("error", "value", loc, f"value does not match the pattern of {node.path}"
                    + (f" (slice {node.slice_name})" if node.slice_name else ""))
    return check


def binding_check(node: Element, tcode: str, terminology: Terminology, announce: Announce) -> Check | None:
    if node.binding is None or node.binding[0] not in ("required", "extensible") or tcode not in _BOUND_TYPES:
        return None
    strength, url = node.binding
    expansion = terminology.expand(url)
    if expansion is None:
        return lambda v, loc, ctx: announce(url, loc, f"value set {url} is not held or not expandable here: "
                                            f"{strength} binding of {node.path} not checked (reported once per run)", ctx)
    codings, codes, systems = expansion.codings, expansion.codes, expansion.systems
    required = strength == "required"
    what = f"{strength} binding of {node.path} to {url}"

    if tcode == "Coding":
        def check(v: Any, loc: str, ctx: Context) -> None:
            if isinstance(v, dict) and (v.get("system"), v.get("code")) not in codings:
                if required:
                    ctx.add("error", "code-invalid", loc + ".code", f"coding not in the value set ({what})")
                elif v.get("system") in systems:
                    ctx.add("warning", "code-invalid", loc + ".code", f"coding not in the value set ({what})")
        return check
    if tcode == "CodeableConcept":
        def check(v: Any, loc: str, ctx: Context) -> None:
            if not isinstance(v, dict):
                return
            cs = [c if isinstance(c, dict) else {} for c in v.get("coding") or ()]
            inside = [(c.get("system"), c.get("code")) in codings for c in cs]
            if required:
                if not any(inside):
                    i = next((i for i, c in enumerate(cs) if c.get("system") in systems), 0 if cs else None)
                    ctx.add("error", "code-invalid", f"{loc}.coding[{i}].code" if i is not None else loc,
                            f"no coding from the value set ({what})")
                return
            for i, c in enumerate(cs):
                if not inside[i] and c.get("system") in systems:
                    ctx.add("warning", "code-invalid", f"{loc}.coding[{i}].code", f"coding not in the value set ({what})")
        return check

    def check_code(v: Any, loc: str, ctx: Context) -> None:
        if v not in codes:
            ctx.add("error" if required else "warning", "code-invalid", loc, f"code not in the value set ({what})")
    return check_code


def reference_check(node: Element, tcode: str, definitions: Mapping[str, Any]) -> Check | None:
    if tcode != "Reference":
        return None
    targets: set[str] = set()
    for t in node.types:
        if t.code == "Reference":
            for url in t.targets:
                sd = definitions.get(url)
                name = sd["type"] if sd else url.rsplit("/", 1)[-1].removeprefix("UKCore-")
                targets.add(name)
    if not targets or "Resource" in targets:
        return None
    allowed = frozenset(targets)
    expected = " | ".join(sorted(allowed))

    def check(v: Any, loc: str, ctx: Context) -> None:
        if not isinstance(v, dict):
            return
        rtype, where = v.get("type"), loc + ".type"
        if rtype is None:
            ref = v.get("reference")
            if not isinstance(ref, str):
                return
            rtype, where = reference_type(ref, ctx.root), loc + ".reference"
        if rtype is not None and rtype not in allowed:
            ctx.add("error", "structure", where, f"reference target is not a {expected}")
    return check


def nhs_number_check(tcode: str) -> Check | None:
    if tcode != "Identifier":
        return None

    def check(v: Any, loc: str, ctx: Context) -> None:
        if isinstance(v, dict) and v.get("system") == NHS_NUMBER_SYSTEM:
            value = v.get("value")
            if isinstance(value, str) and not is_valid_nhs_number(value):
                ctx.add("error", "value", loc + ".value", "NHS number fails the Modulus 11 check")
    return check
