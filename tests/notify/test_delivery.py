"""The delivery worker against receivers mocked with respx: R4 rest-hook requests, retry with backoff on
connection errors and 5xx, no retry on 4xx, the attempt history, the Communication's and the Subscription's
status, and a restart that delivers what a previous process left pending."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from adapter.conformance import load_profiles
from adapter.errors import StoreError
from adapter.notify import DeliverySettings, DeliveryWorker, default_check, notify, sync_organisations
from adapter.notify.delivery import backoff_delay
from adapter.store.sqlite import SqliteStore

from .conftest import (
    ENCOUNTER,
    FLAG,
    HOOK,
    ORGS,
    PATIENT,
    T0,
    Clock,
    current,
    notify_args,
    put,
    run_notify,
    subscription,
)

TOKEN = "Authorization: Bearer synthetic-token"
AT = "2026-11-26T08:00:00.000+00:00"  # T0 as the outbox writes it


def worker_for(store: SqliteStore, clock: Clock, **settings: Any) -> DeliveryWorker:
    options: dict[str, Any] = {"base_delay": 2.0, **settings}
    return DeliveryWorker(store, DeliverySettings(**options), clock=clock, rng=random.Random(7))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gp_hook(store: SqliteStore) -> str:
    """A subscription for the GP practice's notifications; returns the URL its PUTs go to."""
    put(store, subscription("sub-gp", "Communication?recipient=Organization/ods-Y12345", headers=[TOKEN]))
    [made] = run_notify(store)
    return f"{HOOK}/Communication/{made['id']}"


def only_row(store: SqliteStore):  # type: ignore[no-untyped-def]
    [row] = store.list_outbox()
    return row


def communication(store: SqliteStore) -> dict:  # type: ignore[type-arg]
    [row] = store.list_outbox()
    stored = store.read("Communication", row.communication_id)
    assert stored is not None
    return stored.resource


@respx.mock
async def test_delivered_with_a_put_of_the_communication(store: SqliteStore, clock: Clock,
                                                          gp_hook: str) -> None:
    route = respx.put(gp_hook).mock(return_value=httpx.Response(200))
    worker = worker_for(store, clock)
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    request = route.calls.last.request
    assert request.method == "PUT" and str(request.url) == gp_hook
    assert request.headers["content-type"] == "application/fhir+json"
    assert request.headers["authorization"] == "Bearer synthetic-token"
    sent = json.loads(request.content)
    assert sent["resourceType"] == "Communication" and sent["status"] == "in-progress"
    assert gp_hook.endswith(sent["id"])
    row = only_row(store)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert row.history == ({"at": AT, "outcome": "delivered", "http_status": 200},)
    done = communication(store)
    assert done["status"] == "completed" and done["received"] == "2026-11-26T08:00:00.000+00:00"
    assert done["meta"]["versionId"] == "2"
    assert [i for i in load_profiles().validate(done) if i.severity == "error"] == []
    assert await worker_for(store, clock).run_once() == 0  # nothing left to do


@respx.mock
async def test_a_503_is_retried_after_a_backoff(store: SqliteStore, clock: Clock, gp_hook: str) -> None:
    route = respx.put(gp_hook).mock(side_effect=[httpx.Response(503), httpx.Response(200)])
    worker = worker_for(store, clock)
    assert await worker.run_once() == 1
    row = only_row(store)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.history[0] == {"at": AT, "outcome": "retry", "http_status": 503}
    delay = (datetime.fromisoformat(row.next_attempt_at) - T0).total_seconds()
    assert 1.0 <= delay <= 2.0  # base 2 s, jitter in the upper half
    assert communication(store)["status"] == "in-progress"

    clock.advance(delay - 0.01)
    assert await worker.run_once() == 0 and route.call_count == 1  # not due yet
    clock.advance(0.01)
    assert await worker.run_once() == 1 and route.call_count == 2
    row = only_row(store)
    assert row.status == "delivered" and [h["outcome"] for h in row.history] == ["retry", "delivered"]
    assert communication(store)["status"] == "completed"
    await worker.stop()


