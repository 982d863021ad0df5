"""The official UK Core R4 STU2 examples validate against UK Core with no errors, except the BabyPatient example
whose NHS number (9912003890) fails the Modulus 11 check: that must be reported at the nhsNumber slice value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.conformance import ProfileSet
from tests.conformance.resources import findings

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "ukcore" / "ukcore-stu2" / "examples"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"
TYPES = ("Patient", "RelatedPerson", "Flag", "Appointment", "Encounter", "Communication", "Task")
FILES = sorted(p for t in TYPES for p in EXAMPLES.glob(f"UKCore-{t}-*-Example.json"))


def _without_empty_primitive_extensions(value: Any) -> Any:
    """Drop ``"_sent": {}``-style members: artefacts of the shared copy's XML->JSON conversion, which stripped
    XML comments (``fhir_comments``) and left the objects that held them empty (see shared/ukcore/SOURCES.md).
    The validator rightly rejects an empty object (ele-1)."""
    if isinstance(value, dict):
        return {k: _without_empty_primitive_extensions(v) for k, v in value.items() if not (k.startswith("_") and v == {})}
    if isinstance(value, list):
        return [_without_empty_primitive_extensions(v) for v in value]
    return value


def test_the_examples_are_there() -> None:
    assert {p.name.split("-")[1] for p in FILES} == set(TYPES)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_ukcore_example_validates_against_ukcore(profiles: ProfileSet, path: Path) -> None:
    resource = _without_empty_primitive_extensions(json.loads(path.read_text()))
    issues = profiles.validate(resource, UKCORE + resource["resourceType"])
    if path.name == "UKCore-Patient-BabyPatient-Example.json":
        assert findings(issues) == [("error", "value", "Patient.identifier[0].value")]
        assert "Modulus 11" in issues[0].diagnostics
        assert resource["identifier"][0]["system"] == "https://fhir.nhs.uk/Id/nhs-number"  # the nhsNumber slice
    else:
        assert findings(issues) == []


def test_the_conversion_artefact_is_reported_when_left_in(profiles: ProfileSet) -> None:
    resource = json.loads((EXAMPLES / "UKCore-Communication-FirstMMRVaccination-Example.json").read_text())
    issues = profiles.validate(resource, UKCORE + "Communication")
    assert findings(issues) == [("error", "invariant", "Communication._sent")]
