"""Invariants: every plain-Python fast path agrees with fhirpathpy wherever fhirpathpy can evaluate the same
expression; an expression fhirpathpy cannot evaluate becomes a warning, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter.conformance import ProfileSet, load_profiles
from adapter.conformance.invariants import FAST_PATHS, TRIGGERS, Invariants
from adapter.conformance.plans import Planner
from tests.conformance.resources import APPOINTMENT_BOOKED, SD, VALID, findings, fresh
from tests.conformance.test_profile_rules import CASES

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "ukcore" / "ukcore-stu2" / "examples"
Call = tuple[str, str, Any, str, Any, Any, bool]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProfileSet, list[Call]]:
    """A ProfileSet whose fast paths record (key, expression, value, type, %resource, %rootResource, verdict)."""
    calls: list[Call] = []
    original = Planner._fill

    def wrap(c: Any, fast: Callable[..., Any], type_name: str) -> Callable[..., Any]:
        def recorded(value: Any, resource: Any, root: Any) -> Any:
            verdict = fast(value, resource, root)
            calls.append((c.key, c.expression, value, type_name, resource, root, verdict))
            return verdict
        return recorded

    def fill(self: Planner, plan: Any, node: Any, tcode: str) -> None:
        original(self, plan, node, tcode)
        plan.constraints = tuple((c, wrap(c, f, plan.type_name) if f else f, t) for c, f, t in plan.constraints)

    mp = pytest.MonkeyPatch()
    mp.setattr(Planner, "_fill", fill)
    try:
        profiles = load_profiles()
    finally:
        mp.undo()
    return profiles, calls


def test_fast_paths_agree_with_fhirpathpy(recording: tuple[ProfileSet, list[Call]]) -> None:
    profiles, calls = recording
    corpus: list[tuple[dict[str, Any], str | None]] = [(fresh(r), f"{SD}/{n}") for n, r in VALID.items()]
    for _, name, base, mutate, _ in CASES:
        resource = fresh(base)
        mutate(resource)
        corpus.append((resource, f"{SD}/{name}"))
    corpus += [(json.loads(p.read_text()), None) for p in sorted(EXAMPLES.glob("UKCore-*-Example.json"))
               if p.name.split("-")[1] in ("Patient", "RelatedPerson", "Flag", "Appointment", "Encounter", "Task")]
    for resource, profile in corpus:
        profiles.validate(resource, profile)
    evaluator = Invariants()
    compared, keys = 0, set()
    for key, expression, value, type_name, resource, root, verdict in calls:
        if verdict is None or (key == "ref-1" and value.get("reference") == "#"):
            continue  # undecided, or the documented R5 correction of ref-1
        slow = evaluator.evaluate(expression, value, type_name, resource, root)
        if slow is None:
            continue  # fhirpathpy cannot evaluate it (hasValue, htmlChecks, 'as' on collections)
        assert verdict == slow, (key, type_name)
        compared += 1
        keys.add(key)
    assert compared > 100
    assert {"app-1", "app-2", "app-3", "ct-app-1", "ct-app-2", "ct-pat-1", "ct-com-1", "inv-1", "pat-1"} <= keys


@pytest.mark.parametrize("key", sorted(TRIGGERS))
def test_a_trigger_absent_means_the_invariant_holds(key: str) -> None:
    fast = next(f for (k, _), f in FAST_PATHS.items() if k == key)
    for value in ({}, {"id": "x"}, {"status": "booked"}):
        assert fast(value, value, value) is True


def test_fhirpathpy_evaluation_failure_is_a_warning(profiles: ProfileSet) -> None:
    evaluator = Invariants()
    assert evaluator.evaluate("hasValue()", "x", "string", {}, {}) is None  # not implemented in fhirpathpy
    assert evaluator.evaluate("where(", {}, "Patient", {}, {}) is None  # does not parse


def test_an_invariant_that_cannot_be_evaluated_is_reported_as_a_warning(tmp_path: Path) -> None:
    import shutil

    root = Path(__file__).resolve().parents[2] / "profiles"
    shutil.copytree(root, tmp_path / "profiles")
    sd_path = tmp_path / "profiles" / "structuredefinitions" / "CarethreadAppointment.json"
    sd = json.loads(sd_path.read_text())
    sd["differential"]["element"][0]["constraint"].append(
        {"key": "ct-app-9", "severity": "error", "human": "test only", "expression": "status.hasValue()",
         "source": sd["url"]})
    sd_path.write_text(json.dumps(sd))
    profiles = load_profiles(tmp_path / "profiles")
    issues = profiles.validate(fresh(APPOINTMENT_BOOKED), sd["url"])
    assert findings(issues) == [("warning", "invariant", "Appointment")]
    assert issues[0].diagnostics == "ct-app-9: could not be evaluated"
