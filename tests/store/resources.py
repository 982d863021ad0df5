"""Small synthetic resources for store tests (NHS numbers from the test range, made-up names)."""

from __future__ import annotations

from typing import Any

__all__ = ["NHS", "SNOMED", "flag", "patient"]

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"


def patient(pid: str = "pat-1", *, family: str = "Testperson", given: str = "Alex", nhs: str = "9999999999",
            birth_date: str = "2009-03-15", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": [given]}],
        "gender": "female", "birthDate": birth_date, **extra,
    }


def flag(fid: str = "flag-1", subject: str = "pat-1", *, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Flag", "id": fid, "status": status,
        "code": {"coding": [{"system": SNOMED, "code": "342191000000101"}]},
        "subject": {"reference": f"Patient/{subject}"},
    }