@respx.mock
@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.RemoteProtocolError("reset")])
async def test_connection_errors_and_timeouts_are_retried(store: SqliteStore, clock: Clock, gp_hook: str,
                                                           error: Exception) -> None:
    respx.put(gp_hook).mock(side_effect=[error, httpx.Response(201)])
    worker = worker_for(store, clock)
    await worker.run_once()
    row = only_row(store)
    assert row.status == "pending"
    assert row.history[0] == {"at": AT, "outcome": "retry",
                              "error": type(error).__name__}
    clock.advance(10)
    await worker.run_once()
    assert only_row(store).status == "delivered" and communication(store)["status"] == "completed"
    await worker.stop()


@respx.mock
async def test_a_400_fails_at_once_and_puts_the_subscription_in_error(store: SqliteStore, clock: Clock,
                                                                        gp_hook: str) -> None:
    outcome = {"resourceType": "OperationOutcome"}
    route = respx.put(gp_hook).mock(return_value=httpx.Response(400, json=outcome))
    worker = worker_for(store, clock)
    await worker.run_once()
    clock.advance(3600)
    await worker.run_once()
    assert route.call_count == 1
    row = only_row(store)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.history == ({"at": AT, "outcome": "failed", "http_status": 400},)
    failed = communication(store)
    assert failed["status"] == "not-done"
    assert failed["statusReason"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/communication-not-done-reason",
         "code": "system-error"}]
    assert "HTTP 400" in failed["statusReason"]["text"]
    assert [i for i in load_profiles().validate(failed) if i.severity == "error"] == []
    sub = current(store, "Subscription", "sub-gp")
    assert sub["status"] == "error"
    assert sub["error"] == "rest-hook delivery failed: HTTP 400 after 1 attempt(s)"

    # an error subscription still receives new notifications; a delivery that works makes it active again
    [second] = run_notify(store, dedup_key="enc-2")
    respx.put(f"{HOOK}/Communication/{second['id']}").mock(return_value=httpx.Response(200))
    await worker.run_once()
    sub = current(store, "Subscription", "sub-gp")
    assert sub["status"] == "active" and "error" not in sub
    await worker.stop()


@respx.mock
async def test_after_max_attempts_the_notification_is_not_done(store: SqliteStore, clock: Clock,
                                                                gp_hook: str) -> None:
    route = respx.put(gp_hook).mock(return_value=httpx.Response(502))
    worker = worker_for(store, clock, max_attempts=4)
    gaps = []
    for _ in range(10):
        if await worker.run_once() == 0:
            break
        row = only_row(store)
        if row.status == "pending":
            gaps.append((datetime.fromisoformat(row.next_attempt_at) - clock.now).total_seconds())
            clock.now = datetime.fromisoformat(row.next_attempt_at)
    assert route.call_count == 4
    row = only_row(store)
    assert (row.status, row.attempts) == ("failed", 4)
    assert [h["outcome"] for h in row.history] == ["retry", "retry", "retry", "failed"]
    assert all(h["http_status"] == 502 for h in row.history)
    assert len(gaps) == 3
    for n, gap in enumerate(gaps, start=1):  # 2 s, 4 s, 8 s, each jittered into its upper half
        assert 2.0 ** n / 2 <= gap <= 2.0 ** n
    failed = communication(store)
    assert failed["status"] == "not-done"
    assert failed["statusReason"]["coding"][0]["code"] == "recipient-unavailable"
    await worker.stop()


