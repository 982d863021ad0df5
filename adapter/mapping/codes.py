"""Code tables: one YAML file per table under ``mappings/codes/``.

A table has a default ``system`` and a ``map`` from source code to either a target code (string) or
``{code, display, system, ...}``.  Lookups never invent a default: an unknown code returns None and
the caller decides whether that is a mapping error (required element) or a dropped value (warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapter.errors import ConfigError

__all__ = ["Coding", "CodeTable", "CodeTables", "load_code_tables", "DEFAULT_MAPPINGS_DIR"]

DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parent.parent.parent / "mappings"


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_fhir(self) -> dict[str, str]:
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
        hit = self.entries.get(code)
        if hit is None:
            hit = self.entries.get(code.upper()) or self.entries.get(code.capitalize())
        return hit

    def __contains__(self, code: str) -> bool:
        return self.lookup(code) is not None


class CodeTables:
    def __init__(self, tables: dict[str, CodeTable]) -> None:
        self._tables = tables

    def __getitem__(self, name: str) -> CodeTable:
        try:
            return self._tables[name]
        except KeyError:
            raise ConfigError(f"code table {name!r} is not defined under mappings/codes/") from None

    def names(self) -> list[str]:
        return sorted(self._tables)


def _load_table(path: Path) -> CodeTable:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML") from None
    if not isinstance(doc, dict) or set(doc) - {"system", "map"} or "map" not in doc or "system" not in doc:
        raise ConfigError(f"{path}: a code table needs exactly the keys 'system' and 'map'")
    system = str(doc["system"])
    entries: dict[str, Coding] = {}
    for src, target in (doc["map"] or {}).items():
        if isinstance(target, str):
            entries[str(src)] = Coding(system, target)
        elif isinstance(target, dict) and ("code" in target or "display" in target):
            known = {"system", "code", "display"}
            entries[str(src)] = Coding(
                str(target.get("system", system)),
                str(target.get("code", src)),
                target.get("display"),
                {k: v for k, v in target.items() if k not in known},
            )
        else:
            raise ConfigError(f"{path}: entry {src!r} must be a code or a mapping with 'code'")
    return CodeTable(path.stem, system, entries)


def load_code_tables(mappings_dir: Path = DEFAULT_MAPPINGS_DIR, overlay: Path | None = None) -> CodeTables:
    """Load ``codes/*.yaml``; files of the same name in ``overlay/codes`` replace the shipped ones."""
    tables: dict[str, CodeTable] = {}
    for base in (mappings_dir, overlay):
        if base is None:
            continue
        for path in sorted((base / "codes").glob("*.yaml")):
            tables[path.stem] = _load_table(path)
    return CodeTables(tables)
