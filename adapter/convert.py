"""The ``$convert`` dry run's output: what ingesting a payload would store, and how the mapping ran.

``carethread convert`` prints the Bundle (stdout) and the trace (stderr); ``POST /fhir/$convert``
answers a ``Parameters`` resource holding the Bundle, an OperationOutcome and the trace.
"""

from __future__ import annotations

from typing import Any

from adapter.pipeline import Processed

__all__ = ["transaction_bundle", "trace_of", "as_parameters", "issues_of"]


def transaction_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that would store ``resources`` (PUT by id: ids are deterministic)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def trace_of(processed: Processed) -> dict[str, Any]:
    """One message's outcome and mapping trace: codes, locations and file names only, never values."""
    o = processed.outcome
    out: dict[str, Any] = {
        "control_id": processed.header.control_id if processed.header else None,
        "status": o.status,
        "issues": [{"severity": i.severity, "code": i.code, "location": i.location} for i in o.issues],
    }
    if o.trace is not None:
        out["mapping_files"] = list(o.trace.files)
        out["unused_fields"] = list(o.trace.unused_fields)
    return out


def issues_of(results: list[Processed]) -> list[dict[str, Any]]:
    """OperationOutcome issues for every problem in the run (AE/AR errors, mapping warnings)."""
    issues = []
    for p in results:
        for i in p.outcome.issues:
            entry: dict[str, Any] = {"severity": "error" if i.severity == "E" else "warning",
                                     "code": "invalid" if p.outcome.status == "AR" else "processing",
                                     "diagnostics": f"[{i.code}] {i.message}"}
            if i.location:
                entry["location"] = [i.location]
            issues.append(entry)
    return issues


def as_parameters(results: list[Processed], resources: list[dict[str, Any]]) -> dict[str, Any]:
    traces = [trace_of(p) for p in results]
    parts: list[dict[str, Any]] = []
    for t in traces:
        message_parts = [{"name": "status", "valueCode": t["status"]}]
        if t["control_id"]:
            message_parts.append({"name": "controlId", "valueString": t["control_id"]})
        message_parts += [{"name": "mappingFile", "valueString": f} for f in t.get("mapping_files", [])]
        message_parts += [{"name": "unusedField", "valueString": f} for f in t.get("unused_fields", [])]
        parts.append({"name": "trace", "part": message_parts})
    outcome = {"resourceType": "OperationOutcome",
               "issue": issues_of(results) or [{"severity": "information", "code": "informational",
                                                "diagnostics": "converted without issues"}]}
    return {"resourceType": "Parameters", "parameter": [
        {"name": "bundle", "resource": transaction_bundle(resources)},
        {"name": "outcome", "resource": outcome},
        *parts,
    ]}
