"""``POST /ingest/health-visiting`` (multipart upload of an export) and ``POST /ingest/gp`` (a Bundle).

Both answer an OperationOutcome: one issue per rejected row or bundle entry (its file and line, or its
``Bundle.entry[i]``, and the column or element: never a value), and an ``ingest-summary`` extension
with the counts ``accepted``, ``errors``, ``rejected``, ``duplicates`` (rows for an export; for a bundle,
its entries stored and the bundle's own status).

    200  processed (some rows / entries may still be rejected: see the issues)
    400  nothing to read: no file in the upload; a bundle that is not JSON or not a Bundle
    422  a bundle with no Patient (or whose Patient is invalid): nothing stored
    503  the store is unavailable: nothing archived, send again
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from adapter.api.outcomes import FhirJSONResponse, operation_outcome
from adapter.errors import StoreError
from adapter.inbound.export import open_export
from adapter.pipeline import Pipeline
from adapter.records import Issue, Outcome

__all__ = ["ingest_router", "SUMMARY_URL", "issue_location"]

SUMMARY_URL = "https://fhir.carethread.org/StructureDefinition/ingest-summary"
_COUNTS = (("accepted", "AA"), ("errors", "AE"), ("rejected", "AR"), ("duplicates", "duplicate"))
_ISSUE_CODE = {"AR": "structure", "AE": "processing"}


def issue_location(where: str, issue: Issue) -> str:
    """``people.csv:5 column:nhs_number``, ``Bundle.entry[3]``: the one way a row or entry is named."""
    if issue.location and issue.location.startswith(where):
        return issue.location
    return f"{where} {issue.location}".strip() if issue.location else where


def _outcome(counts: Counter[str], problems: list[tuple[str, str, Issue]]) -> dict[str, Any]:
    issues: list[dict[str, Any]] = [
        {"severity": "error" if i.severity == "E" else "warning" if i.severity == "W" else "information",
         "code": _ISSUE_CODE.get(status, "processing") if i.severity == "E" else "informational",
         "details": {"coding": [{"system": "https://fhir.carethread.org/CodeSystem/error-code", "code": i.code}]},
         "diagnostics": i.message, "location": [where]}
        for where, status, i in problems
    ]
    summary = ", ".join(f"{name} {counts[status]}" for name, status in _COUNTS)
    issues.insert(0, {"severity": "information", "code": "informational", "diagnostics": summary})
    return {"resourceType": "OperationOutcome",
            "extension": [{"url": SUMMARY_URL, "extension": [{"url": name, "valueInteger": counts[status]}
                                                             for name, status in _COUNTS]}],
            "issue": issues}


def ingest_router(pipeline: Pipeline) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post(
        "/ingest/health-visiting",
        summary="Upload a health visiting export (CSV / JSON-lines files, or a zip): per-row outcomes",
        responses={200: {"description": "OperationOutcome: the counts, and an issue per rejected row"},
                   400: {"description": "no file in the upload; OperationOutcome"},
                   503: {"description": "store unavailable; OperationOutcome"}},
    )
    async def post_health_visiting(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return operation_outcome(400, "invalid", "Send the export as multipart/form-data file parts")
        try:
            form = await request.form(max_files=10_000)
        except Exception:  # noqa: BLE001 - a broken multipart body is the client's error
            return operation_outcome(400, "invalid", "The multipart body cannot be read")
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not uploads:
            return operation_outcome(400, "invalid", "The upload holds no file")
        try:
            with tempfile.TemporaryDirectory(prefix="carethread-upload-") as tmp:
                files = []
                for n, upload in enumerate(uploads):
                    name = PurePosixPath(upload.filename or f"upload-{n}.csv").name or f"upload-{n}.csv"
                    target = Path(tmp) / f"{n:05d}" / name
                    target.parent.mkdir()
                    with target.open("wb") as out:  # streamed to disk: memory stays flat
                        shutil.copyfileobj(upload.file, out, 1 << 20)
                    files += open_export(target)
                counts, problems = await run_in_threadpool(_ingest_rows, pipeline, files)
        except StoreError as exc:
            return operation_outcome(503, "transient", exc.message)
        finally:
            await form.close()
        return FhirJSONResponse(_outcome(counts, problems))

    @router.post(
        "/ingest/gp",
        summary="Submit a GP Connect STU3 Bundle (Access Record Structured, or Appointment Management)",
        responses={200: {"description": "OperationOutcome: the counts, and an issue per rejected entry"},
                   400: {"description": "not JSON, or not a Bundle; OperationOutcome"},
                   422: {"description": "no Patient, or the Patient itself invalid; OperationOutcome"},
                   503: {"description": "store unavailable; OperationOutcome"}},
    )
    async def post_gp(request: Request, practice: str | None = None) -> Response:
        body = await request.body()
        try:
            result = await run_in_threadpool(pipeline.process_bundle, body, channel="http", practice=practice)
        except StoreError as exc:
            return operation_outcome(503, "transient", exc.message)
        o = result.outcome
        counts: Counter[str] = Counter({o.status: 1})
        problems = [(issue_location("Bundle", i), o.status, i) for i in o.issues]
        return FhirJSONResponse(_outcome(counts, problems), status_code=result.http_status,
                                headers={"X-Carethread-Archive-Id": str(o.archive_id)})

    return router


def _ingest_rows(pipeline: Pipeline, files: list[Any]) -> tuple[Counter[str], list[tuple[str, str, Issue]]]:
    counts: Counter[str] = Counter()
    problems: list[tuple[str, str, Issue]] = []
    for result in pipeline.ingest_export(files, channel="http"):
        o: Outcome = result.outcome
        counts[o.status] += 1
        for i in o.issues:
            problems.append((issue_location(f"{result.file}:{result.line}", i), o.status, i))
    return counts, problems
