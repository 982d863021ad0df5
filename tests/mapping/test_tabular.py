"""The same language for tabular exports (CSV rows, JSON objects) and STU3 -> R4 differences.

No health visiting feed ships yet; these build one in a temporary directory to show the readers and
that a supplier's column rename is a one-line change in a site overlay.
"""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapter.errors import ConfigError
from adapter.mapping import MappingSet, load_mappings
from adapter.mapping.engine import MappingContext, apply_stu3_diff, map_record

FEED = {
    "codes/sex.yaml": """
        system: http://hl7.org/fhir/administrative-gender
        map: {M: male, F: female}
    """,
    "csv/feeds/hv_contacts.yaml": """
        # Health visiting contacts export: one row per contact.
        feed: hv_contacts
        format: csv
        meta_source: {join: [{const: "https://fhir.carethread.org/source/"}, ctx:source, {const: "#row-"}, column:row]}
        resources:
          - {name: patient, mapping: resources/child}
    """,
    "csv/resources/child.yaml": """
        resource: Patient
        vars:
          nhs: column:nhs_no                      # the supplier's column for the NHS number
        id: {key: [{from: $nhs, transform: nhs_number}]}
        fields:
          identifier: {items: [{fields: {system: {const: https://fhir.nhs.uk/Id/nhs-number}, value: {from: $nhs, transform: nhs_number}}, needs: [value]}]}
          name: {items: [{fields: {family: column:surname, given: {items: [column:forename]}}}]}
          gender: {from: column:sex, lookup: sex, emit: code}
          birthDate: {from: column:dob, transform: hl7_date}
    """,
    "json/feeds/hv_visits.yaml": """
        feed: hv_visits
        format: json
        resources:
          - {name: patient, mapping: resources/child}
    """,
    "json/resources/child.yaml": """
        resource: Patient
        id: {key: [/child/nhsNumber]}
        fields:
          name: {each: /child/names, map: {fields: {family: ./family, given: {items: [./given]}}}}
          birthDate: {from: /child/born, transform: hl7_date}
    """,
    "stu3/Account.yaml": """
        resource: Account
        rename: {period: servicePeriod}
        wrap: [subject]
        drop: [balance, active]
    """,
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).strip() + "\n")
    return root


def ctx(mset: MappingSet) -> MappingContext:
    return MappingContext("health-visiting", "", "", ZoneInfo("Europe/London"), mset.codes, lambda _id: None,
                          mappings=mset)


ROWS = "row,nhs_no,surname,forename,sex,dob,notes\n7,999 000 1006,SYNTHETIC,Amber,F,20200101,\n"


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_csv_row_maps_by_column_name(tmp_path: Path) -> None:
    mset = load_mappings(write(tmp_path / "m", FEED))
    result = map_record(mset, "hv_contacts", rows(ROWS)[0], ctx(mset))
    [child] = result.resources
    assert child["identifier"] == [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990001006"}]
    assert child["name"] == [{"family": "SYNTHETIC", "given": ["Amber"]}]
    assert (child["gender"], child["birthDate"]) == ("female", "2020-01-01")
    assert child["meta"]["source"] == "https://fhir.carethread.org/source/health-visiting#row-7"
    assert result.trace.files == ("csv/feeds/hv_contacts.yaml", "csv/resources/child.yaml", "codes/sex.yaml")


def test_a_supplier_column_rename_is_a_one_line_site_overlay(tmp_path: Path) -> None:
    shipped = write(tmp_path / "m", FEED)
    site = tmp_path / "site" / "csv" / "resources"
    site.mkdir(parents=True)
    original = (shipped / "csv" / "resources" / "child.yaml").read_text()
    renamed = original.replace("nhs: column:nhs_no", "nhs: column:NHSNumber")
    assert sum(a != b for a, b in zip(original.splitlines(), renamed.splitlines())) == 1
    (site / "child.yaml").write_text(renamed)
    mset = load_mappings(shipped, tmp_path / "site")
    row = rows(ROWS.replace("nhs_no", "NHSNumber"))[0]
    [child] = map_record(mset, "hv_contacts", row, ctx(mset)).resources
    assert child["identifier"][0]["value"] == "9990001006"
    shipped_set = load_mappings(shipped)  # the shipped mapping no longer finds the number
    assert "identifier" not in map_record(shipped_set, "hv_contacts", row, ctx(shipped_set)).resources[0]


def test_unused_columns_are_reported(tmp_path: Path) -> None:
    mset = load_mappings(write(tmp_path / "m", FEED))
    row = rows(ROWS.replace(",\n", ",seen at home\n"))[0]
    assert map_record(mset, "hv_contacts", row, ctx(mset)).trace.unused_fields == ("column:notes",)


def test_a_json_object_maps_by_pointer(tmp_path: Path) -> None:
    mset = load_mappings(write(tmp_path / "m", FEED))
    record = {"child": {"nhsNumber": "9990001006", "born": "20200101",
                        "names": [{"family": "SYNTHETIC", "given": "Amber"}, {"family": "EXAMPLE"}]}}
    [child] = map_record(mset, "hv_visits", record, ctx(mset)).resources
    assert child["name"] == [{"family": "SYNTHETIC", "given": ["Amber"]}, {"family": "EXAMPLE"}]
    assert child["birthDate"] == "2020-01-01"


def test_hl7_paths_are_refused_in_a_tabular_mapping(tmp_path: Path) -> None:
    files = dict(FEED)
    files["csv/resources/child.yaml"] = files["csv/resources/child.yaml"].replace("column:surname", "PID-5")
    with pytest.raises(ConfigError, match=r"child\.yaml:7: bad source path"):
        load_mappings(write(tmp_path / "m", files))


def test_stu3_differences_rename_wrap_and_drop(tmp_path: Path) -> None:
    mset = load_mappings(write(tmp_path / "m", FEED))
    stu3 = {"resourceType": "Account", "id": "a1", "period": {"start": "2020"}, "subject": {"reference": "Patient/p"},
            "balance": {"value": 1}, "active": True}
    assert apply_stu3_diff(mset, stu3) == {"resourceType": "Account", "id": "a1", "servicePeriod": {"start": "2020"},
                                           "subject": [{"reference": "Patient/p"}]}
    assert apply_stu3_diff(mset, {"resourceType": "Patient", "id": "p"}) == {"resourceType": "Patient", "id": "p"}
