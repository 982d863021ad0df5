"""FHIR vocabulary used across Carethread, and the entry point for R4 validation.

R4 output is validated with ``fhir.resources.R4B`` (the package root is R5: never import it).
Model access lives here and in :mod:`adapter.fhir_validate` (the shape-memoized validator whose
verdicts equal fhir.resources' own, at a tenth of the cost).
"""

from __future__ import annotations

from typing import Any

from adapter.errors import MappingError
from adapter.fhir_validate import R4ValidationError, validate_r4_resource

__all__ = [
    "CT",
    "NHS_NUMBER_SYSTEM",
    "SNOMED",
    "UKCORE_NHS_VERIFICATION_EXT",
    "ATTENDANCE_OUTCOME_EXT",
    "ATTENDANCE_OUTCOME_CS",
    "NHS_DD_ATTENDANCE_CS",
    "CT_FLAG_CATEGORY_CS",
    "validate_r4",
]

# Our own canonical base for CodeSystems, extensions and identifier systems.
CT = "https://fhir.carethread.org"

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
UKCORE_NHS_VERIFICATION_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"

# Attendance outcome on an Appointment (no UK Core element exists; see DOMAIN.md §2).
ATTENDANCE_OUTCOME_EXT = f"{CT}/StructureDefinition/Extension-Carethread-AttendanceOutcome"
ATTENDANCE_OUTCOME_CS = f"{CT}/CodeSystem/attendance-outcome"  # was-not-brought | did-not-attend
# NHS Data Dictionary ATTENDED OR DID NOT ATTEND (no published FHIR CodeSystem: ours mirrors the DD codes).
NHS_DD_ATTENDANCE_CS = f"{CT}/CodeSystem/nhs-dd-attended-or-did-not-attend"

CT_FLAG_CATEGORY_CS = f"{CT}/CodeSystem/flag-category"  # our safeguarding category
INVALID_NHS_NUMBER_SYSTEM = f"{CT}/Id/nhs-number-failing-check"


def validate_r4(resource: dict[str, Any]) -> None:
    """Structural validation with fhir.resources R4B; raises MappingError naming the FHIRPath location."""
    try:
        validate_r4_resource(resource)
    except R4ValidationError as exc:
        raise MappingError(f"{exc.resource_type} fails FHIR R4 validation ({exc.error_type})",
                           code="invalid-resource", location=exc.path) from None
