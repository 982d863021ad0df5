"""The HTTP face of Carethread: ``create_app(store)`` and the FHIR REST API under ``/fhir``."""

from adapter.api.app import create_app

__all__ = ["create_app"]
