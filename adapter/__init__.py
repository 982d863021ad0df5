"""Carethread: FHIR R4 interoperability adapter for child safeguarding."""

__version__ = "0.1.0"
