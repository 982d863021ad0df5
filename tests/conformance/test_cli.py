"""run_validate: one OperationOutcome for all files, expressions located per file/entry, exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from adapter.conformance.cli import run_validate
from tests.conformance.resources import APPOINTMENT_BOOKED, FLAG, PATIENT, fresh


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def _run(paths: list[Path], profile: str | None = None) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = run_validate(paths, profile, out=out)
    return code, json.loads(out.getvalue())


def test_valid_files_exit_0(tmp_path: Path) -> None:
    code, oo = _run([_write(tmp_path / "patient.json", PATIENT), _write(tmp_path / "flag.json", FLAG)])
    assert code == 0
    assert oo["resourceType"] == "OperationOutcome"
    assert all(i["severity"] != "error" for i in oo["issue"])


def test_invalid_resource_exit_1(tmp_path: Path) -> None:
    bad = fresh(APPOINTMENT_BOOKED) | {"status": "wasnotbrought"}
    code, oo = _run([_write(tmp_path / "ok.json", PATIENT), _write(tmp_path / "appt.json", bad)])
    assert code == 1
    errors = [i for i in oo["issue"] if i["severity"] == "error"]
    assert [(i["code"], i["expression"]) for i in errors] == [("code-invalid", ["Appointment.status"])]
    assert errors[0]["diagnostics"].startswith("appt.json: ")


def test_bundle_entries_are_located(tmp_path: Path) -> None:
    patient = fresh(PATIENT)
    patient["name"] = [{}]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": fresh(FLAG)}, {"fullUrl": "urn:uuid:1"}, {"resource": patient}]}
    code, oo = _run([_write(tmp_path / "bundle.json", bundle)])
    assert code == 1
    found = [(i["code"], i["expression"][0]) for i in oo["issue"] if i["severity"] == "error"]
    assert found == [("required", "Bundle.entry[1].resource"), ("invariant", "Bundle.entry[2].resource.name[0]")]
    assert all(i["diagnostics"].startswith("bundle.json: ") for i in oo["issue"])


def test_profile_option(tmp_path: Path) -> None:
    flag = fresh(FLAG)
    del flag["category"]
    path = _write(tmp_path / "flag.json", flag)
    assert _run([path], "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Flag")[0] == 0
    assert _run([path], "https://fhir.carethread.org/StructureDefinition/CarethreadFlag")[0] == 1


def test_unreadable_and_missing_files_exit_1(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    code, oo = _run([tmp_path / "broken.json", tmp_path / "missing.json"])
    assert code == 1
    assert [(i["code"], i["diagnostics"].split(":")[0]) for i in oo["issue"]] == [
        ("structure", "broken.json"), ("not-found", "missing.json")]
