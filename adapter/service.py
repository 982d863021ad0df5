"""Run the FHIR API, ``POST /hl7v2`` and the MLLP listener in one asyncio loop; stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import datetime

import uvicorn

from adapter.api.app import create_app
from adapter.api.routes.hl7v2 import hl7v2_router
from adapter.api.routes.identity import identity_router
from adapter.api.routes.ingest import ingest_router
from adapter.api.routes.sandbox import sandbox_router
from adapter.api.routes.summary import summary_router
from adapter.clock import SandboxClock
from adapter.inbound import mllp
from adapter.inbound.listener import PipelineHandler
from adapter.notify import configure_organisations, prepare_notifications
from adapter.pipeline import Pipeline
from adapter.rules import run_daily
from adapter.settings import Settings
from adapter.store.sqlite import SqliteStore
from adapter.web import web_router

__all__ = ["run_services", "open_pipeline", "daily_rules"]

DAILY_RULES_INTERVAL = 3600.0  # seconds between evaluations of the clock rules (at 18, handover gap)

_log = logging.getLogger("carethread.service")


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: this process owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def open_pipeline(settings: Settings, *, bulk: bool = False) -> Pipeline:
    """``bulk``: a file load that commits in large batches (bigger writer cache; see SqliteStore)."""
    store = SqliteStore(settings.db, synchronous=settings.sqlite_synchronous, writer_cache_mb=64 if bulk else None)
    pipeline = Pipeline(store, settings)
    configure_organisations(store, settings, check=pipeline.check_resource)  # who notifications go to
    return pipeline


async def daily_rules(pipeline: Pipeline, interval: float = DAILY_RULES_INTERVAL) -> None:
    """The safeguarding rules' clocks (adapter.rules.run_daily): at start, then every ``interval`` seconds,
    in a worker thread (the store's transaction blocks); until cancelled."""
    while True:
        try:
            await asyncio.to_thread(run_daily, pipeline.store, pipeline.rules, pipeline.clock())
        except Exception as exc:  # noqa: BLE001 - the next run tries again
            _log.exception("daily safeguarding rules failed (%s)", type(exc).__name__)
        await asyncio.sleep(interval)


async def run_services(settings: Settings, pipeline: Pipeline, *, label: str = "carethread",
                       before_ready: Callable[[int, int], None] | None = None, sandbox: bool = False) -> int:
    """``sandbox``: the pipeline's clock becomes a SandboxClock that ``POST /sandbox/clock`` moves forward
    (rules and notification delivery both follow it), and ``/sandbox/inbox`` receives the organisations'
    notifications; elsewhere time is real and those endpoints absent.  ``before_ready(http_port, mllp_port)``
    runs in a worker thread once both listen (the sandbox's story is sent to them), before the ready line."""
    # organisations from configuration (ConfigError stops start-up), and the notification delivery worker
    delivery = prepare_notifications(pipeline.store, settings, check=pipeline.check_resource)
    routers = [hl7v2_router(pipeline), ingest_router(pipeline), identity_router(pipeline),
               summary_router(pipeline), web_router(pipeline)]
    if sandbox:
        clock = SandboxClock()
        pipeline.clock = clock
        delivery.clock = clock

        def after_move(now: datetime) -> None:
            run_daily(pipeline.store, pipeline.rules, now)
            delivery.wake()

        routers.append(sandbox_router(clock, after_move))
        from adapter.notify import load_organisations
        from adapter.sandbox import Inbox, inbox_router

        inbox = Inbox([o.ods.upper() for o in load_organisations(settings.organisations)])
        routers.append(inbox_router(inbox, clock))
    app = create_app(pipeline.store, routers=routers,
                     validate_resource=pipeline.resource_issues)
    config = uvicorn.Config(app, host=settings.host, port=settings.http_port, log_level="warning",
                            access_log=False, lifespan="off")
    http = _Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # bind here, not inside uvicorn, so a busy port is a clear message and exit status 1
        http_socket = socket.create_server((settings.host, settings.http_port), reuse_port=False)
        http_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    except OSError as exc:
        print(f"{label}: could not start the HTTP server on {settings.host}:{settings.http_port} "
              f"({exc.strerror})", file=sys.stderr)
        return 1
    try:
        listener = await mllp.start_server(PipelineHandler(pipeline), settings.host, settings.mllp_port,
                                           max_frame=settings.mllp_max_frame,
                                           idle_timeout=settings.mllp_idle_timeout)
    except OSError as exc:
        http_socket.close()
        print(f"{label}: could not start the MLLP listener on {settings.host}:{settings.mllp_port} "
              f"({exc.strerror})", file=sys.stderr)
        return 1
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    while not http.started:
        if http_task.done():
            await mllp.stop_server(listener)
            print(f"{label}: the HTTP server failed to start", file=sys.stderr)
            return 1
        await asyncio.sleep(0.02)
    mllp_port = listener.sockets[0].getsockname()[1]
    http_port = http_socket.getsockname()[1]
    if before_ready is not None:
        await asyncio.to_thread(before_ready, http_port, mllp_port)
    delivery.start()  # pending notifications, a previous run's included, go out from now
    rules_task = asyncio.create_task(daily_rules(pipeline))  # at-18 and handover-gap clocks
    print(f"{label} ready: fhir=http://{settings.host}:{http_port}/fhir hl7v2-http=http://{settings.host}:"
          f"{http_port}/hl7v2 mllp={settings.host}:{mllp_port} db={settings.db}", flush=True)
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    http.should_exit = True
    await mllp.stop_server(listener)
    with contextlib.suppress(asyncio.CancelledError):
        await http_task
    stop_task.cancel()
    rules_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await rules_task
    await delivery.stop()
    pipeline.store.close()
    _log.info("%s stopped", label)
    return 0
