"""Code tables: one YAML file per table under ``mappings/codes/`` (a site overlay may replace any).

A table has a default ``system`` and a ``map`` from source code to either a target code (a string) or
``{code, display, system}``.  A lookup never invents a default: an unknown code gives None, and the
mapping file decides (``unmapped: error | warn | skip``); an unmapped code in a required element is a
mapping error (ACK AE), never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adapter.errors import ConfigError

if TYPE_CHECKING:
    from adapter.mapping.compiler import MappingSet
    from adapter.mapping.schema import CodeTableFile

__all__ = ["Coding", "CodeTable", "CodeTables", "load_code_tables", "DEFAULT_MAPPINGS_DIR", "table_from_file"]

DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parent.parent.parent / "mappings"


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    def as_fhir(self) -> dict[str, str]:
        """A new dict each call (outputs are never shared between resources)."""
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True, slots=True)
class CodeTable:
    name: str
    system: str
    entries: dict[str, Coding]

    def lookup(self, code: str) -> Coding | None:
        """Exact, else upper case, else capitalised (HL7 0278 codes are 'Booked', senders vary)."""
        hit = self.entries.get(code)
        if hit is None:
            hit = self.entries.get(code.upper()) or self.entries.get(code.capitalize())
        return hit

    def __contains__(self, code: str) -> bool:
        return self.lookup(code) is not None

    def values(self) -> set[str]:
        """Every code, display and system the table can emit (for the golden invariants)."""
        out = {self.system}
        for c in self.entries.values():
            out |= {c.system, c.code} | ({c.display} if c.display else set())
        return out


def table_from_file(name: str, doc: CodeTableFile) -> CodeTable:
    entries: dict[str, Coding] = {}
    for src, target in doc.map.items():
        if isinstance(target, str):
            entries[str(src)] = Coding(doc.system, target)
        else:
            entries[str(src)] = Coding(target.system or doc.system, target.code or str(src), target.display)
    return CodeTable(name, doc.system, entries)


class CodeTables:
    """The loaded tables by name.  ``mapping_set`` is the MappingSet they were loaded with, so a
    MappingContext built with ``codes=load_code_tables(...)`` maps with that set (and its overlay)."""

    def __init__(self, tables: dict[str, CodeTable], mapping_set: MappingSet | None = None) -> None:
        self._tables = tables
        self.mapping_set = mapping_set

    def __getitem__(self, name: str) -> CodeTable:
        try:
            return self._tables[name]
        except KeyError:
            raise ConfigError(f"code table {name!r} is not defined under mappings/codes/") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tables

    def names(self) -> list[str]:
        return sorted(self._tables)


def load_code_tables(mappings_dir: Path = DEFAULT_MAPPINGS_DIR, overlay: Path | None = None) -> CodeTables:
    """The code tables of ``load_mappings(mappings_dir, overlay)``: every mapping file is loaded and
    checked too (a bad file raises ConfigError naming file and line)."""
    from adapter.mapping.loader import load_mappings

    return load_mappings(mappings_dir, overlay).codes
