"""The health visiting example export (sandbox/health-visiting/example), mapped row by row as the pipeline
maps an export: files in feed order (``order:`` of csv/feeds/hv_*.yaml), one ``map_record`` per row, the
birth dates of the Patients already mapped given to later rows (a missed contact's was-not-brought).

``traces()`` is the union of the mapping files the example runs: the golden meta-test counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapter.errors import MappingError
from adapter.inbound.export import open_export, read_rows, row_control_id
from adapter.mapping import MappingContext, MappedMessage, MappingSet, load_mappings, map_record

__all__ = ["EXAMPLE", "SOURCE", "NOW", "MAPPINGS", "Row", "MappedRow", "read_export", "control_id", "context",
           "map_export", "traces"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "sandbox" / "health-visiting" / "example"
SOURCE = "health-visiting"  # the ingest source (ctx:source): the namespace of every id
NOW = "2026-06-01T09:00:00+00:00"  # the time of mapping (Provenance.recorded), fixed for comparisons
TZ = ZoneInfo("Europe/London")
MAPPINGS = load_mappings()


@dataclass(frozen=True)
class Row:
    feed: str
    file: str
    line: int
    record: dict[str, Any]


@dataclass
class MappedRow:
    row: Row
    mapped: MappedMessage | None
    error: MappingError | None = None

    @property
    def resources(self) -> list[dict[str, Any]]:
        return self.mapped.resources if self.mapped is not None else []


def read_export(folder: Path = EXAMPLE, mappings: MappingSet = MAPPINGS) -> list[Row]:
    """Every row of every file the health-visiting feeds claim, in feed order then file name: the
    pipeline's own reader (adapter/inbound/export.py)."""
    rows = list(read_rows(open_export(folder), mappings.feeds_of(SOURCE)))
    assert [(r.file, r.line, r.error.code) for r in rows if r.error is not None] == []
    return [Row(str(r.feed), r.file, r.line, r.record or {}) for r in rows]


def control_id(feed: str, record: dict[str, Any]) -> str:
    """What the pipeline passes as the control id."""
    return row_control_id(feed, record)


def context(feed: str, record: dict[str, Any], births: dict[str, str | None],
            mappings: MappingSet = MAPPINGS) -> MappingContext:
    return MappingContext(SOURCE, "", control_id(feed, record), TZ, mappings.codes, births.get, mappings=mappings,
                          now=NOW)


def map_export(folder: Path = EXAMPLE, mappings: MappingSet = MAPPINGS) -> list[MappedRow]:
    """Map every row; the Patients a row produces are 'stored' (their birth dates) for the rows after it."""
    births: dict[str, str | None] = {}
    out: list[MappedRow] = []
    for row in read_export(folder, mappings):
        try:
            mapped = map_record(mappings, row.feed, row.record, context(row.feed, row.record, births, mappings))
        except MappingError as exc:
            out.append(MappedRow(row, None, exc))
            continue
        for resource in mapped.resources:
            if resource["resourceType"] == "Patient":
                births[resource["id"]] = resource.get("birthDate")
        out.append(MappedRow(row, mapped))
    return out


def traces() -> set[str]:
    """The mapping files that ran for some row of the example export."""
    files: set[str] = set()
    for mapped in map_export():
        if mapped.mapped is not None:
            files |= set(mapped.mapped.trace.files)
    return files
