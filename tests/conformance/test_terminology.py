"""ValueSet expansion from the held CodeSystems and ValueSets, and the content of Carethread's ValueSets."""

from __future__ import annotations

import json
from pathlib import Path

from adapter.conformance import ProfileSet
from adapter.conformance.terminology import Terminology

CT = "https://fhir.carethread.org"
SCT = "http://snomed.info/sct"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PROFILES = Path(__file__).resolve().parents[2] / "profiles"
MAPPING_CODES = Path(__file__).resolve().parents[2] / "mappings" / "codes"


def _terminology(profiles: ProfileSet) -> Terminology:
    return Terminology(profiles.defs.value_sets, profiles.defs.code_systems)


def test_safeguarding_flag_codes(profiles: ProfileSet) -> None:
    vs = _terminology(profiles).expand(f"{CT}/ValueSet/safeguarding-flag-code")
    assert vs is not None
    sct = {code for system, code in vs.codings if system == SCT}
    assert sct == {"342191000000101", "764841000000100", "818901000000100", "878111000000109", "836881000000105",
                   "1064961000000107", "375041000000100", "864491000000105", "919461000000108"}
    assert "281399006" not in sct and "342891000000105" not in sct  # not flag codes
    own = {code for system, code in vs.codings if system == f"{CT}/CodeSystem/safeguarding"}
    assert own == {"child-not-brought", "child-in-need", "young-carer", "young-parent", "repeated-was-not-brought",
                   "history-of-child-safeguarding"}


def test_attendance_outcome(profiles: ProfileSet) -> None:
    vs = _terminology(profiles).expand(f"{CT}/ValueSet/attendance-outcome")
    assert vs is not None
    assert vs.codings == {(f"{CT}/CodeSystem/attendance-outcome", c) for c in ("was-not-brought", "did-not-attend")} | {
        (f"{CT}/CodeSystem/nhs-dd-attended-or-did-not-attend", c) for c in "0234567"}


def test_relationship_codes_are_a_subset_of_ukcore_person_relationship_type(profiles: ProfileSet) -> None:
    terminology = _terminology(profiles)
    ours = terminology.expand(f"{CT}/ValueSet/relationship-type")
    ukcore = terminology.expand("https://fhir.hl7.org.uk/ValueSet/UKCore-PersonRelationshipType")
    assert ours is not None and ukcore is not None
    assert len(ours.codings) == 24 + 7 + 2
    assert ours.codings - ukcore.codings == set()
    assert (ROLE, "NFTHF") in ukcore and (ROLE, "_PersonalRelationshipRoleType") not in ukcore  # is-a, exclude


def test_every_relationship_the_mapping_tables_emit_is_accepted(profiles: ProfileSet) -> None:
    import yaml

    vs = _terminology(profiles).expand(f"{CT}/ValueSet/relationship-type")
    assert vs is not None
    for table in ("v2_0063_relationship.yaml", "v2_0131_contact_role.yaml"):
        data = yaml.safe_load((MAPPING_CODES / table).read_text())
        for target in data["map"].values():
            coding = (target.get("system", data["system"]), target["code"])
            assert coding in vs, (table, coding)


def test_base_value_sets_expand_from_the_copied_code_systems(profiles: ProfileSet) -> None:
    terminology = _terminology(profiles)
    status = terminology.expand("http://hl7.org/fhir/ValueSet/appointmentstatus|4.0.1")
    assert status is not None and "noshow" in status.codes and "wasnotbrought" not in status.codes
    assert terminology.expand("http://hl7.org/fhir/ValueSet/all-languages") is None  # BCP-47: not enumerable
    assert terminology.expand("http://example.org/ValueSet/unknown") is None


def test_our_code_systems_are_complete_and_named_as_in_adapter_fhir(profiles: ProfileSet) -> None:
    from adapter.fhir import ATTENDANCE_OUTCOME_CS, CT_FLAG_CATEGORY_CS, NHS_DD_ATTENDANCE_CS

    for url in (ATTENDANCE_OUTCOME_CS, CT_FLAG_CATEGORY_CS, NHS_DD_ATTENDANCE_CS, f"{CT}/CodeSystem/safeguarding"):
        cs = profiles.defs.code_systems[url]
        assert cs["content"] == "complete" and cs["count"] == len(cs["concept"])
    for path in (PROFILES / "codesystems").glob("*.json"):
        assert json.loads(path.read_text())["url"].startswith(CT)
