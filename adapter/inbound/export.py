"""Tabular exports (health visiting): a folder, a zip or single files of CSV or JSON lines -> rows.

Streaming: files are read row by row, never whole, so memory stays flat as an export grows.  Which
feed a file belongs to, and the order files are read in, come from the feed mapping files
(``files:`` patterns and ``order:``): people before the contacts that need their birth dates.

    files = open_export(path)                     # an HTTP upload is saved to a folder first
    for row in read_rows(files, mset.feeds_of("health-visiting")):
        row.feed, row.file, row.line, row.record  # record: column -> text; or row.error

A row that cannot be read (wrong number of columns, bytes that are not UTF-8, a line that is not a JSON
object) is a ``Row`` with ``error`` set: rejected at its line, the rest of the file still read.
"""

from __future__ import annotations

import csv
import hashlib
import fnmatch
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from adapter.errors import ParseError

__all__ = ["ExportFile", "Row", "open_export", "row_control_id", "read_rows", "JSON_SUFFIXES", "row_payload"]

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_TABULAR_SUFFIXES = (".csv", *JSON_SUFFIXES)
csv.field_size_limit(1 << 20)  # a cell over 1 MiB is not a health visiting export


@dataclass(frozen=True)
class ExportFile:
    name: str  # the file's name inside the export (what reports show)
    open: Callable[[], IO[bytes]]  # a fresh binary stream

    @property
    def base(self) -> str:
        return PurePosixPath(self.name).name


@dataclass(frozen=True, slots=True)
class Row:
    feed: str | None  # None: the file matches no feed (reported once, line 0)
    file: str
    line: int  # the line the row starts on (a CSV header is line 1)
    record: dict[str, Any] | None
    raw: bytes  # what the archive keeps: the row as JSON with its file, line and feed
    error: ParseError | None = None


def open_export(path: Path) -> list[ExportFile]:
    """A folder (its tabular files, recursively), a zip, or one CSV / JSON-lines file."""
    if path.is_dir():
        return [ExportFile(str(p.relative_to(path)), partial(p.open, "rb")) for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in _TABULAR_SUFFIXES]
    if zipfile.is_zipfile(path):
        return _zip_files(lambda: zipfile.ZipFile(path))
    return [ExportFile(path.name, partial(path.open, "rb"))]


def _zip_files(opener: Callable[[], zipfile.ZipFile]) -> list[ExportFile]:
    with opener() as archive:
        names = [i.filename for i in archive.infolist()
                 if not i.is_dir() and PurePosixPath(i.filename).suffix.lower() in _TABULAR_SUFFIXES
                 and not PurePosixPath(i.filename).name.startswith(".") and "__MACOSX" not in i.filename]

    def member(name: str) -> Callable[[], IO[bytes]]:
        def open_member() -> IO[bytes]:
            archive = opener()
            return _ZipMember(archive, archive.open(name))
        return open_member

    return [ExportFile(n, member(n)) for n in sorted(names)]


class _ZipMember(io.RawIOBase):
    """A zip member stream that closes its archive with it."""

    def __init__(self, archive: zipfile.ZipFile, stream: IO[bytes]) -> None:
        self._archive, self._stream = archive, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        self._archive.close()
        super().close()


def _feed_of(base: str, feeds: list[tuple[str, Any]]) -> list[str]:
    lowered = base.lower()
    return [name for name, model in feeds if any(fnmatch.fnmatchcase(lowered, p.lower()) for p in model.files)]


def row_control_id(feed: str, record: dict[str, Any]) -> str:
    """A row's control id: a hash of its feed and content, so the same row in a later export is a duplicate
    (wherever it stands) and a changed row is new."""
    return hashlib.sha256(feed.encode() + b"\0" + json.dumps(record, sort_keys=True, ensure_ascii=False).encode()
                          ).hexdigest()


