"""load_profiles: what is loaded, and a ConfigError naming the file for broken definitions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter.conformance import load_profiles
from adapter.errors import ConfigError

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
CT_SD = "https://fhir.carethread.org/StructureDefinition/"
OURS = ["CarethreadAppointment", "CarethreadCommunication", "CarethreadEncounter", "CarethreadFlag", "CarethreadPatient",
        "CarethreadRelatedPerson", "CarethreadTask"]


@pytest.fixture
def copy_profiles(tmp_path: Path) -> Callable[[], Path]:
    def make() -> Path:
        target = tmp_path / "profiles"
        shutil.copytree(PROFILES, target)
        return target
    return make


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_loaded_profiles(profiles: Any) -> None:
    assert [u for u in profiles.profiles if u.startswith(CT_SD)] == [CT_SD + n for n in OURS]
    for name in OURS:
        rtype = name.removeprefix("Carethread")
        assert profiles.default_profile(rtype) == CT_SD + name
    assert profiles.default_profile("Provenance") == "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Provenance"


def test_our_definitions_are_differentials_on_ukcore() -> None:
    for path in (PROFILES / "structuredefinitions").glob("*.json"):
        sd = json.loads(path.read_text())
        assert sd["derivation"] == "constraint" and "snapshot" not in sd and sd["differential"]["element"]
        if sd["kind"] == "resource":
            assert sd["baseDefinition"] == f"https://fhir.hl7.org.uk/StructureDefinition/UKCore-{sd['type']}"
            assert sd["url"] == CT_SD + path.stem


def test_snapshot_merges_the_differential_over_ukcore(profiles: Any) -> None:
    tree = profiles.tree(CT_SD + "CarethreadPatient")
    identifier = tree.children["identifier"]
    assert identifier.min == 1  # ours
    nhs = next(s for s in identifier.slices if s.slice_name == "nhsNumber")  # UK Core's
    assert nhs.max == 1 and nhs.children["system"].fixed == "https://fhir.nhs.uk/Id/nhs-number"
    assert nhs.children["value"].min == 1
    assert tree.children["gender"].binding == ("required", "http://hl7.org/fhir/ValueSet/administrative-gender")  # base


def test_broken_json_names_the_file(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()
    (root / "structuredefinitions" / "CarethreadFlag.json").write_text("{ not json")
    with pytest.raises(ConfigError) as info:
        load_profiles(root)
    assert info.value.location == "structuredefinitions/CarethreadFlag.json"
    assert "CarethreadFlag.json" in info.value.message


def test_unknown_base_profile(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()
    _edit(root / "structuredefinitions" / "CarethreadTask.json",
          lambda sd: sd.update(baseDefinition="https://fhir.hl7.org.uk/StructureDefinition/UKCore-NoSuchThing"))
    with pytest.raises(ConfigError, match="CarethreadTask.json: unknown baseDefinition"):
        load_profiles(root)


def test_unknown_value_set(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()

    def change(sd: dict[str, Any]) -> None:
        element = next(e for e in sd["differential"]["element"] if e["id"] == "Flag.code")
        element["binding"]["valueSet"] = "https://fhir.carethread.org/ValueSet/no-such-codes"
    _edit(root / "structuredefinitions" / "CarethreadFlag.json", change)
    with pytest.raises(ConfigError, match="CarethreadFlag.json: unknown ValueSet"):
        load_profiles(root)


def test_unknown_extension_profile(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()
    (root / "structuredefinitions" / "Extension-Carethread-AttendanceOutcome.json").unlink()
    with pytest.raises(ConfigError, match="CarethreadAppointment.json: unknown extension definition"):
        load_profiles(root)


def test_unknown_element_path(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()
    _edit(root / "structuredefinitions" / "CarethreadEncounter.json",
          lambda sd: sd["differential"]["element"].append({"id": "Encounter.noSuchElement", "path": "Encounter.noSuchElement"}))
    with pytest.raises(ConfigError, match="CarethreadEncounter.json: element Encounter.noSuchElement"):
        load_profiles(root)


def test_value_set_on_a_missing_code_system(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()
    (root / "codesystems" / "CodeSystem-safeguarding.json").unlink()
    with pytest.raises(ConfigError, match="ValueSet-safeguarding-flag-code.json: ValueSet cannot be expanded"):
        load_profiles(root)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profiles folder not found"):
        load_profiles(tmp_path / "nowhere")


def test_other_json_is_ignored(copy_profiles: Callable[[], Path]) -> None:
    root = copy_profiles()
    (root / "capability_statement.json").write_text(json.dumps({"resourceType": "CapabilityStatement"}))
    assert load_profiles(root).default_profile("Flag") == CT_SD + "CarethreadFlag"
