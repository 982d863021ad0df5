"""Validate FHIR R4 JSON resources against Carethread, UK Core and base R4 profiles.

    profiles = load_profiles()                      # once, at start-up (ConfigError if profiles/ is broken)
    issues = profiles.validate(resource)            # list[ValidationIssue]; [] when valid
    outcome(issues)                                 # an R4 OperationOutcome dict

Profile choice: the ``profile`` argument, else every profile in ``meta.profile`` that is held, else
Carethread's profile for the resourceType, else UK Core's, else the base R4 definition.  A contained resource
is checked against its own ``meta.profile``, else UK Core's profile or the base definition (Carethread's
profiles describe what Carethread stores, not what a Flag may contain).

What is checked: cardinality (slices included), unknown elements, primitive formats, fixed and pattern
values, required and extensible bindings (ValueSets not held: one information issue per run), slicing
(value / pattern / exists discriminators; extensions by url), extension definitions (url known, value[x]
type, nested extensions), reference target types, the NHS number Modulus 11 check on every
``https://fhir.nhs.uk/Id/nhs-number`` identifier, and invariants (see :mod:`.invariants`).  Issues carry a
FHIRPath location and a diagnostic that names definitions only, never an instance value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adapter.conformance.invariants import Invariants
from adapter.conformance.plans import COMPLEX, COMPLEXES, PRIMITIVE, PRIMITIVES, Entry, Plan, Planner
from adapter.conformance.profiles import CT_BASE, HL7_SD, Element, TreeBuilder, read_definitions
from adapter.conformance.terminology import Terminology, expansion_problem
from adapter.errors import ConfigError

__all__ = ["DEFAULT_PROFILES_DIR", "ProfileSet", "ValidationIssue", "load_profiles", "outcome"]

DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
UKCORE_BASE = "https://fhir.hl7.org.uk/StructureDefinition/"
Severity = Literal["error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    severity: Severity
    code: str  # FHIR issue-type: required, structure, value, code-invalid, invariant, extension, not-found...
    expression: str  # FHIRPath location, e.g. Appointment.extension[0].valueCodeableConcept.coding[0].code
    diagnostics: str  # what rule failed; never an instance value


class Context:
    """Per-resource state of one validation walk."""

    __slots__ = ("issues", "resource", "root")

    def __init__(self, issues: list[ValidationIssue], resource: Any, root: Any) -> None:
        self.issues, self.resource, self.root = issues, resource, root

    def add(self, severity: Severity, code: str, expression: str, diagnostics: str) -> None:
        self.issues.append(ValidationIssue(severity, code, expression, diagnostics))


def outcome(issues: list[ValidationIssue]) -> dict[str, Any]:
    """An R4 OperationOutcome for the issues (one 'informational' issue when there are none)."""
    if not issues:
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "informational", "diagnostics": "no issues"}]}
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": i.severity, "code": i.code, "diagnostics": i.diagnostics, "expression": [i.expression]}
                      for i in issues]}


def load_profiles(directory: Path = DEFAULT_PROFILES_DIR) -> ProfileSet:
    """Load every profile, extension, ValueSet and CodeSystem under ``directory`` and compile them."""
    return ProfileSet(directory)


class ProfileSet:
    """The loaded profiles, compiled into per-type plans; thread-safe to share once built."""

    def __init__(self, directory: Path) -> None:
        self.defs = read_definitions(directory)
        self._builder = TreeBuilder(self.defs)
        self._terminology = Terminology(self.defs.value_sets, self.defs.code_systems)
        self._announced: set[str] = set()
        self._planner = Planner(self._builder, self._terminology, Invariants(), self._announce)
        self._invariants = self._planner.invariants
        self._roots: dict[str, tuple[Plan, str]] = {}  # profile url -> (root plan, resourceType)
        self._extensions: dict[str, Entry] = {}
        self._defaults: dict[str, str] = {}  # resourceType -> ours, else UK Core, else base R4
        self._contained_defaults: dict[str, str] = {}  # a contained resource: UK Core, else base R4
        self._compile()

    # --- loading ------------------------------------------------------------------------------------
    def _compile(self) -> None:
        for url, vs in self.defs.value_sets.items():
            if url.startswith(CT_BASE):
                problem = expansion_problem(vs, self.defs.code_systems)
                if problem or self._terminology.expand(url) is None:
                    name = self.defs.file_of(url)
                    raise ConfigError(f"{name}: ValueSet cannot be expanded ({problem or 'unsupported compose'})",
                                      location=name)
        rank: dict[str, int] = {}
        for url, sd in self.defs.structure_definitions.items():
            tree = self._builder.tree(url)
            if sd.get("kind") == "resource" and not sd.get("abstract"):
                plan = self._planner.plan(tree, sd["type"])
                self._roots[url] = (plan, sd["type"])
                order = 0 if url.startswith(CT_BASE) else 1 if url.startswith(UKCORE_BASE) else 2
                if sd["type"] not in rank or order < rank[sd["type"]]:
                    rank[sd["type"]], self._defaults[sd["type"]] = order, url
                if order > 0 and (sd["type"] not in self._contained_defaults or order == 1):
                    self._contained_defaults[sd["type"]] = url
            elif sd.get("type") == "Extension" and sd.get("kind") == "complex-type" and url != HL7_SD + "Extension":
                self._extensions[url] = Entry("extension", tree, "Extension")
        for url in self._roots:
            if url.startswith((CT_BASE, UKCORE_BASE)):
                self._warm(self._roots[url][0], set())

    def _warm(self, plan: Plan, seen: set[int]) -> None:
        if id(plan) in seen:
            return
        seen.add(id(plan))
        for entry in plan.keymap.values():
            for e in (entry, *(s for _, s in entry.slices), *(entry.ext_slices or {}).values()):
                if e.prim is None and not e.is_resource or e.underscore:
                    self._warm(self._planner.entry_plan(e), seen)

    def _announce(self, what: str, loc: str, diagnostics: str, ctx: Context) -> None:
        if what not in self._announced:
            self._announced.add(what)
            ctx.add("information", "not-found", loc, diagnostics)

    @property
    def profiles(self) -> list[str]:
        """Canonical URLs of the resource profiles held (Carethread, UK Core and base R4)."""
        return sorted(self._roots)

    def default_profile(self, resource_type: str) -> str | None:
        return self._defaults.get(resource_type)

    def tree(self, url: str) -> Element:
        """The element tree (snapshot) of a held StructureDefinition."""
        return self._builder.tree(url)

    # --- validation -----------------------------------------------------------------------------------
    def validate(self, resource: dict[str, Any], profile: str | None = None) -> list[ValidationIssue]:
        issues: list[ValidationIssue] = []
        ctx = Context(issues, resource, resource)
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            ctx.add("error", "structure", "Resource", "not a FHIR resource: no resourceType")
            return issues
        for url in self._choose(resource, rtype, profile, rtype, ctx):
            plan, ptype = self._roots[url]
            if ptype != rtype:
                ctx.add("error", "structure", rtype, f"profile {url} is for {ptype} resources")
                continue
            try:
                self._complex(resource, plan, rtype, ctx)
            except RecursionError:
                ctx.add("error", "structure", rtype, "nested too deeply to validate")
        if len(issues) > 1:
            issues[:] = list(dict.fromkeys(issues))
        return issues

    def _choose(self, resource: dict[str, Any], rtype: str, profile: str | None, loc: str, ctx: Context,
                contained: bool = False) -> list[str]:
        if profile is not None:
            url = profile.split("|")[0]
            if url not in self._roots:
                ctx.add("error", "not-found", loc, f"profile {url} is not held")
                return []
            return [url]
        meta = resource.get("meta")
        declared = meta.get("profile") if isinstance(meta, dict) else None
        chosen = []
        for i, url in enumerate(declared if isinstance(declared, list) else ()):
            if isinstance(url, str) and url.split("|")[0] in self._roots:
                chosen.append(url.split("|")[0])
            elif isinstance(url, str):  # the URL is instance data: located, not quoted
                self._announce("profile " + url, f"{loc}.meta.profile[{i}]",
                               "a declared profile is not held: not checked (reported once per run)", ctx)
        if chosen:
            return chosen
        default = self._defaults.get(rtype) if not contained else self._contained_defaults.get(rtype)
        if default is None:
            self._announce("type " + rtype, loc, f"no definition held for {rtype}: not checked (reported once per run)", ctx)
            return []
        return [default]

    def _complex(self, value: Any, plan: Plan, loc: str, ctx: Context) -> None:
        """Validate one JSON object against a plan.  The loop handles the common cases inline (a primitive
        with nothing but its format to check, a plain complex value or array of them); everything else
        (errors, slices, extensions, contained resources) goes to :meth:`_member`."""
        if type(value) is not dict:
            ctx.add("error", "structure", loc, "expected a JSON object")
            return
        keymap = plan.keymap
        for key, v in value.items():
            e = keymap.get(key)
            if e is None:
                if key != "resourceType" or plan.resource_type is None:
                    self._unknown(key, plan, loc, ctx)
                continue
            kind = e.kind
            if kind == PRIMITIVE:
                if type(v) in e.pytypes and (e.rx is None or e.rx(v)):
                    for check in e.checks:
                        check(v, f"{loc}.{key}", ctx)
                    continue
            elif kind == COMPLEX:
                if type(v) is dict:
                    here = f"{loc}.{key}"
                    self._complex(v, e.plan or self._planner.entry_plan(e), here, ctx)
                    for check in e.checks:
                        check(v, here, ctx)
                    continue
            elif kind == PRIMITIVES:
                if type(v) is list and v and (e.max is None or len(v) <= e.max) and len(v) >= e.min:
                    pytypes, rx = e.pytypes, e.rx
                    for item in v:
                        if type(item) not in pytypes or (rx is not None and not rx(item)):
                            break
                    else:
                        if e.checks:
                            for i, item in enumerate(v):
                                for check in e.checks:
                                    check(item, f"{loc}.{key}[{i}]", ctx)
                        continue
            elif kind == COMPLEXES and type(v) is list and v and (e.max is None or len(v) <= e.max) and len(v) >= e.min:
                sub = e.plan or self._planner.entry_plan(e)
                checks = e.checks
                for i, item in enumerate(v):
                    here = f"{loc}.{key}[{i}]"
                    self._complex(item, sub, here, ctx)
                    for check in checks:
                        check(item, here, ctx)
                continue
            self._member(key, v, e, loc, ctx)
        if plan.tail:
            self._tail(value, plan, loc, ctx)
        elif len(value) - ("id" in value) - (plan.resource_type is not None) <= 0:
            ctx.add("error", "invariant", loc, "ele-1: an element must have a value or children")

    def _member(self, key: str, v: Any, e: Entry, loc: str, ctx: Context) -> None:
        """One member of an object, in full: cardinality, JSON shape, slices, extensions, every check."""
        if e.is_array:
            if type(v) is not list:
                ctx.add("error", "structure", f"{loc}.{key}", "expected a JSON array")
                return
            if not v:
                ctx.add("error", "invariant", f"{loc}.{key}", "ele-1: an array must not be empty")
                return
            if e.max is not None and len(v) > e.max:
                ctx.add("error", "structure", f"{loc}.{key}", f"at most {e.max} allowed ({e.node.path})")
            elif len(v) < e.min:
                ctx.add("error", "required", f"{loc}.{key}", f"at least {e.min} required ({e.node.path})")
            if e.ext_slices is not None or e.is_extension:
                self._extensions_of(v, e, f"{loc}.{key}", ctx)
            elif e.slices:
                self._sliced(v, e, f"{loc}.{key}", ctx)
            else:
                base = f"{loc}.{key}"
                for i, item in enumerate(v):
                    self._item(item, e, f"{base}[{i}]", ctx)
        elif type(v) is list:
            ctx.add("error", "structure", f"{loc}.{key}", "expected a single value, not an array")
        else:
            if e.max == 0:
                ctx.add("error", "structure", f"{loc}.{key}", f"not allowed here ({e.node.path} max 0)")
            self._item(v, e, f"{loc}.{key}", ctx)

    def _tail(self, value: dict[str, Any], plan: Plan, loc: str, ctx: Context) -> None:
        """After the members: ele-1, required members, ext-1, invariants."""
        if len(value) - ("id" in value) - (plan.resource_type is not None) <= 0:
            ctx.add("error", "invariant", loc, "ele-1: an element must have a value or children")
        for name, keys in plan.required:
            for k in keys:
                if k in value:
                    break
            else:
                ctx.add("error", "required", f"{loc}.{name.removesuffix('[x]')}", "missing required element")
        if plan.is_extension and ("extension" in value) == any(k.startswith("value") for k in value):
            ctx.add("error", "invariant", loc, "ext-1: an extension has either extensions or a value[x], not both")
        if plan.constraints:
            self._invariants.check(plan.constraints, value, plan.type_name, loc, ctx)

    @staticmethod
    def _unknown(key: str, plan: Plan, loc: str, ctx: Context) -> None:
        for prefix in plan.choices:
            if key.startswith(prefix) and key[len(prefix):][:1].isupper():
                ctx.add("error", "extension" if plan.is_extension else "structure", f"{loc}.{key}",
                        f"type not allowed for {prefix}[x]")
                return
        ctx.add("error", "structure", f"{loc}.{key}", "unknown element")

    def _item(self, v: Any, e: Entry, loc: str, ctx: Context) -> None:
        prim = e.prim
        if e.underscore:
            if v is not None:
                self._complex(v, self._planner.entry_plan(e), loc, ctx)
            return
        if prim is not None:
            pytypes, rx = prim
            if type(v) not in pytypes:
                ctx.add("error", "value", loc, f"not a valid {e.tcode}")
                return
            if rx is not None and not rx(v):
                ctx.add("error", "value", loc, f"not a valid {e.tcode}")
                return
        elif e.is_resource:
            self._contained(v, loc, ctx)
            return
        else:
            plan = e.plan or self._planner.entry_plan(e)
            self._complex(v, plan, loc, ctx)
        for check in e.checks:
            check(v, loc, ctx)

    def _contained(self, v: Any, loc: str, ctx: Context) -> None:
        rtype = v.get("resourceType") if isinstance(v, dict) else None
        if not isinstance(rtype, str):
            ctx.add("error", "structure", loc, "not a FHIR resource: no resourceType")
            return
        inner = Context(ctx.issues, v, ctx.root)
        for url in self._choose(v, rtype, None, loc, inner, contained=True):
            plan, ptype = self._roots[url]
            if ptype == rtype:
                self._complex(v, plan, loc, inner)

    def _extensions_of(self, values: list[Any], e: Entry, loc: str, ctx: Context) -> None:
        counts: dict[int, int] = {}
        slices = e.ext_slices or {}
        for i, item in enumerate(values):
            iloc = f"{loc}[{i}]"
            url = item.get("url") if type(item) is dict else None
            target = slices.get(url) if isinstance(url, str) else None
            if target is not None:
                n = counts[id(target)] = counts.get(id(target), 0) + 1
                if target.max is not None and n > target.max:
                    ctx.add("error", "structure", iloc, f"extension slice {target.label}: at most {target.max} allowed")
                self._item(item, target, iloc, ctx)
                continue
            definition = self._extensions.get(url) if isinstance(url, str) else None
            if definition is not None:
                self._item(item, definition, iloc, ctx)
                continue
            if isinstance(url, str):
                modifier = e.key == "modifierExtension"
                severity: Any = "error" if modifier or url.startswith(CT_BASE) else "warning"
                ctx.add(severity, "extension", iloc + ".url", ("modifier extension" if modifier else "extension")
                        + " definition not known: only the base Extension structure is checked")
            self._item(item, e, iloc, ctx)
        for target in e.ext_required:
            if counts.get(id(target), 0) < target.min:
                ctx.add("error", "required", loc, f"extension slice {target.label}: at least {target.min} required")

    def _sliced(self, values: list[Any], e: Entry, loc: str, ctx: Context) -> None:
        counts = [0] * len(e.slices)
        for i, item in enumerate(values):
            iloc = f"{loc}[{i}]"
            for j, (match, s) in enumerate(e.slices):
                if match(item):
                    counts[j] += 1
                    if s.max is not None and counts[j] > s.max:
                        ctx.add("error", "structure", iloc, f"slice {s.label}: at most {s.max} allowed")
                    self._item(item, s, iloc, ctx)
                    break
            else:
                if e.closed:
                    ctx.add("error", "structure", iloc, f"matches no slice of {e.node.path} (closed slicing)")
                self._item(item, e, iloc, ctx)
        for j, (_, s) in enumerate(e.slices):
            if counts[j] < s.min:
                ctx.add("error", "required", loc, f"slice {s.label}: at least {s.min} required")
