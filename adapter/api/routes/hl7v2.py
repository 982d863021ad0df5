"""``POST /hl7v2``: HL7 v2 over HTTP.  Body: one ER7 message; response body: its ACK.
``POST /fhir/$convert``: the same payload as a dry run (what would be stored, and the mapping trace).

Every well-formed request gets an ACK (AA/AE/AR) with HTTP 200, as HL7 over HTTP expects; an ACK
sent to us gets 204 (acknowledgements are never acknowledged).  If the store is down, 503 with an
OperationOutcome and no ACK: nothing was archived, so the sender must resend.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from adapter.api.outcomes import FhirJSONResponse, operation_outcome, outcome_resource
from adapter.convert import as_parameters, issues_of
from adapter.inbound.er7 import split_batch
from adapter.errors import StoreError
from adapter.pipeline import Pipeline

__all__ = ["hl7v2_router", "HL7V2_MEDIA_TYPE"]

HL7V2_MEDIA_TYPE = "x-application/hl7-v2+er7"


def hl7v2_router(pipeline: Pipeline) -> APIRouter:
    router = APIRouter(tags=["hl7v2"])

    @router.post(
        "/hl7v2",
        summary="Submit one HL7 v2 message (ER7); the response body is its ACK",
        responses={200: {"content": {HL7V2_MEDIA_TYPE: {}}}, 204: {"description": "an ACK was received"},
                   503: {"description": "store unavailable; OperationOutcome"}},
    )
    async def post_hl7v2(request: Request) -> Response:
        body = await request.body()
        try:
            processed = await run_in_threadpool(pipeline.process, body, channel="http")
        except StoreError as exc:
            return operation_outcome(503, "transient", exc.message)
        if processed.ack is None:
            return Response(status_code=204)
        return Response(content=processed.ack, media_type=HL7V2_MEDIA_TYPE,
                        headers={"X-Carethread-Archive-Id": str(processed.outcome.archive_id)})

    @router.post(
        "/fhir/$convert",
        summary="Dry run: the FHIR Bundle an HL7 v2 payload would store, with the mapping trace; nothing is stored",
        responses={200: {"description": "Parameters: bundle, outcome, trace"},
                   400: {"description": "cannot be processed (as ACK AR); OperationOutcome"},
                   422: {"description": "understood but not applicable (as ACK AE); OperationOutcome"}},
    )
    async def convert(request: Request) -> Response:
        body = await request.body()
        try:
            results, resources = await run_in_threadpool(pipeline.dry_run, list(split_batch(body)) or [body])
        except StoreError as exc:
            return operation_outcome(503, "transient", exc.message)
        statuses = {p.outcome.status for p in results}
        if statuses & {"AR", "AE"}:
            status = 400 if "AR" in statuses else 422
            return FhirJSONResponse(outcome_resource(*issues_of(results)), status_code=status)
        return FhirJSONResponse(as_parameters(results, resources))

    return router
