"""Reading a health visiting export: folders, zips, CSV and JSON lines, streamed row by row; bad rows are
rows with an error at their line, never an exception, and the rest of the file is still read."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

from adapter.inbound.export import open_export, read_rows

FEEDS = [("people", SimpleNamespace(files=["people.csv", "people.jsonl"])),
         ("contacts", SimpleNamespace(files=["*contacts*.csv"]))]


def rows(path: Path) -> list:
    return list(read_rows(open_export(path), FEEDS))


def test_people_are_read_before_contacts_whatever_the_file_names(tmp_path: Path) -> None:
    (tmp_path / "a_contacts.csv").write_text("id,person\nc1,p1\n")
    (tmp_path / "people.csv").write_text("id,name\np1,Example\n")
    got = rows(tmp_path)
    assert [(r.feed, r.file, r.line, r.record) for r in got] == [
        ("people", "people.csv", 2, {"id": "p1", "name": "Example"}),
        ("contacts", "a_contacts.csv", 2, {"id": "c1", "person": "p1"})]


def test_line_ends_bom_blank_lines_and_quoted_newlines(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes(b'\xef\xbb\xbfid,note\r\np1,"two\r\nlines"\r\n\r\np2,x\n')
    got = rows(tmp_path)
    assert [(r.line, r.record) for r in got] == [(2, {"id": "p1", "note": "two\r\nlines"}), (5, {"id": "p2", "note": "x"})]


def test_a_bad_row_is_reported_at_its_line_and_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes(b"id,name\np1,A\np2,B,extra\np3,\xff\xfe\np4,D\n")
    got = rows(tmp_path)
    assert [(r.line, r.error.code if r.error else None) for r in got] == [
        (2, None), (3, "malformed-row"), (4, "bad-encoding"), (5, None)]
    assert got[1].error.location == "people.csv:3"
    assert "extra" not in got[1].error.message  # never a value in a message
    json.loads(got[2].raw)  # what the archive keeps is still valid JSON


def test_unknown_and_ambiguous_files_are_reported_not_read(tmp_path: Path) -> None:
    (tmp_path / "notes.csv").write_text("a\n1\n")
    got = rows(tmp_path)
    assert [(r.file, r.line, r.error.code) for r in got] == [("notes.csv", 0, "unknown-file")]


def test_json_lines_scalars_become_text(tmp_path: Path) -> None:
    (tmp_path / "people.jsonl").write_text('{"id": "p1", "age": 3, "flag": true, "none": null}\n\n[1]\nnot json\n')
    got = rows(tmp_path)
    assert got[0].record == {"id": "p1", "age": "3", "flag": "true", "none": ""}
    assert [(r.line, r.error.code) for r in got[1:]] == [(3, "malformed-row"), (4, "malformed-row")]


def test_a_zip_export_is_read_member_by_member(tmp_path: Path) -> None:
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as z:
        z.writestr("2026-11/people.csv", "id\np1\np2\n")
        z.writestr("2026-11/contacts.csv", "id,person\nc1,p1\n")
        z.writestr("__MACOSX/._people.csv", "junk")
    got = rows(export)
    assert [(r.feed, r.file, r.line) for r in got] == [
        ("people", "2026-11/people.csv", 2), ("people", "2026-11/people.csv", 3), ("contacts", "2026-11/contacts.csv", 2)]


def test_a_header_that_is_not_unique_rejects_the_file(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,id\n1,2\n")
    [row] = rows(tmp_path)
    assert (row.line, row.error.code) == (1, "malformed-header")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.binary(max_size=400), name=st.sampled_from(["people.csv", "people.jsonl"]))
def test_arbitrary_bytes_give_rows_or_row_errors_never_an_exception(tmp_path: Path, data: bytes, name: str) -> None:
    (tmp_path / name).write_bytes(data)
    for row in rows(tmp_path / name):
        assert (row.record is None) == (row.error is not None)
        json.loads(row.raw)
