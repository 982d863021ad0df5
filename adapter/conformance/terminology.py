"""ValueSet expansion from the CodeSystems and ValueSets held in ``profiles/`` (no terminology server).

Supported: ``include``/``exclude`` of a whole CodeSystem (``content = complete`` only), of an enumerated
concept list (no CodeSystem needed: that is how SNOMED CT codes are bound), of other ValueSets, and the
hierarchical filters ``is-a``, ``descendent-of`` and ``=`` on the ``concept`` property (nested concepts, or a
``subsumedBy``/``parent`` property).  Anything else (an implicit or external CodeSystem such as SNOMED CT as a
whole, BCP-47 languages, a ``regex`` filter) makes the ValueSet *not expandable*: :meth:`Terminology.expand`
returns ``None`` and the validator skips the binding with one information issue per run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Expansion", "Terminology", "expansion_problem"]

Coding = tuple[str, str]  # (system, code)


@dataclass(frozen=True, slots=True)
class Expansion:
    """The codes of an expanded ValueSet."""

    url: str
    codings: frozenset[Coding]
    codes: frozenset[str]  # for a bound ``code`` element (its system is implied)
    systems: frozenset[str]  # systems the ValueSet draws on (extensible bindings warn only within these)

    def __contains__(self, coding: object) -> bool:
        return coding in self.codings


class _NotExpandable(Exception):
    pass


def _walk(concepts: list[dict[str, Any]], parent: str | None) -> Iterator[tuple[str, str | None]]:
    for concept in concepts:
        yield concept["code"], parent
        yield from _walk(concept.get("concept", []), concept["code"])


class _CodeSystemIndex:
    """Codes and the is-a hierarchy of one CodeSystem."""

    def __init__(self, cs: Mapping[str, Any]) -> None:
        self.complete = cs.get("content") == "complete"
        self.parents: dict[str, set[str]] = {}
        for code, parent in _walk(cs.get("concept", []), None):
            parents = self.parents.setdefault(code, set())
            if parent is not None:
                parents.add(parent)
        for concept_code, props in self._properties(cs.get("concept", [])):
            for prop in props:
                if prop.get("code") in ("subsumedBy", "parent") and "valueCode" in prop:
                    self.parents.setdefault(concept_code, set()).add(prop["valueCode"])
        self._children: dict[str, set[str]] = {}
        for code, parents in self.parents.items():
            for parent in parents:
                self._children.setdefault(parent, set()).add(code)

    @staticmethod
    def _properties(concepts: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for concept in concepts:
            yield concept["code"], concept.get("property", [])
            yield from _CodeSystemIndex._properties(concept.get("concept", []))

    def descendants(self, code: str) -> set[str]:
        out: set[str] = set()
        todo = [code]
        while todo:
            for child in self._children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out


def expansion_problem(vs: Mapping[str, Any], code_systems: Mapping[str, Any]) -> str | None:
    """Why a ValueSet of ours cannot be expanded from what is held (for load-time checks), or None."""
    for part in vs.get("compose", {}).get("include", []) + vs.get("compose", {}).get("exclude", []):
        system = part.get("system")
        if system and not part.get("concept") and system not in code_systems:
            return f"CodeSystem {system} is not held"
    return None


class Terminology:
    """Expands ValueSets (memoized) from the held ValueSets and CodeSystems."""

    def __init__(self, value_sets: Mapping[str, Mapping[str, Any]], code_systems: Mapping[str, Mapping[str, Any]]) -> None:
        self._value_sets = value_sets
        self._code_systems = code_systems
        self._indexes: dict[str, _CodeSystemIndex] = {}
        self._expansions: dict[str, Expansion | None] = {}

    def holds(self, url: str) -> bool:
        return url.split("|")[0] in self._value_sets

    def expand(self, url: str) -> Expansion | None:
        """The expansion of a ValueSet, or None when it is not held or not expandable from what is held."""
        key = url.split("|")[0]
        if key not in self._expansions:  # include cycles are caught by _expand's stack
            try:
                codings = self._expand(key, frozenset())
            except _NotExpandable:
                self._expansions[key] = None
            else:
                self._expansions[key] = Expansion(
                    key, frozenset(codings), frozenset(code for _, code in codings),
                    frozenset(system for system, _ in codings))
        return self._expansions[key]

    def _index(self, system: str) -> _CodeSystemIndex:
        index = self._indexes.get(system)
        if index is None:
            cs = self._code_systems.get(system)
            if cs is None:
                raise _NotExpandable(system)
            index = self._indexes[system] = _CodeSystemIndex(cs)
        return index

    def _expand(self, url: str, stack: frozenset[str]) -> set[Coding]:
        if url in stack:
            raise _NotExpandable(url)
        vs = self._value_sets.get(url)
        if vs is None:
            raise _NotExpandable(url)
        compose = vs.get("compose")
        if compose is None:
            raise _NotExpandable(url)
        out: set[Coding] = set()
        for part in compose.get("include", []):
            out |= self._part(part, stack | {url})
        for part in compose.get("exclude", []):
            out -= self._part(part, stack | {url})
        return out

    def _part(self, part: Mapping[str, Any], stack: frozenset[str]) -> set[Coding]:
        system = part.get("system")
        selected: set[Coding] | None = None
        if system:
            if part.get("concept"):
                selected = {(system, c["code"]) for c in part["concept"]}
            else:
                index = self._index(system)
                if part.get("filter"):
                    selected = self._filtered(system, index, part["filter"])
                elif index.complete:
                    selected = {(system, code) for code in index.parents}
                else:
                    raise _NotExpandable(system)
        for vs_url in part.get("valueSet", []):
            codes = self._expand(vs_url.split("|")[0], stack)
            selected = codes if selected is None else selected & codes
        if selected is None:
            raise _NotExpandable("empty include")
        return selected

    @staticmethod
    def _filtered(system: str, index: _CodeSystemIndex, filters: list[Mapping[str, Any]]) -> set[Coding]:
        result: set[str] | None = None
        for flt in filters:
            prop, op, value = flt.get("property"), flt.get("op"), flt.get("value", "")
            if prop != "concept" or value not in index.parents:
                raise _NotExpandable(system)
            if op == "is-a":
                codes = index.descendants(value) | {value}
            elif op == "descendent-of":
                codes = index.descendants(value)
            elif op == "=":
                codes = {value}
            else:
                raise _NotExpandable(system)
            result = codes if result is None else result & codes
        return {(system, code) for code in result or ()}
