"""Golden cases (tests/golden/): each input maps to exactly its expected JSON.

``pytest --update-golden`` rewrites the expected files from the current mapper; read the JSON diff.
"""

from __future__ import annotations

import difflib
import json

import pytest

from tests.mapping.golden import GOLDEN, Case, discover, dumps, run

CASES = discover("hl7v2")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_golden(case: Case, update_golden: bool) -> None:
    if not case.source_path.exists():
        pytest.skip(f"referenced sample not present: {case.source_path}")
    result = run(case)
    actual, issues = dumps(result.resources), dumps(result.issues)
    if update_golden:
        case.expected_path.write_text(actual, encoding="utf-8")
        if result.issues:
            case.issues_path.write_text(issues, encoding="utf-8")
        elif case.issues_path.exists():
            case.issues_path.unlink()
        return
    assert case.expected_path.exists(), f"{case.id}: no expected file; run pytest --update-golden and review it"
    expected = case.expected_path.read_text(encoding="utf-8")
    if json.loads(expected) != json.loads(actual):
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "expected", "actual",
                                              lineterm="", n=2))
        pytest.fail(f"{case.id}: output differs from {case.expected_path.name}\n{diff}")
    expected_issues = json.loads(case.issues_path.read_text(encoding="utf-8")) if case.issues_path.exists() else []
    assert result.issues == expected_issues


def test_every_case_is_described_and_every_description_has_a_case() -> None:
    for folder in sorted(p for p in (GOLDEN / "hl7v2").iterdir() if p.is_dir()):
        stems = {c.stem for c in CASES if c.input_path.parent == folder}
        described = {c.stem for c in CASES if c.input_path.parent == folder and c.description}
        assert stems == described, f"{folder.name}: cases.yaml must describe {sorted(stems - described)}"
        for case in (c for c in CASES if c.input_path.parent == folder):
            assert case.description.get("what"), f"{case.id}: cases.yaml needs 'what'"
            assert case.description.get("fields"), f"{case.id}: cases.yaml needs the 'fields' it relies on"
        import yaml

        listed = set(yaml.safe_load((folder / "cases.yaml").read_text(encoding="utf-8")) or {})
        assert listed <= stems, f"{folder.name}/cases.yaml describes cases with no input: {sorted(listed - stems)}"


def test_no_stale_expected_files() -> None:
    inputs = {(c.input_path.parent, c.stem) for c in CASES}
    for path in (GOLDEN / "hl7v2").rglob("*.json"):
        stem = path.name.split(".", 1)[0]
        assert (path.parent, stem) in inputs, f"{path} has no input file"
