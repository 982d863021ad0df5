"""The delivery worker: sends the outbox's pending notifications to their Subscriptions' rest-hook endpoints.

FHIR R4 rest-hook (subscription.html; Subscription.channel; SubscriptionChannelType ``rest-hook``: "executed
by making a post to the URI. If a payload is included, the URL is interpreted as the service base, and an
update (PUT) is made"):

* ``channel.payload`` ``application/fhir+json``: ``PUT {endpoint}/Communication/{id}`` with the Communication
  (its current version) as the body, ``Content-Type: application/fhir+json``;
* no ``channel.payload``: ``POST {endpoint}`` with no body (the receiver reads the server for what changed);
* each ``channel.header`` line is sent as a header (``Authorization: Bearer ...``, say).

Outcome of an attempt: a 2xx response is delivered. A connection error, a timeout or a 5xx response is retried
with exponential backoff and jitter (``base_delay * 2**(n-1)`` capped at ``max_delay``, then a uniform draw in
its upper half) until ``max_attempts`` attempts have been made; a 4xx (or any other) response fails at once.
Each attempt is appended to the row's history (``{at, outcome, http_status?, error?}``, outcome ``delivered``,
``retry`` or ``failed``; ``error`` is an exception class, never a message) in its own transaction.

When a Communication's last row settles, the Communication gets a new version: ``completed`` with
``received`` when every row was delivered, else ``not-done`` with a ``statusReason``. A failed row puts its
Subscription in ``error`` with an ``error`` note; a later delivery puts it back to ``active``.

Delivery is at least once: a process stopped between sending and recording sends again after the restart
(pending rows are picked up at start). PUT of the same id is idempotent for the receiver.

    worker = DeliveryWorker(store, DeliverySettings(), check=pipeline.check_resource)
    worker.start()          # in a running loop
    ...
    await worker.stop()

Settings: environment variables ``CARETHREAD_DELIVERY_*`` (``DeliverySettings``). Logs name outbox row ids,
our Communication and Subscription ids, HTTP statuses and exception classes only: never an endpoint, a
header or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapter.errors import AdapterError
from adapter.notify.communications import Check, add_waker, default_check, instant, remove_waker
from adapter.notify.subscriptions import FHIR_JSON, header_pair
from adapter.store.base import OutboxEntry, Store, Transaction

__all__ = ["DeliverySettings", "DeliveryWorker", "backoff_delay"]

_log = logging.getLogger("carethread.notify.delivery")

NOT_DONE_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-not-done-reason"
_MIN_WAIT = 0.05  # seconds: the shortest idle wait


def _subclasses(cls: type) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


# connection refused or reset, timeouts, protocol errors: the exception classes retried, by name (history)
_TRANSPORT_ERRORS = frozenset(c.__name__ for c in _subclasses(httpx.TransportError))


class DeliverySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARETHREAD_DELIVERY_", extra="forbid")

    max_attempts: int = Field(default=6, ge=1)  # attempts in all, the first included
    base_delay: float = Field(default=2.0, gt=0)  # seconds before the first retry; doubles with each one
    max_delay: float = Field(default=600.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)  # per request (connect, read, write, pool)
    poll_interval: float = Field(default=1.0, gt=0)  # the longest sleep between looks at the outbox
    concurrency: int = Field(default=8, ge=1)  # requests in flight at once
    batch: int = Field(default=50, ge=1)  # rows read per look


def backoff_delay(attempt: int, settings: DeliverySettings, rng: random.Random) -> float:
    """Seconds before retrying after failed attempt number ``attempt`` (1-based): exponential, capped, with
    jitter in the upper half (never zero, never in step with other rows)."""
    delay = min(settings.max_delay, settings.base_delay * 2 ** (attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: str  # delivered | retry | failed (retry: a failure worth retrying, if attempts remain)
    http_status: int | None = None
    error: str | None = None  # exception class

    def attempt(self, at: str, outcome: str) -> dict[str, Any]:
        record: dict[str, Any] = {"at": at, "outcome": outcome}
        if self.http_status is not None:
            record["http_status"] = self.http_status
        if self.error is not None:
            record["error"] = self.error
        return record

    @property
    def note(self) -> str:
        return f"HTTP {self.http_status}" if self.http_status is not None else (self.error or "error")


class DeliveryWorker:
    """Delivers pending outbox rows; one per process (see the module docstring)."""

    def __init__(self, store: Store, settings: DeliverySettings | None = None, *, check: Check | None = None,
                 clock: Callable[[], datetime] | None = None, rng: random.Random | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        """``clock``: the current time (aware; tests pass their own); ``rng``: the jitter's source;
        ``client``: the HTTP client (default: one of the worker's own, closed by ``stop``)."""
        self.store = store
        self.settings = settings or DeliverySettings()
        self.check = check or default_check
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rng = rng or random.Random()
        self._client = client
        self._own_client = client is None
        self._in_flight: set[int] = set()
        self._held: dict[int, tuple[float, int]] = {}  # row id -> (loop time it may go again, failures)
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._burst: float | None = None  # after a wake: short waits while the enqueuing commit lands

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the worker in the current loop until ``stop``. Pending rows (a previous process's included) are
        picked up at once."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="carethread-delivery")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look at the outbox now (thread-safe): notify() calls it through adapter.notify.communications."""
        loop, event = self._loop, self._event
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._burst = 0.02
        if self._event is not None:
            self._event.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        add_waker(self.wake)
        try:
            while True:
                try:
                    attempted = await self.run_once()
                    wait = 0.0 if attempted >= self.settings.batch else await self._idle_wait()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a store failure: keep the worker alive, try again later
                    _log.error("delivery pass failed (%s)", type(exc).__name__)
                    wait = self.settings.poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout=wait)
                self._event.clear()
        finally:
            remove_waker(self.wake)

    async def _idle_wait(self) -> float:
        wait = self.settings.poll_interval
        due = await asyncio.to_thread(self.store.next_outbox_due)
        if due is not None:
            # a row still due after a pass is held back (its recording failed): wait, never spin
            wait = min(wait, max(_MIN_WAIT, (datetime.fromisoformat(due) - self.clock()).total_seconds()))
        if self._burst is not None:  # rows enqueued in a transaction not yet committed: look again soon
            wait = min(wait, self._burst)
            self._burst = self._burst * 2 if self._burst * 2 < self.settings.poll_interval else None
        return wait

    # -- one pass -------------------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Attempt every row due now once (up to ``batch``); returns how many were attempted."""
        loop_now = asyncio.get_running_loop().time()
        self._held = {k: v for k, v in self._held.items() if v[0] > loop_now}
        skip = self._in_flight | self._held.keys()  # read past them: held rows must not crowd others out
        due = await asyncio.to_thread(self.store.due_outbox, instant(self.clock()),
                                      limit=self.settings.batch + len(skip))
        rows = [row for row in due if row.id not in skip][:self.settings.batch]
        if not rows:
            return 0
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout, follow_redirects=False)
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(row: OutboxEntry) -> None:
            async with limit:
                await self._deliver(row)

        self._in_flight.update(row.id for row in rows)
        try:
            await asyncio.gather(*(one(row) for row in rows))
        finally:
            self._in_flight.difference_update(row.id for row in rows)
        return len(rows)

    async def _deliver(self, row: OutboxEntry) -> None:
        try:
            stored = await asyncio.to_thread(self.store.read, "Communication", row.communication_id)
            if stored is None:
                result = _Result("failed", error="CommunicationNotFound")
            else:
                result = await self._send(row, stored.resource)
            at = instant(self.clock())
            await asyncio.to_thread(self._record, row.id, result, at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recording failed: the row stays pending; hold it back, longer each time
            failures = self._held.get(row.id, (0.0, 0))[1] + 1
            hold = min(self.settings.max_delay, self.settings.base_delay * 2 ** (failures - 1))
            self._held[row.id] = (asyncio.get_running_loop().time() + hold, failures)
            _log.error("outbox row %d: delivery not recorded (%s)", row.id, type(exc).__name__)

    async def _send(self, row: OutboxEntry, communication: dict[str, Any]) -> _Result:
        assert self._client is not None
        headers = [header_pair(line) for line in row.headers]
        endpoint = row.endpoint.rstrip("/")
        try:
            if row.payload is not None and row.payload.split(";")[0].strip() == FHIR_JSON:
                body = json.dumps(communication, ensure_ascii=False, separators=(",", ":")).encode()
                response = await self._client.put(
                    f"{endpoint}/Communication/{communication['id']}", content=body,
                    headers=[*headers, ("Content-Type", FHIR_JSON), ("Accept", FHIR_JSON)])
            elif row.payload is None:
                response = await self._client.post(row.endpoint, headers=headers)
            else:
                return _Result("failed", error="UnsupportedPayload")
        except httpx.TransportError as exc:  # connection refused or reset, timeouts, protocol errors
            return _Result("retry", error=type(exc).__name__)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            return _Result("failed", error=type(exc).__name__)
        status = response.status_code
        if 200 <= status < 300:
            return _Result("delivered", http_status=status)
        if status >= 500:
            return _Result("retry", http_status=status)
        return _Result("failed", http_status=status)  # 4xx (and 1xx/3xx: redirects are not followed)

    # -- recording (in a worker thread: the store blocks) ---------------------------------------------------

    def _record(self, outbox_id: int, result: _Result, at: str) -> None:
        with self.store.transaction() as tx:
            entry = tx.outbox_entry(outbox_id)
            if entry is None or entry.status != "pending":
                return
            attempt = entry.attempts + 1
            next_at = None
            if result.outcome == "delivered":
                status, outcome = "delivered", "delivered"
            elif result.outcome == "retry" and attempt < self.settings.max_attempts:
                status, outcome = "pending", "retry"
                delay = backoff_delay(attempt, self.settings, self.rng)
                next_at = instant(datetime.fromisoformat(at) + timedelta(seconds=delay))
            else:
                status, outcome = "failed", "failed"
            updated = tx.record_outbox_attempt(outbox_id, result.attempt(at, outcome), status=status,
                                               next_attempt_at=next_at)
            _log.info("outbox row %d communication %s attempt %d: %s %s", outbox_id, entry.communication_id,
                      attempt, outcome, result.note)
            if status != "pending":
                for settle in (lambda: self._settle_subscription(tx, updated, result),
                               lambda: self._settle_communication(tx, updated.communication_id, at)):
                    try:
                        with tx.savepoint():
                            settle()
                    except (AdapterError, ValueError) as exc:  # e.g. a resource since edited to be invalid
                        _log.error("outbox row %d: status not updated (%s)", outbox_id, type(exc).__name__)

    def _settle_communication(self, tx: Transaction, communication_id: str, at: str) -> None:
        rows = tx.outbox_of(communication_id)
        if any(r.status == "pending" for r in rows):
            return
        stored = tx.read("Communication", communication_id)
        if stored is None:
            return
        communication = dict(stored.resource)
        failed = [r for r in rows if r.status == "failed"]
        if not failed:
            communication.update(status="completed", received=at)
            communication.pop("statusReason", None)
        else:
            last = failed[-1].history[-1] if failed[-1].history else {}
            # a 5xx or no connection: the receiver could not take it; a 4xx or our own error: it was refused
            unreachable = last.get("http_status", 0) >= 500 or last.get("error") in _TRANSPORT_ERRORS
            code = "recipient-unavailable" if unreachable else "system-error"
            note = f"HTTP {last['http_status']}" if "http_status" in last else last.get("error", "error")
            communication["status"] = "not-done"
            communication["statusReason"] = {
                "coding": [{"system": NOT_DONE_SYSTEM, "code": code}],
                "text": f"rest-hook delivery failed for {len(failed)} of {len(rows)} subscription(s) "
                        f"({note} after {failed[-1].attempts} attempt(s))"}
        if communication["status"] == stored.resource.get("status"):
            return
        self.check(communication)
        tx.put(communication)
        _log.info("communication %s %s", communication_id, communication["status"])

    def _settle_subscription(self, tx: Transaction, entry: OutboxEntry, result: _Result) -> None:
        stored = tx.read("Subscription", entry.subscription_id)
        if stored is None:
            return
        subscription = dict(stored.resource)
        if entry.status == "failed" and subscription.get("status") in ("active", "error"):
            error = f"rest-hook delivery failed: {result.note} after {entry.attempts} attempt(s)"
            if (subscription.get("status"), subscription.get("error")) == ("error", error):
                return
            subscription.update(status="error", error=error)
        elif entry.status == "delivered" and subscription.get("status") == "error":
            subscription["status"] = "active"
            subscription.pop("error", None)
        else:
            return
        self.check(subscription)
        tx.put(subscription)
        _log.info("subscription %s %s", entry.subscription_id, subscription["status"])
