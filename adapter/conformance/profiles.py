"""Conformance resources: loading, indexing and element trees (a snapshot built by merging a differential
over its base).

``read_definitions(directory)`` reads every StructureDefinition, ValueSet and CodeSystem under ``profiles/``
(Carethread's own, the UK Core copies in ``ukcore/``, the base R4 copies in ``fhir-r4/``); other JSON there
(a CapabilityStatement, say) is ignored.  :class:`TreeBuilder` turns a StructureDefinition into a tree of
:class:`Element`: from its snapshot when it has one (the base R4 definitions), else by copying the tree of
its ``baseDefinition`` and applying the differential element by element (UK Core and Carethread profiles,
which are published as differentials only).  Children of a datatype are not copied into every element that
uses it: they are shared, read-only, until a differential constrains something inside (copy on write).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter.errors import ConfigError

__all__ = ["CT_BASE", "HL7_SD", "Constraint", "Definitions", "Element", "Slicing", "TreeBuilder", "TypeRef",
           "read_definitions"]

CT_BASE = "https://fhir.carethread.org/"
HL7_SD = "http://hl7.org/fhir/StructureDefinition/"
_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_BEST_PRACTICE_EXT = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"
_SYSTEM_TYPES = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal",
                 "Date": "date", "DateTime": "dateTime", "Time": "time"}
_KINDS = {"StructureDefinition", "ValueSet", "CodeSystem"}


@dataclass(frozen=True, slots=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str  # 'error' | 'warning'
    human: str
    expression: str | None
    best_practice: bool
    source: str


@dataclass(frozen=True, slots=True)
class Slicing:
    discriminators: tuple[tuple[str, str], ...]  # (type, path)
    rules: str  # open | closed | openAtEnd


class _Missing:
    """The 'no fixed/pattern value' marker; survives deepcopy as the same object."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


@dataclass(eq=False)
class Element:
    """One element of a StructureDefinition, with its children (or ``None``: those of its datatype)."""

    name: str  # last path segment: 'identifier', 'value[x]'
    path: str  # 'Patient.identifier'
    min: int
    max: int | None  # None: unbounded
    is_array: bool  # the base definition's max is not 1: the JSON is an array whatever a profile says
    types: list[TypeRef]
    fixed: Any = _MISSING
    pattern: Any = _MISSING
    binding: tuple[str, str] | None = None  # (strength, ValueSet canonical)
    constraints: list[Constraint] = field(default_factory=list)
    slicing: Slicing | None = None
    slices: list[Element] = field(default_factory=list)
    slice_name: str | None = None
    children: dict[str, Element] | None = None
    content_ref: str | None = None  # '#Provenance.agent'
    ext_url: str | None = None  # the extension definition this element is constrained to

    @property
    def has_fixed(self) -> bool:
        return self.fixed is not _MISSING

    @property
    def has_pattern(self) -> bool:
        return self.pattern is not _MISSING


@dataclass
class Definitions:
    structure_definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    value_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # canonical -> file name relative to the folder

    def file_of(self, url: str) -> str:
        return self.files.get(url, url)


def read_definitions(directory: Path) -> Definitions:
    """Read and index every conformance resource under ``directory``; ConfigError names a broken file."""
    if not directory.is_dir():
        raise ConfigError(f"profiles folder not found: {directory}", location=str(directory))
    defs = Definitions()
    for path in sorted(directory.rglob("*.json")):
        name = str(path.relative_to(directory))
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{name}: not a readable JSON file ({type(exc).__name__})", location=name) from None
        if not isinstance(resource, dict) or resource.get("resourceType") not in _KINDS:
            continue
        url = resource.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{name}: {resource['resourceType']} has no url", location=name)
        if url in defs.files:
            raise ConfigError(f"{name}: url already defined by {defs.files[url]}", location=name)
        defs.files[url] = name
        if resource["resourceType"] == "StructureDefinition":
            if not isinstance(resource.get("snapshot") or resource.get("differential"), dict):
                raise ConfigError(f"{name}: StructureDefinition has neither snapshot nor differential", location=name)
            defs.structure_definitions[url] = resource
        elif resource["resourceType"] == "ValueSet":
            defs.value_sets[url] = resource
        else:
            defs.code_systems[url] = resource
    return defs


def _type_code(t: Mapping[str, Any]) -> str:
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext.get("url") == _FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri"))
        return _SYSTEM_TYPES.get(code.rsplit(".", 1)[1], "string")
    return str(code)


def _types(raw: list[Mapping[str, Any]]) -> list[TypeRef]:
    return [TypeRef(_type_code(t), tuple(p.split("|")[0] for p in t.get("profile", [])),
                    tuple(p.split("|")[0] for p in t.get("targetProfile", []))) for t in raw]


