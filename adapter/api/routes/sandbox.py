"""``/sandbox/clock``: the sandbox's time, which an engineer may move forward.  Mounted only by
``carethread sandbox``: outside the sandbox the clock is real time and this endpoint does not exist.

    GET  /sandbox/clock                          {"now": "2026-11-26T10:00:00+00:00"}
    POST /sandbox/clock  {"advance": "P30D"}     move forward (ISO 8601 days/hours: PnD, PTnH, PnDTnH)
    POST /sandbox/clock  {"now": "2027-01-01T09:00:00+00:00"}   move forward to a time

After a move the daily rules run at the new time (18th birthdays, the was-not-brought window, the
handover clock), so their results can be seen at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from adapter.api.outcomes import operation_outcome
from adapter.clock import SandboxClock

__all__ = ["sandbox_router", "parse_duration"]

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


def parse_duration(text: str) -> timedelta | None:
    m = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if m is None or not any(m.groups()):
        return None
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def sandbox_router(clock: SandboxClock, after_move: Callable[[datetime], Any] | None = None) -> APIRouter:
    router = APIRouter(tags=["sandbox"])

    @router.get("/sandbox/clock", summary="The sandbox's current time")
    async def get_clock() -> Response:
        return JSONResponse({"now": clock().isoformat(timespec="seconds")})

    @router.post("/sandbox/clock", summary="Move the sandbox clock forward, then run the daily rules")
    async def move_clock(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not ({"advance", "now"} & body.keys()):
            return operation_outcome(400, "invalid", 'Send {"advance": "P30D"} or {"now": "<ISO date-time with offset>"}')
        try:
            if "advance" in body:
                delta = parse_duration(body["advance"])
                if delta is None:
                    return operation_outcome(400, "invalid", "advance is an ISO 8601 duration such as P30D or PT6H")
                now = clock.advance(delta)
            else:
                now = clock.set(datetime.fromisoformat(str(body["now"])))
        except ValueError:
            return operation_outcome(422, "invalid", "The sandbox clock only moves forward, to a time with an offset")
        if after_move is not None:
            await run_in_threadpool(after_move, now)
        return JSONResponse({"now": now.isoformat(timespec="seconds")})

    return router
