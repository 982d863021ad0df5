"""ProfileSet.validate: profile choice, once-per-run information issues, outcome()."""

from __future__ import annotations

from adapter.conformance import ProfileSet, ValidationIssue, load_profiles, outcome
from tests.conformance.resources import ENCOUNTER, FLAG, PATIENT, SD, findings, fresh

UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"


def test_profile_argument_wins(profiles: ProfileSet) -> None:
    flag = fresh(FLAG)
    del flag["category"]
    assert findings(profiles.validate(flag, UKCORE + "Flag")) == []
    assert ("error", "required", "Flag.category") in findings(profiles.validate(flag, SD + "/CarethreadFlag"))


def test_declared_profiles_are_all_checked(profiles: ProfileSet) -> None:
    flag = fresh(FLAG)
    del flag["category"]
    flag["meta"]["profile"] = [UKCORE + "Flag"]
    assert findings(profiles.validate(flag)) == []
    flag["meta"]["profile"] = [UKCORE + "Flag", SD + "/CarethreadFlag"]
    assert ("error", "required", "Flag.category") in findings(profiles.validate(flag))


def test_without_meta_profile_ours_is_used(profiles: ProfileSet) -> None:
    flag = fresh(FLAG)
    del flag["category"]
    del flag["meta"]
    assert ("error", "required", "Flag.category") in findings(profiles.validate(flag))


def test_unknown_profile_argument(profiles: ProfileSet) -> None:
    issues = profiles.validate(fresh(PATIENT), "https://example.org/StructureDefinition/Nope")
    assert findings(issues) == [("error", "not-found", "Patient")]


def test_profile_for_another_type(profiles: ProfileSet) -> None:
    assert findings(profiles.validate(fresh(PATIENT), SD + "/CarethreadFlag")) == [("error", "structure", "Patient")]


def test_not_a_resource(profiles: ProfileSet) -> None:
    assert findings(profiles.validate({"id": "x"})) == [("error", "structure", "Resource")]


def test_unknown_type_and_value_set_are_announced_once_per_run() -> None:
    profiles = load_profiles()  # a fresh run
    first = profiles.validate({"resourceType": "Basic", "id": "b"})
    assert [(i.severity, i.code) for i in first] == [("information", "not-found")]
    assert profiles.validate({"resourceType": "Basic", "id": "b"}) == []
    enc = [i for i in profiles.validate(fresh(ENCOUNTER)) if i.severity == "information"]
    assert [i.expression for i in enc] == ["Encounter.class"]  # v3-ActEncounterCode is not held
    assert profiles.validate(fresh(ENCOUNTER)) == []


def test_outcome() -> None:
    assert outcome([]) == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": "no issues"}]}
    issue = ValidationIssue("error", "required", "Flag.subject", "missing required element")
    assert outcome([issue]) == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "required", "diagnostics": "missing required element", "expression": ["Flag.subject"]}]}


def test_outcome_is_a_valid_r4_operation_outcome() -> None:
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    issue = ValidationIssue("warning", "code-invalid", "Flag.code.coding[0].code", "coding not in the value set")
    OperationOutcome.model_validate(outcome([issue]))
    OperationOutcome.model_validate(outcome([]))


def test_absurd_nesting_is_an_issue_not_a_crash(profiles: ProfileSet) -> None:
    ext: dict[str, object] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(3000):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    patient = fresh(PATIENT) | {"extension": [ext]}
    assert ("error", "structure", "Patient") in findings(profiles.validate(patient))


def test_contained_resources_are_validated_in_place(profiles: ProfileSet) -> None:
    flag = fresh(FLAG)
    flag["contained"].append({"resourceType": "Patient", "id": "cp", "gender": "x"})  # UK Core: no identifier needed
    flag["subject"] = {"reference": "#cp"}
    assert findings(profiles.validate(flag, SD + "/CarethreadFlag")) == [("error", "code-invalid", "Flag.contained[1].gender")]
    flag["subject"] = {"reference": "#nowhere"}
    assert ("error", "invariant", "Flag.subject") in findings(profiles.validate(flag, SD + "/CarethreadFlag"))  # ref-1


def test_invariants_on_primitive_elements(profiles: ProfileSet) -> None:
    patient = fresh(PATIENT) | {"text": {"status": "generated", "div": "<p>not xhtml</p>"}}
    assert findings(profiles.validate(patient)) == [("error", "invariant", "Patient.text.div")]
    patient["text"]["div"] = '<div xmlns="http://www.w3.org/1999/xhtml">Synthetic patient</div>'
    assert findings(profiles.validate(patient)) == []


def test_concurrent_validation_gives_the_sequential_verdicts() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.conformance.resources import VALID

    base = "http://hl7.org/fhir/StructureDefinition/"  # base profiles: plans built lazily, under contention
    jobs = [(fresh(r), base + r["resourceType"]) for r in VALID.values()] * 20
    sequential = load_profiles()
    expected = [findings(sequential.validate(r, p)) for r, p in jobs]
    shared = load_profiles()
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: findings(shared.validate(*job)), jobs))
    assert got == expected
