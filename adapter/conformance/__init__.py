"""Profile validation: Carethread, UK Core and base R4 StructureDefinitions applied to FHIR R4 JSON.

``load_profiles()`` once at start-up, then ``ProfileSet.validate(resource)`` per resource; ``outcome()``
turns the issues into an OperationOutcome.  Definitions are read from ``profiles/`` only (never from the
network or a shared folder).
"""

from adapter.conformance.validator import ProfileSet, ValidationIssue, load_profiles, outcome

__all__ = ["ProfileSet", "ValidationIssue", "load_profiles", "outcome"]
