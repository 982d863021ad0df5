"""A site overlay adapts Carethread without Python: one code table and one source location change.

The story: a trust's EPR sends its safeguarding alerts in a Z-segment (``ZAL-2`` date, ``ZAL-3``
code^text^system) with its own local codes, instead of coded OBX.  The site adds its local code to the
safeguarding code table and overlays the Flag mapping to read ZAL; nothing else changes.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from adapter.inbound.hl7v2 import read_message
from adapter.mapping import MappingSet, load_mappings
from adapter.mapping.codes import DEFAULT_MAPPINGS_DIR
from adapter.mapping.engine import MappedMessage, MappingContext, map_message
from tests.hl7builder import message, seg

SITE_FLAG = """\
# Site overlay: our EPR sends alerts as ZAL segments (ZAL-2 alert date, ZAL-3 code^text^system) with local
# codes, mapped to SNOMED CT in codes/safeguarding_codes.yaml.  Copied from the shipped flag.yaml.
resource: Flag
profile: https://fhir.hl7.org.uk/StructureDefinition/UKCore-Flag
segment: ZAL
repeat: true
vars:
  alert: {from: ZAL-3.1, lookup: safeguarding_codes, emit: source_code, unmapped: skip}
  observed: {from: ZAL-2, transform: hl7_datetime}
when: {present: $alert}
id: {key: ["@patient", $alert, {from: $observed, transform: {first_chars: {n: 10}}}]}
security: {items: [{from: $alert, lookup: safeguarding_confidentiality, unmapped: skip}]}
fields:
  status: {const: active}
  category:
    const:
      - coding: [{system: http://terminology.hl7.org/CodeSystem/flag-category, code: safety, display: Safety}]
      - coding: [{system: https://fhir.carethread.org/CodeSystem/flag-category, code: safeguarding, display: Safeguarding}]
  code: {from: $alert, lookup: safeguarding_codes, emit: concept}
  subject: {ref: patient}
  period: {fields: {start: [$observed, {from: MSH-7, transform: hl7_instant}]}}
  encounter: {ref: encounter}
  author: {from: MSH-4, use: datatypes/org_reference}
"""
LOCAL_CODE = '  LCPP: {code: "342191000000101", display: Subject to child protection plan}\n'


def site_overlay(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "codes").mkdir(parents=True)
    table = (DEFAULT_MAPPINGS_DIR / "codes" / "safeguarding_codes.yaml").read_text()
    (site / "codes" / "safeguarding_codes.yaml").write_text(table + LOCAL_CODE)
    (site / "hl7v2" / "resources").mkdir(parents=True)
    (site / "hl7v2" / "resources" / "flag.yaml").write_text(SITE_FLAG)
    return site


def mapped(mset: MappingSet, *segments: str) -> MappedMessage:
    msg, header = read_message(message("ADT^A04", *segments, control_id="SITE1"), accepted_processing_ids=frozenset("PTD"))
    ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"),
                         mset.codes, lambda _id: None, mappings=mset)
    return map_message(msg, header, ctx)


PID = seg("PID", {1: "1", 3: "M100001^^^RX1^MR", 5: "SYNTHETIC^Amber", 7: "20090514", 8: "F"})
ZAL = "ZAL|1|20221103|LCPP^Child protection plan^LOCAL"


def flags(result: MappedMessage) -> list[dict[str, object]]:
    return [r for r in result.resources if r["resourceType"] == "Flag"]


def test_shipped_mappings_ignore_the_z_segment() -> None:
    result = mapped(load_mappings(), PID, ZAL)
    assert flags(result) == []
    assert "ZAL-3" in result.trace.unused_fields  # the trace says what nothing mapped


def test_a_site_overlay_maps_local_alert_codes_from_a_z_segment(tmp_path: Path) -> None:
    mset = load_mappings(DEFAULT_MAPPINGS_DIR, site_overlay(tmp_path))
    result = mapped(mset, PID, ZAL)
    [flag] = flags(result)
    assert flag["code"] == {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101",
                                        "display": "Subject to child protection plan"}]}
    assert flag["period"] == {"start": "2022-11-03"}
    assert flag["subject"] == {"reference": f"Patient/{result.resources[0]['id']}"}
    # the overlay file ran, and its source location is now used
    assert mset.files["hl7v2/resources/flag.yaml"].origin == "site"
    assert mset.files["codes/safeguarding_codes.yaml"].origin == "site"
    assert mset.files["hl7v2/resources/patient.yaml"].origin == "shipped"
    assert {"hl7v2/resources/flag.yaml", "codes/safeguarding_codes.yaml"} <= set(result.trace.files)
    assert "ZAL-3" not in result.trace.unused_fields
    # everything else maps exactly as shipped
    shipped = mapped(load_mappings(), PID, ZAL)
    assert [r for r in result.resources if r["resourceType"] != "Flag"][:-1] == shipped.resources[:-1]


def test_the_overlay_is_a_copy_of_shipped_files_with_few_lines_changed(tmp_path: Path) -> None:
    site = site_overlay(tmp_path)
    table = (site / "codes" / "safeguarding_codes.yaml").read_text().splitlines()
    shipped = (DEFAULT_MAPPINGS_DIR / "codes" / "safeguarding_codes.yaml").read_text().splitlines()
    assert table[: len(shipped)] == shipped and len(table) == len(shipped) + 1
