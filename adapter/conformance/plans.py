"""Compiled validation plans: one per (element, type), built once from the element trees.

A :class:`Plan` is what the validator's walk needs for one JSON object: which keys may appear (choice
elements expanded to ``valueString``, ``valueCodeableConcept``...; primitives' ``_x`` siblings), each as an
:class:`Entry` carrying its cardinality, its primitive check, its value checks (fixed, pattern, binding,
reference target, NHS number) as closures, and its slices; the required keys; and the invariants to
evaluate on the object.  Everything that can be decided from the definitions alone is decided here, so the
walk only looks at the instance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from adapter.conformance.checks import (
    Announce,
    Check,
    binding_check,
    contains,
    fixed_check,
    nhs_number_check,
    pattern_check,
    pattern_matcher,
    reference_check,
    values_at,
)
from adapter.conformance.invariants import ELE_1, EXT_1, TRIGGERS, FastPath, Invariants
from adapter.conformance.profiles import HL7_SD, Constraint, Element, TreeBuilder
from adapter.conformance.terminology import Terminology
from adapter.errors import ConfigError

__all__ = ["COMPLEX", "COMPLEXES", "OTHER", "PRIMITIVE", "PRIMITIVES", "Entry", "Plan", "Planner"]

# Entry.kind: what the walk's fast path may do with a member without looking further
OTHER, PRIMITIVE, PRIMITIVES, COMPLEX, COMPLEXES = range(5)

_INT_TYPES = {"integer", "positiveInt", "unsignedInt", "integer64"}


class Entry:
    """One JSON key of a Plan."""

    __slots__ = (
        "checks",
        "closed",
        "ext_required",
        "ext_slices",
        "is_array",
        "is_extension",
        "is_resource",
        "key",
        "kind",
        "label",
        "max",
        "min",
        "node",
        "plan",
        "prim",
        "pytypes",
        "rx",
        "slices",
        "tcode",
        "underscore",
    )

    def __init__(self, key: str, node: Element, tcode: str) -> None:
        self.key, self.node, self.tcode = key, node, tcode
        self.is_array, self.min, self.max = node.is_array, node.min, node.max
        self.prim: tuple[tuple[type, ...], Callable[[Any], Any] | None] | None = None
        self.checks: tuple[Check, ...] = ()
        self.plan: Plan | None = None
        self.ext_slices: dict[str, Entry] | None = None
        self.ext_required: tuple[Entry, ...] = ()
        self.slices: tuple[tuple[Callable[[Any], bool], Entry], ...] = ()
        self.closed = False
        self.is_resource = tcode == "Resource"
        self.is_extension = tcode == "Extension"
        self.underscore = False
        self.label = node.slice_name or key
        self.kind = OTHER
        self.pytypes: tuple[type, ...] = ()
        self.rx: Callable[[Any], Any] | None = None


class Plan:
    """How to validate one JSON object of a given element and type."""

    __slots__ = ("choices", "constraints", "is_extension", "keymap", "required", "resource_type", "tail", "type_name")

    def __init__(self) -> None:
        self.keymap: dict[str, Entry] = {}
        self.required: tuple[tuple[str, tuple[str, ...]], ...] = ()
        # (invariant, fast path or None, trigger key: skip when absent from the object, or None)
        self.constraints: tuple[tuple[Constraint, FastPath | None, str | None], ...] = ()
        self.type_name = ""
        self.resource_type: str | None = None
        self.is_extension = False
        self.choices: tuple[str, ...] = ()  # 'value' for value[x]: names an unknown valueFoo precisely
        self.tail = False  # anything to check after the members (required members, ext-1, invariants)



class Planner:
    """Builds and memoizes Plans; holds the primitive checks and value-check factories."""

    def __init__(self, builder: TreeBuilder, terminology: Terminology, invariants: Invariants,
                 announce: Announce) -> None:
        self.builder, self.terminology, self.invariants = builder, terminology, invariants
        self._announce = announce
        self._plans: dict[tuple[int, str], Plan] = {}
        self._primitives: dict[str, tuple[tuple[type, ...], Callable[[Any], Any] | None]] = {}
        for url, sd in builder.defs.structure_definitions.items():
            if sd.get("kind") == "primitive-type" and url.startswith(HL7_SD):
                self._primitives[sd["type"]] = self._primitive(sd)

    @staticmethod
    def _primitive(sd: dict[str, Any]) -> tuple[tuple[type, ...], Callable[[Any], Any] | None]:
        name = sd["type"]
        regex = None
        for ed in sd.get("snapshot", {}).get("element", []):
            if ed["path"] == f"{name}.value":
                for t in ed.get("type", []):
                    for ext in t.get("extension", []):
                        if ext.get("url") == "http://hl7.org/fhir/StructureDefinition/regex":
                            regex = ext["valueString"]
        if name == "boolean":
            return (bool,), None
        if name == "decimal":
            return (int, float), None
        if name in _INT_TYPES:
            if not regex:
                return (int,), None
            fullmatch = re.compile(regex).fullmatch
            return (int,), lambda v: fullmatch(str(v))
        if name in ("string", "markdown") or not regex:
            # R4's string regex [ \r\n\t\S]+ would reject a no-break space (Python's and JavaScript's \s
            # include it), which real names and addresses carry: only the "not empty" rule is applied.
            return (str,), bool
        return (str,), re.compile(regex).fullmatch

    def is_primitive(self, code: str) -> bool:
        return code in self._primitives or code == "xhtml"

    def plan(self, node: Element, tcode: str) -> Plan:
        key = (id(node), tcode)
        plan = self._plans.get(key)
        if plan is None:  # filled before it is published: another thread never sees half a plan
            plan = Plan()
            self._fill(plan, node, tcode)
            plan = self._plans.setdefault(key, plan)
        return plan

    def entry_plan(self, entry: Entry) -> Plan:
        if entry.plan is None:
            entry.plan = self.plan(entry.node, entry.tcode)
        return entry.plan

    # --- building ----------------------------------------------------------------------------------
    def _fill(self, plan: Plan, node: Element, tcode: str) -> None:
        children = self.builder.children(node, tcode)
        if self.is_primitive(tcode):
            children = {k: v for k, v in children.items() if k in ("id", "extension")}
        plan.is_extension = tcode == "Extension"
        if "." not in node.path and node.path == tcode:
            plan.type_name = tcode
            sd = self.builder.defs.structure_definitions.get(HL7_SD + tcode, {})
            if sd.get("kind") == "resource":
                plan.resource_type = tcode
        elif tcode in ("BackboneElement", "Element") or not node.types:
            plan.type_name = node.path
        else:
            plan.type_name = tcode
        required: list[tuple[str, tuple[str, ...]]] = []
        for name, child in children.items():
            keys: list[str] = []
            codes = [t.code for t in child.types] or ["BackboneElement"]
            for code in codes:
                key = name[:-3] + code[:1].upper() + code[1:] if name.endswith("[x]") else name
                entry = self._entry(key, child, code)
                plan.keymap[key] = entry
                keys.append(key)
                if self.is_primitive(code):
                    under = Entry("_" + key, child, code)
                    under.underscore = True
                    plan.keymap["_" + key] = under
                    keys.append("_" + key)
            if child.min > 0:
                required.append((name, tuple(keys)))
        plan.required = tuple(required)
        plan.choices = tuple(name[:-3] for name in children if name.endswith("[x]"))
        plan.constraints = self._constraints(node, tcode)
        plan.tail = bool(plan.required or plan.constraints or plan.is_extension)

    def _constraints(self, node: Element, tcode: str) -> tuple[tuple[Constraint, FastPath | None, str | None], ...]:
        found: dict[str, Constraint] = {}
        sources = [node.constraints]
        root = self.builder.datatype(tcode) if not self.is_primitive(tcode) and tcode != node.path else None
        if root is not None and root is not node:
            sources.insert(0, root.constraints)
        for constraints in sources:
            for c in constraints:
                found[c.key] = c
        out = []
        for c in found.values():
            if c.best_practice or not c.expression or (c.key, c.expression) in {("ele-1", ELE_1), ("ext-1", EXT_1)}:
                continue
            fast = self.invariants.fast_path(c.key, c.expression)
            out.append((c, fast, TRIGGERS.get(c.key) if fast is not None else None))
        return tuple(out)

    def _entry(self, key: str, node: Element, tcode: str) -> Entry:
        entry = Entry(key, node, tcode)
        if self.is_primitive(tcode):
            entry.prim = self._primitives.get(tcode, ((str,), bool))
        defs = self.builder.defs.structure_definitions
        entry.checks = tuple(c for c in (
            fixed_check(node), pattern_check(node), binding_check(node, tcode, self.terminology, self._announce),
            reference_check(node, tcode, defs), nhs_number_check(tcode),
            self._primitive_invariants(node, tcode) if entry.prim is not None else None) if c is not None)
        if node.slices and entry.is_array:
            if entry.is_extension or node.name in ("extension", "modifierExtension"):
                entry.ext_slices = {}
                for s in node.slices:
                    url = s.ext_url or ((s.children or {}).get("url") or s).fixed
                    if not isinstance(url, str):
                        raise ConfigError(f"extension slice {s.slice_name} of {s.path} has no url", location=s.path)
                    entry.ext_slices[url] = self._entry(key, s, tcode)
                entry.ext_required = tuple(e for e in entry.ext_slices.values() if e.min > 0)
            elif node.slicing is not None:
                entry.slices = tuple((self._matcher(s, tcode, node), self._entry(key, s, tcode)) for s in node.slices)
                entry.closed = node.slicing.rules == "closed"
        if entry.prim is not None:
            entry.pytypes, entry.rx = entry.prim
            if entry.max != 0:
                entry.kind = PRIMITIVES if entry.is_array else PRIMITIVE
        elif (not entry.is_resource and not entry.is_extension and not entry.slices and entry.ext_slices is None
              and entry.max != 0):
            entry.kind = COMPLEXES if entry.is_array else COMPLEX
        return entry

    def _primitive_invariants(self, node: Element, tcode: str) -> Check | None:
        """Invariants on a primitive element (Narrative.div's txt-1/txt-2), as a value check."""
        constraints = tuple((c, self.invariants.fast_path(c.key, c.expression), None) for c in node.constraints
                            if not c.best_practice and c.expression and (c.key, c.expression) != ("ele-1", ELE_1))
        if not constraints:
            return None
        run = self.invariants.check
        return lambda v, loc, ctx: run(constraints, v, tcode, loc, ctx)

    def _matcher(self, s: Element, tcode: str, base: Element) -> Callable[[Any], bool]:
        tests: list[tuple[str, Any, str]] = []
        assert base.slicing is not None
        for dtype, path in base.slicing.discriminators:
            target: Element | None = s
            t = tcode
            if path != "$this":
                for seg in path.split("."):
                    target = self.builder.children(target, t).get(seg) if target is not None else None
                    t = target.types[0].code if target is not None and target.types else t
            if target is None:
                raise ConfigError(f"slice {s.slice_name} of {s.path}: discriminator path {path} not found", location=s.path)
            if dtype in ("value", "pattern") and target.has_fixed:
                tests.append((path, target.fixed, "fixed"))
            elif dtype in ("value", "pattern") and target.has_pattern:
                tests.append((path, target.pattern, "pattern"))
            elif dtype == "exists":
                tests.append((path, target.min > 0, "exists"))
            else:
                raise ConfigError(f"slice {s.slice_name} of {s.path}: discriminator {dtype} {path} is not supported",
                                  location=s.path)

        if len(tests) == 1:
            path, expected, mode = tests[0]
            if mode == "fixed" and "." not in path and path != "$this" and not isinstance(expected, (dict, list)):
                return lambda item: type(item) is dict and item.get(path) == expected
            if mode == "pattern" and path == "$this":
                return pattern_matcher(expected)

        def match(item: Any) -> bool:
            for path, expected, mode in tests:
                values = values_at(item, path)
                if mode == "exists":
                    if bool(values) != expected:
                        return False
                elif not any((v == expected) if mode == "fixed" else contains(v, expected) for v in values):
                    return False
            return True

        return match
