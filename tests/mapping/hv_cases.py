"""The health visiting example export (sandbox/health-visiting/example), mapped row by row as the pipeline
maps an export: files in feed order (``order:`` of csv/feeds/hv_*.yaml), one ``map_record`` per row, the
birth dates of the Patients already mapped given to later rows (a missed contact's was-not-brought).

``traces()`` is the union of the mapping files the example runs: the golden meta-test counts them.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapter.errors import MappingError
from adapter.mapping import MappingContext, MappedMessage, MappingSet, load_mappings, map_record

__all__ = ["EXAMPLE", "SOURCE", "NOW", "MAPPINGS", "Row", "MappedRow", "read_export", "control_id", "context",
           "map_export", "traces"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "sandbox" / "health-visiting" / "example"
SOURCE = "health-visiting"  # the ingest source (ctx:source): the namespace of every id
NOW = "2026-06-01T09:00:00+00:00"  # the time of mapping (Provenance.recorded), fixed for comparisons
TZ = ZoneInfo("Europe/London")
MAPPINGS = load_mappings()
_JSON = (".jsonl", ".ndjson", ".json")


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


def _text(value: Any) -> Any:
    """A JSON scalar as the text a CSV cell would hold (the pipeline's reader does the same)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _rows(path: Path, feed: str) -> Iterator[Row]:
    if path.name.lower().endswith(_JSON):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield Row(feed, path.name, n, {str(k): _text(v) for k, v in json.loads(line).items()})
        return
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for record in reader:
            yield Row(feed, path.name, reader.line_num, dict(record))


def read_export(folder: Path = EXAMPLE, mappings: MappingSet = MAPPINGS) -> list[Row]:
    """Every row of every file the health-visiting feeds claim, in feed order then file name."""
    feeds = mappings.feeds_of(SOURCE)
    planned: list[tuple[int, str, Path, str]] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        claimed = [(i, name) for i, (name, model) in enumerate(feeds)
                   if any(fnmatch.fnmatchcase(path.name.lower(), p.lower()) for p in model.files)]
        assert len(claimed) == 1, f"{path.name}: claimed by {claimed}"
        planned.append((claimed[0][0], path.name, path, claimed[0][1]))
    return [row for _, _, path, feed in sorted(planned) for row in _rows(path, feed)]


def control_id(feed: str, record: dict[str, Any]) -> str:
    """What the pipeline passes as the control id: a hash of the feed and the row (adapter/pipeline.py)."""
    return hashlib.sha256(feed.encode() + b"\0" + json.dumps(record, sort_keys=True, ensure_ascii=False).encode()
                          ).hexdigest()


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
