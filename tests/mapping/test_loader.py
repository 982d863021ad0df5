"""Start-up checks: a bad mapping file stops start-up with a ConfigError naming the file and the line.

Each case is a site overlay replacing one shipped file with a one-line mistake, so the tests also show
that overlays are checked exactly like the shipped files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.errors import ConfigError
from adapter.mapping.codes import DEFAULT_MAPPINGS_DIR, load_code_tables
from adapter.mapping.loader import load_mappings

SHIPPED = DEFAULT_MAPPINGS_DIR


def overlay_with(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """A site overlay holding a copy of shipped file ``name`` with ``old`` replaced; (path, line of it)."""
    text = (SHIPPED / name).read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {name}"
    line = text[: text.index(old)].count("\n") + 1
    target = tmp_path / "site" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target, line


def load_error(tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_mappings(SHIPPED, tmp_path / "site")
    return info.value


CASES = [
    ("unknown transform", "hl7v2/resources/patient.yaml", "transform: hl7_date}", "transform: hl7_dat}",
     "unknown transform 'hl7_dat'"),
    ("unknown code table", "hl7v2/resources/patient.yaml", "lookup: v2_0001_gender", "lookup: v2_0001_gendr",
     "unknown code table 'v2_0001_gendr'"),
    ("unknown include", "hl7v2/messages/ADT_A01.yaml", "include: [adt_visit]", "include: [adt_visits]",
     "unknown include 'adt_visits'"),
    ("bad source path", "hl7v2/resources/patient.yaml", "birthDate: {from: PID-7,", "birthDate: {from: PID7,",
     "bad source path"),
    ("unknown key", "hl7v2/resources/encounter.yaml", "  status: $status\n", "  status: $status\n  colour: {kolour: red}\n",
     "a value is a path"),
    ("unknown key in a spec", "hl7v2/resources/patient.yaml", "gender: {from: PID-8,", "gender: {frm: PID-8, from: PID-8,",
     "unknown key 'frm'"),
    ("unknown mapping file", "hl7v2/resources/patient.yaml", "use: datatypes/xpn_human_name",
     "use: datatypes/xpn_humane_name", "unknown mapping file 'datatypes/xpn_humane_name'"),
    ("unknown variable", "hl7v2/resources/patient.yaml", "multipleBirthInteger: $birth_order",
     "multipleBirthInteger: $birth_ordr", "unknown variable $birth_ordr"),
    ("unknown resource entry", "hl7v2/resources/flag.yaml", "subject: {ref: patient}", "subject: {ref: patiant}",
     "no message or feed file has an entry named 'patiant'"),
    ("transform params", "hl7v2/resources/flag.yaml", "{first_chars: {n: 10}}", "{first_chars: {m: 10}}",
     "takes the params ['n']"),
    ("transform inputs", "hl7v2/resources/appointment.yaml", "transform: duration_minutes}",
     "transform: hl7_date}", "takes one value"),
    ("YAML boolean key", "hl7v2/resources/appointment.yaml", "{birth: $birth, day: $start}",
     "{birth: $birth, on: $start}", "read as a YAML boolean"),
    ("duplicate key", "hl7v2/resources/patient.yaml", "  active: {const: true}\n",
     "  active: {const: true}\n  active: {const: false}\n", "appears twice"),
    ("bad code table entry", "codes/v2_0001_gender.yaml", "  M: male\n", "  M: {colour: male}\n", "unknown key 'colour'"),
    ("not YAML", "codes/v2_0001_gender.yaml", "  M: male\n", "  M: [male\n", ""),
    ("missing element", "hl7v2/resources/encounter.yaml", "resource: Encounter\n", "", "missing key 'resource'"),
]


@pytest.mark.parametrize(("what", "name", "old", "new", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_file_stops_start_up_naming_file_and_line(tmp_path: Path, what: str, name: str, old: str, new: str,
                                                        message: str) -> None:
    path, line = overlay_with(tmp_path, name, old, new)
    error = load_error(tmp_path)
    text = str(error)
    assert text.startswith(f"{path}:"), text
    reported = int(text[len(str(path)) + 1:].split(":", 1)[0])
    if what in ("duplicate key", "unknown key"):
        line += 1  # the inserted line
    if what in ("missing element", "not YAML"):
        assert reported >= 1
    else:
        assert reported == line, text
    assert message in text
    assert error.code == "config-invalid" and error.location == f"{path}:{reported}"


def test_the_shipped_mappings_load_and_map_every_supported_event() -> None:
    from adapter.inbound.hl7v2 import SUPPORTED_EVENTS

    mset = load_mappings()
    assert mset.events() == SUPPORTED_EVENTS


def test_loading_is_cached_until_a_file_changes(tmp_path: Path) -> None:
    assert load_mappings() is load_mappings()
    path, _ = overlay_with(tmp_path, "codes/v2_0001_gender.yaml", "  M: male\n", "  M: male\n  Z: unknown\n")
    first = load_mappings(SHIPPED, tmp_path / "site")
    assert load_mappings(SHIPPED, tmp_path / "site") is first
    path.write_text(path.read_text() + "  Q: unknown\n")
    again = load_mappings(SHIPPED, tmp_path / "site")
    assert again is not first and "Q" in again.codes["v2_0001_gender"]


def test_load_code_tables_checks_every_mapping_file_too(tmp_path: Path) -> None:
    overlay_with(tmp_path, "hl7v2/resources/patient.yaml", "transform: hl7_date}", "transform: nope}")
    with pytest.raises(ConfigError):
        load_code_tables(SHIPPED, tmp_path / "site")


def test_a_file_outside_the_layout_or_a_missing_overlay_is_refused(tmp_path: Path) -> None:
    (tmp_path / "site" / "hl7v2" / "resource").mkdir(parents=True)
    stray = tmp_path / "site" / "hl7v2" / "resource" / "patient.yaml"
    stray.write_text("resource: Patient\n")
    assert "not a mapping file location" in str(load_error(tmp_path))
    stray.unlink()
    (tmp_path / "site" / "codes").mkdir()
    (tmp_path / "site" / "codes" / "x.yml").write_text("system: x\nmap: {}\n")
    assert "end in .yaml" in str(load_error(tmp_path))
    with pytest.raises(ConfigError, match="does not exist"):
        load_mappings(SHIPPED, tmp_path / "nowhere")


def test_a_message_file_must_be_named_for_its_trigger(tmp_path: Path) -> None:
    path, _ = overlay_with(tmp_path, "hl7v2/messages/ADT_A01.yaml", "message: ADT^A01", "message: ADT^A02")
    assert "already mapped" in str(load_error(tmp_path)) or "is named ADT_A02.yaml" in str(load_error(tmp_path))