def test_backoff_doubles_is_capped_and_jittered() -> None:
    settings = DeliverySettings(base_delay=1.0, max_delay=30.0)
    rng = random.Random(1)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (20, 30.0)]:
        draws = [backoff_delay(attempt, settings, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in draws) and len(set(draws)) > 1
    assert DeliverySettings().max_attempts == 6


@respx.mock
async def test_no_payload_means_a_post_with_no_body_to_the_endpoint(store: SqliteStore, clock: Clock) -> None:
    put(store, subscription("ping", "Communication", payload=None, endpoint="https://ping.example/hook"))
    route = respx.post("https://ping.example/hook").mock(return_value=httpx.Response(204))
    run_notify(store)
    worker = worker_for(store, clock)
    await worker.run_once()
    assert route.call_count == 1 and route.calls.last.request.content == b""
    assert only_row(store).status == "delivered"
    await worker.stop()


@respx.mock
async def test_one_communication_to_two_subscriptions_settles_when_both_have(store: SqliteStore,
                                                                             clock: Clock) -> None:
    put(store, subscription("a", "Communication", endpoint="https://a.example/fhir"),
        subscription("b", "Communication?reason-code=adult-setting-presentation",
                     endpoint="https://b.example/fhir"))
    [made] = run_notify(store)
    respx.put(f"https://a.example/fhir/Communication/{made['id']}").mock(return_value=httpx.Response(200))
    respx.put(f"https://b.example/fhir/Communication/{made['id']}").mock(
        side_effect=[httpx.Response(500), httpx.Response(404)])
    worker = worker_for(store, clock)
    await worker.run_once()
    assert current(store, "Communication", made["id"])["status"] == "in-progress"
    clock.advance(10)
    await worker.run_once()
    assert {r.subscription_id: r.status for r in store.list_outbox()} == {"a": "delivered", "b": "failed"}
    settled = current(store, "Communication", made["id"])
    assert settled["status"] == "not-done" and "1 of 2" in settled["statusReason"]["text"]
    await worker.stop()


@respx.mock
async def test_a_restart_delivers_what_the_previous_process_left_pending(tmp_path: Path,
                                                                       clock: Clock) -> None:
    db = tmp_path / "restart.db"
    with SqliteStore(db) as first:  # the previous process: notified, one failed attempt, then stopped
        sync_organisations(first, ORGS, default_check)
        put(first, PATIENT, FLAG, ENCOUNTER, subscription("sub", "Communication"))
        [made] = run_notify(first)
        respx.put(f"{HOOK}/Communication/{made['id']}").mock(
            side_effect=[httpx.ConnectError("down"), httpx.Response(200)])
        old = worker_for(first, clock)
        await old.run_once()
        await old.stop()
    clock.advance(60)
    with SqliteStore(db) as second:  # a new process, a new worker: started, it picks the row up
        worker = worker_for(second, clock, poll_interval=0.05)
        worker.start()
        try:
            for _ in range(200):
                if second.list_outbox()[0].status != "pending":
                    break
                await asyncio.sleep(0.01)
        finally:
            await worker.stop()
        row = second.list_outbox()[0]
        assert row.status == "delivered" and [h["outcome"] for h in row.history] == ["retry", "delivered"]
        assert current(second, "Communication", made["id"])["status"] == "completed"


@respx.mock
async def test_a_running_worker_is_woken_by_notify_in_another_thread(store: SqliteStore) -> None:
    put(store, subscription("sub", "Communication"))
    delivered = asyncio.Event()
    loop = asyncio.get_running_loop()

    def receive(request: httpx.Request) -> httpx.Response:
        loop.call_soon_threadsafe(delivered.set)
        return httpx.Response(200)

    respx.put(url__startswith=f"{HOOK}/Communication/").mock(side_effect=receive)
    # a poll would come too late: only the wake can make it look in time
    worker = DeliveryWorker(store, DeliverySettings(poll_interval=30.0))
    worker.start()
    try:
        await asyncio.sleep(0.05)  # the worker has looked once and is waiting

        def notify_and_commit() -> None:
            with store.transaction() as tx:
                notify(tx, **notify_args())

        await asyncio.to_thread(notify_and_commit)
        await asyncio.wait_for(delivered.wait(), timeout=5)
        for _ in range(200):
            if store.list_outbox()[0].status == "delivered":
                break
            await asyncio.sleep(0.01)
        assert store.list_outbox()[0].status == "delivered"
    finally:
        await worker.stop()


@respx.mock
async def test_logs_name_ids_and_codes_never_endpoints_headers_or_bodies(
        store: SqliteStore, clock: Clock, gp_hook: str, caplog: pytest.LogCaptureFixture) -> None:
    respx.put(gp_hook).mock(side_effect=[httpx.ConnectError("receiver.example refused"), httpx.Response(400)])
    caplog.set_level(logging.DEBUG, logger="carethread")
    worker = worker_for(store, clock)
    await worker.run_once()
    clock.advance(10)
    await worker.run_once()
    await worker.stop()
    text = caplog.text
    assert "ConnectError" in text and "400" in text
    for secret in ("receiver.example", "synthetic-token", "Bearer", "pat-1", "flag-1", "presented"):
        assert secret not in text


@respx.mock
async def test_a_missing_communication_fails_its_row(store: SqliteStore, clock: Clock) -> None:
    with store.transaction() as tx:
        row = {"communication_id": "gone", "subscription_id": "sub", "endpoint": HOOK, "headers": [],
               "next_attempt_at": AT}
        assert tx.enqueue_outbox(payload="application/fhir+json", **row) is not None
        assert tx.enqueue_outbox(payload=None, **row) is None  # one row per (Communication, Subscription)
    worker = worker_for(store, clock)
    await worker.run_once()
    await worker.stop()
    row = only_row(store)
    assert row.status == "failed" and row.history[0]["error"] == "CommunicationNotFound"


def test_recording_an_unknown_row_is_a_key_error(store: SqliteStore) -> None:
    with pytest.raises(KeyError), store.transaction() as tx:
        tx.record_outbox_attempt(999, {"at": "x", "outcome": "failed"}, status="failed")


def test_a_subscription_past_its_end_or_off_gets_nothing(store: SqliteStore) -> None:
    put(store, subscription("ended", "Communication", end=(T0 - timedelta(seconds=1)).isoformat()),
        subscription("off", "Communication", status="off"))
    run_notify(store)
    assert store.list_outbox() == []


@respx.mock
async def test_an_attempt_is_recorded_even_if_the_communication_cannot_be_settled(
        store: SqliteStore, clock: Clock, gp_hook: str, caplog: pytest.LogCaptureFixture) -> None:
    respx.put(gp_hook).mock(return_value=httpx.Response(200))
    broken = {**communication(store), "payload": [{"contentString": "no flag any more"}]}  # fails ct-com-1
    put(store, broken)
    worker = worker_for(store, clock)
    await worker.run_once()
    await worker.stop()
    assert only_row(store).status == "delivered"  # recorded: not sent again
    assert communication(store)["status"] == "in-progress" and "status not updated" in caplog.text


@respx.mock
async def test_a_row_whose_recording_failed_is_held_back_not_resent_at_once(
        store: SqliteStore, clock: Clock, gp_hook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    route = respx.put(gp_hook).mock(return_value=httpx.Response(200))
    worker = worker_for(store, clock)

    def store_down(*args: object) -> None:
        raise StoreError("store record failed")

    monkeypatch.setattr(worker, "_record", store_down)
    await worker.run_once()
    assert route.call_count == 1 and only_row(store).status == "pending"
    assert await worker.run_once() == 0 and route.call_count == 1  # held back, though due
    monkeypatch.undo()
    worker._held.clear()  # the hold has passed
    await worker.run_once()
    await worker.stop()
    assert route.call_count == 2 and only_row(store).status == "delivered"


@respx.mock
async def test_a_receiver_never_reached_is_recipient_unavailable(store: SqliteStore, clock: Clock,
                                                                 gp_hook: str) -> None:
    respx.put(gp_hook).mock(side_effect=httpx.ConnectError("refused"))
    worker = worker_for(store, clock, max_attempts=2)
    await worker.run_once()
    clock.advance(60)
    await worker.run_once()
    await worker.stop()
    row = only_row(store)
    assert (row.status, [h.get("error") for h in row.history]) == ("failed", ["ConnectError", "ConnectError"])
    failed = communication(store)
    assert failed["statusReason"]["coding"][0]["code"] == "recipient-unavailable"
    assert "ConnectError after 2 attempt(s)" in failed["statusReason"]["text"]
