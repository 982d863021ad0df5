"""``POST /hl7v2``: HL7 v2 over HTTP.  Body: one ER7 message; response body: its ACK.

Every well-formed request gets an ACK (AA/AE/AR) with HTTP 200, as HL7 over HTTP expects; an ACK
sent to us gets 204 (acknowledgements are never acknowledged).  If the store is down, 503 with an
OperationOutcome and no ACK: nothing was archived, so the sender must resend.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from adapter.api.outcomes import operation_outcome
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

    return router