def row_payload(feed: str | None, file: str, line: int, record: Any) -> bytes:
    return json.dumps({"feed": feed, "file": file, "line": line, "record": record}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def read_rows(files: list[ExportFile], feeds: list[tuple[str, Any]]) -> Iterator[Row]:
    """Every row of every file, files in feed order (then name).  A file no feed claims, or two claim,
    yields one error row (line 0) and is not read."""
    order = {name: i for i, (name, _) in enumerate(feeds)}
    plan: list[tuple[int, str, ExportFile, str | None, ParseError | None]] = []
    for f in files:
        matched = _feed_of(f.base, feeds)
        if len(matched) == 1:
            plan.append((order[matched[0]], f.name, f, matched[0], None))
        else:
            why = "matches no feed file's patterns" if not matched else f"matches several feeds ({', '.join(matched)})"
            plan.append((-1, f.name, f, None, ParseError(f"file {why}", code="unknown-file", location=f.name)))
    for _, name, f, feed, error in sorted(plan, key=lambda p: (p[0], p[1])):
        if error is not None:
            yield Row(None, name, 0, None, row_payload(None, name, 0, None), error)
            continue
        reader = _json_rows if f.base.lower().endswith(JSON_SUFFIXES) else _csv_rows
        yield from reader(f, feed)


def _text(f: ExportFile) -> io.TextIOWrapper:
    # surrogateescape: a bad byte spoils its row, not the rest of the file
    return io.TextIOWrapper(f.open(), encoding="utf-8-sig", errors="surrogateescape", newline="")


def _has_bad_bytes(values: Any) -> bool:
    return any(isinstance(v, str) and not _encodable(v) for v in values)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8") if not _encodable(text) else text


def _csv_rows(f: ExportFile, feed: str | None) -> Iterator[Row]:
    with _text(f) as stream:
        reader = csv.reader(stream)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _bad(feed, f.name, 1, None, "the header row cannot be read", "malformed-row", exc)
            return
        header = [h.strip() for h in header]
        if _has_bad_bytes(header) or len(set(header)) != len(header) or "" in header:
            yield _bad(feed, f.name, 1, None, "the header row is not unique UTF-8 column names", "malformed-header")
            return
        width = len(header)
        line = reader.line_num + 1
        while True:
            start = line
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num + 1
                yield _bad(feed, f.name, start, None, "the row cannot be read as CSV", "malformed-row", exc)
                continue
            line = reader.line_num + 1
            if not values or values == [""] * len(values) and len(values) <= 1:
                continue  # a blank line
            if len(values) != width:
                yield _bad(feed, f.name, start, [_clean(v) for v in values],
                           f"the row has {len(values)} columns, the header {width}", "malformed-row")
                continue
            if _has_bad_bytes(values):
                yield _bad(feed, f.name, start, [_clean(v) for v in values], "the row has bytes that are not UTF-8",
                           "bad-encoding")
                continue
            record = dict(zip(header, values))
            yield Row(feed, f.name, start, record, row_payload(feed, f.name, start, record))


def _json_rows(f: ExportFile, feed: str | None) -> Iterator[Row]:
    with _text(f) as stream:
        for number, text in enumerate(stream, 1):
            if not text.strip():
                continue
            if not _encodable(text):
                yield _bad(feed, f.name, number, _clean(text), "the line has bytes that are not UTF-8", "bad-encoding")
                continue
            try:
                value = json.loads(text)
            except ValueError:
                yield _bad(feed, f.name, number, text, "the line is not JSON", "malformed-row")
                continue
            if not isinstance(value, dict):
                yield _bad(feed, f.name, number, value, "the line is not a JSON object", "malformed-row")
                continue
            record = {str(k): _scalar_text(v) for k, v in value.items()}
            yield Row(feed, f.name, number, record, row_payload(feed, f.name, number, value))


def _scalar_text(value: Any) -> Any:
    """JSON scalars become the text a CSV cell would hold; objects and lists stay as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _bad(feed: str | None, file: str, line: int, content: Any, message: str, code: str,
         cause: Exception | None = None) -> Row:
    return Row(feed, file, line, None, row_payload(feed, file, line, content),
               ParseError(message, code=code, location=f"{file}:{line}"))
