"""The CapabilityStatement, generated from the search-parameter table and the interactions the routes serve.

Nothing here is written by hand per resource: add a search parameter to ``adapter.store.search.SEARCH_PARAMS``
and it is indexed, searchable and declared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapter import __version__
from adapter.store.query import DEFAULT_COUNT, MAX_COUNT
from adapter.store.search import IDENTITY_PARAM_URL, SEARCH_PARAMS, describe, search_includes

__all__ = ["INTERACTIONS", "RESOURCE_TYPES", "capability_statement"]

RESOURCE_TYPES: tuple[str, ...] = tuple(SEARCH_PARAMS)
INTERACTIONS: tuple[str, ...] = ("read", "vread", "update", "history-instance", "create", "search-type")


# operations the service answers (adapter/api/routes/identity.py, summary.py)
OPERATIONS = {"Patient": [{"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                           "documentation": "Master Patients that may be the given person, with search.score and "
                                            "match-grade; nothing is stored"},
                          {"name": "safeguarding-summary",
                           "definition": "https://fhir.carethread.org/OperationDefinition/Patient-safeguarding-summary",
                           "documentation": "GET on a master or any source Patient: a collection Bundle (Composition "
                                            "first) for the whole identity: active and historical safeguarding "
                                            "flags with their provenance and evidence, was-not-brought events of "
                                            "the last 12 months by source, related persons with their ages, "
                                            "organisations involved, pending notifications"}]}


def _resource(resource_type: str) -> dict[str, Any]:
    operations = {"operation": OPERATIONS[resource_type]} if resource_type in OPERATIONS else {}
    return {
        **operations,
        "type": resource_type,
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned",
        "readHistory": True,
        "updateCreate": True,
        "conditionalUpdate": False,
        "searchInclude": search_includes(resource_type),
        "searchParam": [
            {"name": p.name, "type": p.type, "documentation": describe(p),
             **({"definition": IDENTITY_PARAM_URL} if p.identity is not None else {})}
            for p in SEARCH_PARAMS[resource_type].values()
        ],
    }


def capability_statement(fhir_base: str, *, title: str = "Carethread") -> dict[str, Any]:
    """An R4 CapabilityStatement for the server whose FHIR base URL is ``fhir_base``."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": title, "version": __version__},
        "implementation": {"description": f"{title} FHIR API", "url": fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Search: repeated parameters are AND'ed, comma-separated values OR'ed; _count (default "
                f"{DEFAULT_COUNT}, max {MAX_COUNT}; 0 gives the total only), _offset for paging, _include as "
                "listed. Unknown parameters give 400 unless the request has 'Prefer: handling=lenient'."
            ),
            "resource": [_resource(rtype) for rtype in RESOURCE_TYPES],
        }],
    }
