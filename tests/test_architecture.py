"""Structural rules: R4 models only from fhir.resources.R4B (the root is R5), and only in the modules
that own FHIR model access; no value-bearing logging calls in the ingest path."""

from __future__ import annotations

import ast
from pathlib import Path

ADAPTER = Path(__file__).resolve().parents[1] / "adapter"
FHIR_MODEL_MODULES = {"fhir.py", "fhir_validate.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_fhir_resources_only_r4b_or_stu3_and_only_in_the_model_modules() -> None:
    for path in ADAPTER.rglob("*.py"):
        for name in _imports(path):
            if name == "fhir.resources" or name.startswith("fhir.resources."):
                assert name.startswith(("fhir.resources.R4B", "fhir.resources.STU3")), f"{path}: {name} is R5"
                assert path.name in FHIR_MODEL_MODULES, f"{path} imports {name}; go through adapter/fhir.py"


def test_hl7apy_stays_off_the_hot_path() -> None:
    allowed = {"hl7names.py"}
    for path in ADAPTER.rglob("*.py"):
        if any(n.startswith("hl7apy") for n in _imports(path)):
            assert path.name in allowed, f"{path} imports hl7apy: keep its element tree off the ingest path"
