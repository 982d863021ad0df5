"""MLLP transport: Deframer unit/property tests and socket tests against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.inbound.mllp import (
    END,
    HEAD_SIZE,
    START,
    AsyncMLLPClient,
    Deframer,
    Event,
    Frame,
    Junk,
    MLLPClient,
    MLLPError,
    Oversize,
    frame,
    start_server,
    stop_server,
)

HOST = "127.0.0.1"
MSG = b"MSH|^~\\&|SYNTH|TEST|||20240101000000||ADT^A01|MSG0001|P|2.5\rPID|1||9990000018^^^NHS\r"


# --------------------------------------------------------------------------- Deframer


def feed_all(d: Deframer, chunks: list[bytes]) -> list[Event]:
    out: list[Event] = []
    for chunk in chunks:
        out.extend(d.feed(chunk))
    return out


def reference(data: bytes, max_frame: int) -> list[Event]:
    """Byte-at-a-time model of the documented semantics (finish() included)."""
    events: list[Event] = []
    content: bytearray | None = None
    gap = bytearray()

    def flush_gap() -> None:
        if gap.strip(b"\r\n"):
            events.append(Junk(len(gap)))
        gap.clear()

    for b in data:
        if content is None:
            if b == 0x0B:
                flush_gap()
                content = bytearray()
            else:
                gap.append(b)
        elif b == 0x0B:
            events.append(Junk(1 + len(content)))
            content = bytearray()
        elif b == 0x0D and content.endswith(b"\x1c"):
            payload = bytes(content[:-1])
            if len(payload) > max_frame:
                events.append(Oversize(payload[:HEAD_SIZE], len(payload)))
            else:
                events.append(Frame(payload))
            content = None
        else:
            content.append(b)
    if content is not None:
        events.append(Junk(1 + len(content)))
    flush_gap()
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def test_frame_wraps_and_rejects_framing_bytes() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\x0d"
    assert START == b"\x0b" and END == b"\x1c\x0d"
    with pytest.raises(ValueError):
        frame(b"a\x0bb")
    with pytest.raises(ValueError):
        frame(b"a\x1c\x0db")


def test_many_frames_in_one_read_and_bytes_like_input() -> None:
    d = Deframer()
    data = b"".join(frame(b"m%d" % i) for i in range(100))
    assert d.feed(data) == [Frame(b"m%d" % i) for i in range(100)]
    assert d.feed(bytearray(frame(b"x"))) == [Frame(b"x")]
    assert d.feed(memoryview(frame(b"y"))) == [Frame(b"y")]
    assert not d.has_partial and d.partial_size == 0


def test_end_split_between_fs_and_cr() -> None:
    d = Deframer()
    assert d.feed(b"\x0bhello\x1c") == []
    assert d.has_partial and d.partial_size == 6
    assert d.feed(b"\x0d") == [Frame(b"hello")]
    assert not d.has_partial
    # a 0x1C not followed by 0x0D is content
    assert feed_all(d, [b"\x0ba\x1c", b"b\x1c", b"\x0d"]) == [Frame(b"a\x1cb")]


def test_one_byte_at_a_time() -> None:
    d = Deframer()
    data = frame(MSG) + frame(b"") + frame(MSG)
    assert feed_all(d, [data[i : i + 1] for i in range(len(data))]) == [Frame(MSG), Frame(b""), Frame(MSG)]


def test_line_breaks_between_frames_are_ignored_but_junk_is_reported() -> None:
    d = Deframer()
    assert d.feed(frame(b"a") + b"\r" + frame(b"b") + b"\r\n" + frame(b"c") + b"\n") == [
        Frame(b"a"),
        Frame(b"b"),
        Frame(b"c"),
    ]
    assert d.finish() == []
    assert d.feed(b"garbage\r") == []  # reported when the gap ends, whatever the chunking
    assert d.feed(b"more" + frame(b"d")) == [Junk(12), Frame(b"d")]
    assert d.feed(b"trailing") == [] and d.finish() == [Junk(8)]


def test_start_inside_unfinished_frame_discards_partial() -> None:
    d = Deframer()
    assert d.feed(b"\x0bpartial") == []
    assert d.feed(b"xx\x0bwhole\x1c\x0d") == [Junk(1 + 9), Frame(b"whole")]
    assert d.feed(b"\x0bcut") == [] and d.finish() == [Junk(4)]
    assert not d.has_partial


def test_oversize_reported_once_with_head_and_stream_recovers() -> None:
    d = Deframer(max_frame=10_000)
    big = (bytes(range(256)) * 100).replace(b"\x0b", b"x").replace(b"\x1c", b"y")  # 25_600 bytes
    data = frame(big) + frame(b"after")
    events = feed_all(d, split_at(data, [7, 5000, 12_345, 25_602]))
    assert events == [Oversize(big[:HEAD_SIZE], len(big)), Frame(b"after")]
    assert repr(events[0]) == f"Oversize(size={len(big)})"  # payload bytes never in reprs


@pytest.mark.parametrize("cut_before_cr", [False, True])
def test_max_frame_boundary(cut_before_cr: bool) -> None:
    d = Deframer(max_frame=8)
    for payload, expected in [(b"12345678", Frame(b"12345678")), (b"123456789", Oversize(b"123456789", 9))]:
        data = frame(payload)
        chunks = [data[:-1], data[-1:]] if cut_before_cr else [data[:3], data[3:]]
        assert feed_all(d, chunks) == [expected]


def test_small_max_frame_head_is_whole_payload() -> None:
    d = Deframer(max_frame=3)
    assert feed_all(d, [b"\x0babcdef", b"gh\x1c", b"\x0d"]) == [Oversize(b"abcdefgh", 8)]


def test_one_megabyte_in_one_chunk_is_cheap() -> None:
    payload = b"A" * (1 << 20)
    data = frame(payload)
    d = Deframer()
    t0 = time.perf_counter()
    for _ in range(20):
        (event,) = d.feed(data)
    assert time.perf_counter() - t0 < 1.0
    assert event == Frame(payload)


def test_ten_megabytes_in_small_chunks_is_linear() -> None:
    payload = b"B" * (10 << 20)
    data = frame(payload)
    d = Deframer()
    t0 = time.perf_counter()
    # 4 KiB chunks: 2,560 feeds; a quadratic buffer would copy ~13 GB here.
    events = feed_all(d, [data[i : i + 4096] for i in range(0, len(data), 4096)])
    assert time.perf_counter() - t0 < 2.0
    assert events == [Frame(payload)]
    # and 64 KiB chunks past the limit: oversize, linear too
    d = Deframer(max_frame=1 << 20)
    events = feed_all(d, [data[i : i + 65536] for i in range(0, len(data), 65536)])
    assert events == [Oversize(payload[:HEAD_SIZE], len(payload))]


def test_invalid_max_frame() -> None:
    with pytest.raises(ValueError):
        Deframer(0)


messages = st.lists(
    st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")), max_size=20
)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=30)


@settings(max_examples=300, deadline=None)
@given(msgs=messages, cut_points=cuts)
def test_property_frames_roundtrip_for_any_split(msgs: list[bytes], cut_points: list[int]) -> None:
    data = b"".join(frame(m) for m in msgs)
    d = Deframer()
    assert feed_all(d, split_at(data, cut_points)) == [Frame(m) for m in msgs]
    assert not d.has_partial and d.finish() == []


# Arbitrary bytes, biased towards framing bytes so that every state is reached.
noisy = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from([START, END, b"\x1c", b"\r", b"\n", b"\x0d\x0b"])),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=noisy, cut_points=cuts, max_frame=st.sampled_from([1, 5, 64, 10_000]))
def test_property_arbitrary_bytes_match_reference(data: bytes, cut_points: list[int], max_frame: int) -> None:
    d = Deframer(max_frame=max_frame)
    events = feed_all(d, split_at(data, cut_points)) + d.finish()
    assert events == reference(data, max_frame)  # chunking never changes the outcome
    # accounting: every byte is payload, framing, junk, oversize or an ignored CR/LF
    payload = sum(len(e.payload) + 3 for e in events if isinstance(e, Frame))
    over = sum(e.size + 3 for e in events if isinstance(e, Oversize))
    junk = sum(e.size for e in events if isinstance(e, Junk))
    assert payload + over + junk <= len(data)
    assert len(data) - (payload + over + junk) <= data.count(b"\r") + data.count(b"\n")


# --------------------------------------------------------------------------- server


class EchoHandler:
    def __init__(self) -> None:
        self.oversized: list[int] = []

    async def handle(self, message: bytes) -> bytes | None:
        if message.startswith(b"RAISE"):
            raise RuntimeError("synthetic secret payload detail")
        if message == b"NOREPLY":
            return None
        if message.startswith(b"SLOW"):
            await asyncio.sleep(0.01)
        return b"ACK:" + message

    async def oversize(self, head: bytes, size: int) -> bytes | None:
        self.oversized.append(size)
        return b"REJECT:%d:" % size + head[:8]


@pytest.fixture(autouse=True)
def _no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="carethread.mllp")
    yield
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    bad = [r for r in records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


@asynccontextmanager
async def serving(**kwargs: object) -> AsyncIterator[int]:
    """A server on 127.0.0.1, any free port; yields the port."""
    server = await start_server(EchoHandler(), HOST, 0, **kwargs)  # type: ignore[arg-type]
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        await stop_server(server)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serving(max_frame=64 * 1024) as p:
        yield p


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


async def raw_close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass


async def assert_closed_by_server(reader: asyncio.StreamReader) -> None:
    try:
        data = await asyncio.wait_for(reader.read(100), 2.0)
    except ConnectionResetError:
        return
    assert data == b""


async def test_frame_sent_one_byte_at_a_time(port: int) -> None:
    reader, writer = await raw_connect(port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i, b in enumerate(frame(MSG)):
            writer.write(bytes([b]))
            await writer.drain()
            if i % 8 == 0:
                await asyncio.sleep(0.002)
        d = Deframer()
        events: list[Event] = []
        while not events:
            events = d.feed(await asyncio.wait_for(reader.read(65536), 2.0))
        assert events == [Frame(b"ACK:" + MSG)]
    finally:
        await raw_close(writer)


async def test_fifty_messages_in_order_on_one_connection(port: int) -> None:
    async with AsyncMLLPClient(HOST, port) as client:
        for i in range(50):
            assert await client.send(b"m%d" % i) == b"ACK:m%d" % i


async def test_pipelined_messages_replied_in_order(port: int) -> None:
    async with AsyncMLLPClient(HOST, port) as client:
        await client.send_raw(b"".join(frame(b"SLOW%d" % i if i % 3 else b"p%d" % i) for i in range(30)))
        replies = [await client.recv() for _ in range(30)]
    assert replies == [b"ACK:" + (b"SLOW%d" % i if i % 3 else b"p%d" % i) for i in range(30)]


async def test_no_reply_when_handler_returns_none(port: int) -> None:
    async with AsyncMLLPClient(HOST, port) as client:
        await client.send_raw(frame(b"NOREPLY") + frame(b"next"))
        assert await client.recv() == b"ACK:next"


async def test_twenty_concurrent_clients(port: int) -> None:
    async def one(c: int) -> list[bytes]:
        async with AsyncMLLPClient(HOST, port) as client:
            return [await client.send(b"c%d-m%d" % (c, i)) for i in range(20)]

    results = await asyncio.gather(*(one(c) for c in range(20)))
    assert results == [[b"ACK:c%d-m%d" % (c, i) for i in range(20)] for c in range(20)]


async def test_sync_client_in_threads(port: int) -> None:
    def one(c: int) -> list[bytes]:
        with MLLPClient(HOST, port, timeout=5.0) as client:
            return [client.send(b"t%d-%d" % (c, i)) for i in range(10)]

    results = await asyncio.gather(*(asyncio.to_thread(one, c) for c in range(4)))
    assert results == [[b"ACK:t%d-%d" % (c, i) for i in range(10)] for c in range(4)]


async def test_one_megabyte_message() -> None:
    async with serving() as p:
        payload = (MSG * 20_000)[: 1 << 20]
        async with AsyncMLLPClient(HOST, p) as client:
            assert await client.send(payload) == b"ACK:" + payload
            assert await client.send(b"small") == b"ACK:small"


async def test_oversized_frame_gets_reject_and_connection_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(max_frame=1000) as p:
        big = MSG + b"Z" * 5000
        async with AsyncMLLPClient(HOST, p) as client:
            assert await client.send(big) == b"REJECT:%d:" % len(big) + MSG[:8]
            assert await client.send(b"next") == b"ACK:next"
    assert any("oversize frame of %d bytes" % len(big) in r.getMessage() for r in caplog.records)
    assert not any(b"SYNTH" in r.getMessage().encode() for r in caplog.records)


async def test_junk_between_frames_is_ignored(port: int, caplog: pytest.LogCaptureFixture) -> None:
    async with AsyncMLLPClient(HOST, port) as client:
        assert await client.send(b"one") == b"ACK:one"
        await client.send_raw(b"\r\n" + b"some garbage" + b"\x1c\x0d")
        assert await client.send(b"two") == b"ACK:two"
        await client.send_raw(b"\x0bunfinished")  # cut by the next frame's 0x0B
        assert await client.send(b"three") == b"ACK:three"
    msgs = [r.getMessage() for r in caplog.records if r.name == "carethread.mllp"]
    assert any("discarded 16 bytes outside a frame" in m for m in msgs)
    assert any("discarded 11 bytes outside a frame" in m for m in msgs)


async def test_peer_closing_mid_frame(port: int, caplog: pytest.LogCaptureFixture) -> None:
    reader, writer = await raw_connect(port)
    writer.write(b"\x0b" + b"P" * 123)
    await writer.drain()
    await raw_close(writer)
    async with AsyncMLLPClient(HOST, port) as client:
        assert await client.send(b"other") == b"ACK:other"
    for _ in range(100):
        if any("discarding 123 buffered bytes" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("no mid-frame warning logged")


async def test_handler_exception_closes_only_that_connection(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncMLLPClient(HOST, port) as other, AsyncMLLPClient(HOST, port) as bad:
        assert await other.send(b"before") == b"ACK:before"
        with pytest.raises(ConnectionError):
            await bad.send(b"RAISE please")
        assert await other.send(b"after") == b"ACK:after"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("RuntimeError" in m for m in errors)
    assert not any("synthetic secret" in r.getMessage() for r in caplog.records)
    assert all(r.exc_info is None for r in caplog.records)


async def test_connection_cap(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(max_connections=2) as p:
        async with AsyncMLLPClient(HOST, p) as c1, AsyncMLLPClient(HOST, p) as c2:
            assert await c1.send(b"1") == b"ACK:1"
            assert await c2.send(b"2") == b"ACK:2"
            reader, writer = await raw_connect(p)
            try:
                await assert_closed_by_server(reader)
            finally:
                await raw_close(writer)
            assert any("connection limit (2) reached" in r.getMessage() for r in caplog.records)
            await c2.close()
            for _ in range(100):  # the server frees the slot once it sees c2's EOF
                async with AsyncMLLPClient(HOST, p) as c3:
                    try:
                        assert await c3.send(b"3") == b"ACK:3"
                        break
                    except ConnectionError:
                        await asyncio.sleep(0.01)
            else:
                pytest.fail("slot never freed")
            assert await c1.send(b"1b") == b"ACK:1b"


async def test_idle_timeout_closes_connection() -> None:
    async with serving(idle_timeout=0.2) as p:
        async with AsyncMLLPClient(HOST, p) as client:
            assert await client.send(b"x") == b"ACK:x"
            t0 = time.perf_counter()
            with pytest.raises(ConnectionError):
                await client.recv()
            assert 0.1 < time.perf_counter() - t0 < 2.0


async def test_stop_with_open_connections_is_prompt() -> None:
    server = await start_server(EchoHandler(), HOST, 0)
    p = server.sockets[0].getsockname()[1]
    clients = [AsyncMLLPClient(HOST, p) for _ in range(3)]
    try:
        for c in clients:
            await c.connect()
            assert await c.send(b"hi") == b"ACK:hi"
        await clients[0].send_raw(b"\x0bhalf a frame")
        t0 = time.perf_counter()
        await stop_server(server)
        assert time.perf_counter() - t0 < 1.0
        assert not server.is_serving()
        for c in clients:
            with pytest.raises(ConnectionError):
                await c.recv()
        with pytest.raises(OSError):
            await raw_connect(p)
    finally:
        for c in clients:
            await c.close()


async def test_client_errors(port: int) -> None:
    client = AsyncMLLPClient(HOST, port)
    with pytest.raises(MLLPError):
        await client.send(b"x")  # not connected
    await client.close()

    def sync_raise() -> None:
        with MLLPClient(HOST, port, timeout=5.0) as c:
            assert c.send(b"fine") == b"ACK:fine"
            with pytest.raises(MLLPError):
                c.send(b"RAISE")  # server closes the connection without a reply

    await asyncio.to_thread(sync_raise)