def _constraints(raw: list[Mapping[str, Any]], default_source: str) -> list[Constraint]:
    out = []
    for c in raw:
        best = any(e.get("url") == _BEST_PRACTICE_EXT and e.get("valueBoolean") for e in c.get("extension", []))
        out.append(Constraint(c["key"], c.get("severity", "error"), c.get("human", ""), c.get("expression"), best,
                              c.get("source", default_source)))
    return out


def _max(value: str) -> int | None:
    return None if value == "*" else int(value)


class TreeBuilder:
    """Builds (and memoizes) the element tree of each StructureDefinition and datatype."""

    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self._trees: dict[str, Element] = {}
        self._building: set[str] = set()

    # --- public ---------------------------------------------------------------------------------
    def tree(self, url: str) -> Element:
        url = url.split("|")[0]
        tree = self._trees.get(url)
        if tree is not None:
            return tree
        sd = self.defs.structure_definitions.get(url)
        if sd is None:
            raise ConfigError(f"unknown StructureDefinition {url}", location=url)
        if url in self._building:
            raise ConfigError(f"{self.defs.file_of(url)}: circular baseDefinition", location=self.defs.file_of(url))
        self._building.add(url)
        try:
            if isinstance(sd.get("snapshot"), dict) and sd["snapshot"].get("element"):
                tree = self._from_snapshot(sd)
            else:
                tree = self._from_differential(sd)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            name = self.defs.file_of(url)
            raise ConfigError(f"{name}: malformed element definition ({type(exc).__name__})", location=name) from None
        finally:
            self._building.discard(url)
        self._trees[url] = tree
        return tree

    def datatype(self, code: str) -> Element | None:
        """The tree of a complex or primitive datatype, or None if its definition is not held."""
        url = HL7_SD + code
        if url not in self.defs.structure_definitions:
            return None
        return self.tree(url)

    def children(self, element: Element, type_code: str) -> dict[str, Element]:
        """Children of an element as ``type_code`` (shared: do not mutate)."""
        if element.children is not None:
            return element.children
        if element.content_ref is not None:
            return self._content_target(element).children or {}
        dt = self.datatype(type_code)
        return dt.children or {} if dt is not None else {}

    # --- snapshot ---------------------------------------------------------------------------------
    def _from_snapshot(self, sd: Mapping[str, Any]) -> Element:
        root: Element | None = None
        by_id: dict[str, Element] = {}
        for ed in sd["snapshot"]["element"]:
            el_id = ed.get("id") or ed["path"]
            node = Element(
                name=ed["path"].rsplit(".", 1)[-1], path=ed["path"], min=int(ed.get("min", 0)),
                max=_max(ed.get("max", "*")), is_array=ed.get("base", {}).get("max", ed.get("max", "*")) != "1",
                types=_types(ed.get("type", [])), constraints=_constraints(ed.get("constraint", []), sd["url"]),
                content_ref=ed.get("contentReference"), slice_name=ed.get("sliceName"))
            self._set_values(node, ed)
            if "slicing" in ed:
                node.slicing = self._slicing(ed["slicing"])
            if root is None:
                root = node
                node.children = {}
                by_id[el_id] = node
                continue
            parent_id, _, last = el_id.rpartition(".")
            parent = by_id.get(parent_id)
            if parent is None:
                raise ValueError(el_id)
            if node.slice_name is not None:
                base = (parent.children or {}).get(last.split(":")[0])
                if base is None:
                    raise ValueError(el_id)
                base.slices.append(node)
            else:
                if parent.children is None:
                    parent.children = {}
                parent.children[node.name] = node
            by_id[el_id] = node
            if node.types and node.types[0].code == "Extension" and node.types[0].profiles and node.slice_name:
                node.ext_url = node.types[0].profiles[0]
        assert root is not None
        root.is_array = False
        return root

    # --- differential ------------------------------------------------------------------------------
    def _from_differential(self, sd: Mapping[str, Any]) -> Element:
        base_url = sd.get("baseDefinition")
        name = self.defs.file_of(sd["url"])
        if not base_url or base_url.split("|")[0] not in self.defs.structure_definitions:
            raise ConfigError(f"{name}: unknown baseDefinition {base_url}", location=name)
        root = copy.deepcopy(self.tree(base_url))
        for ed in sd["differential"]["element"]:
            el_id = ed.get("id") or ed["path"]
            node = self._resolve(root, el_id, name)
            self._apply(node, ed, sd["url"], name)
        return root

    def _resolve(self, root: Element, el_id: str, name: str) -> Element:
        segments = el_id.split(".")
        node = root
        for seg in segments[1:]:
            elem_name, _, slice_name = seg.partition(":")
            children = self._own_children(node, name, el_id)
            child = children.get(elem_name) or self._renamed_choice(children, elem_name)
            if child is None:
                raise ConfigError(f"{name}: element {el_id} is not in the base definition", location=name)
            if slice_name and elem_name.endswith("[x]") and self._renamed_choice({elem_name: child}, slice_name):
                slice_name = ""  # a type slice 'value[x]:valueCodeableConcept' constrains the choice itself
            if slice_name:
                found = next((s for s in child.slices if s.slice_name == slice_name), None)
                if found is None:
                    found = copy.deepcopy(child)
                    found.slicing, found.slices, found.slice_name = None, [], slice_name
                    child.slices.append(found)
                node = found
            else:
                node = child
        return node

    @staticmethod
    def _renamed_choice(children: Mapping[str, Element], elem_name: str) -> Element | None:
        for key, child in children.items():
            if key.endswith("[x]") and elem_name.startswith(key[:-3]):
                suffix = elem_name[len(key) - 3:]
                if any(t.code[:1].upper() + t.code[1:] == suffix for t in child.types):
                    return child
        return None

    def _own_children(self, node: Element, name: str, el_id: str) -> dict[str, Element]:
        if node.children is None:
            if node.content_ref is not None:
                source = self._content_target(node).children or {}
            else:
                codes = {t.code for t in node.types}
                if len(codes) != 1:
                    raise ConfigError(f"{name}: {el_id} constrains inside an element of several types", location=name)
                dt = self.datatype(codes.pop())
                if dt is None:
                    raise ConfigError(f"{name}: {el_id} needs a datatype definition that is not held", location=name)
                source = dt.children or {}
            node.children = {k: copy.deepcopy(v) for k, v in source.items()}
        return node.children

    def _content_target(self, node: Element) -> Element:
        ref = (node.content_ref or "#").split("#", 1)[1]
        root_type = ref.split(".")[0]
        root = self.tree(HL7_SD + root_type)
        target = root
        for seg in ref.split(".")[1:]:
            target = (target.children or {})[seg]
        return target

    def _apply(self, node: Element, ed: Mapping[str, Any], url: str, name: str) -> None:
        if "type" in ed:
            node.types = _types(ed["type"])
            ext = next((t for t in node.types if t.code == "Extension" and t.profiles), None)
            if ext is not None:
                ext_url = ext.profiles[0]
                if ext_url not in self.defs.structure_definitions:
                    raise ConfigError(f"{name}: unknown extension definition {ext_url}", location=name)
                ext_root = self.tree(ext_url)
                node.children = {k: copy.deepcopy(v) for k, v in (ext_root.children or {}).items()}
                node.constraints = list(ext_root.constraints)
                node.ext_url = ext_url
                if "min" not in ed:
                    node.min = ext_root.min if node.slice_name else node.min
                if "max" not in ed and ext_root.max is not None:
                    node.max = ext_root.max if node.max is None else min(node.max, ext_root.max)
            for t in node.types:
                for target in t.targets:
                    if (url.startswith(CT_BASE) and target not in self.defs.structure_definitions
                            and not target.startswith(HL7_SD)):  # a base resource type needs no definition
                        raise ConfigError(f"{name}: unknown target profile {target}", location=name)
        if "min" in ed:
            node.min = int(ed["min"])
        if "max" in ed:
            node.max = _max(ed["max"])
        self._set_values(node, ed)
        if "binding" in ed:
            b = ed["binding"]
            vs = b.get("valueSet")
            if vs and url.startswith(CT_BASE) and vs.split("|")[0] not in self.defs.value_sets:
                raise ConfigError(f"{name}: unknown ValueSet {vs}", location=name)
            node.binding = (b["strength"], vs.split("|")[0]) if vs else None
        if "constraint" in ed:
            new = _constraints(ed["constraint"], url)
            keys = {c.key for c in new}
            node.constraints = [c for c in node.constraints if c.key not in keys] + new
        if "slicing" in ed:
            node.slicing = self._slicing(ed["slicing"])

    @staticmethod
    def _set_values(node: Element, ed: Mapping[str, Any]) -> None:
        for key, value in ed.items():
            if key.startswith("fixed") and key != "fixed":
                node.fixed = value
            elif key.startswith("pattern") and key != "pattern":
                node.pattern = value
        b = ed.get("binding")
        if b is not None and b.get("valueSet") and node.binding is None:
            node.binding = (b["strength"], b["valueSet"].split("|")[0])

    @staticmethod
    def _slicing(raw: Mapping[str, Any]) -> Slicing:
        return Slicing(tuple((d["type"], d["path"]) for d in raw.get("discriminator", [])), raw.get("rules", "open"))
