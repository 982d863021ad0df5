"""MLLP (Minimal Lower Layer Protocol) transport: framing, an asyncio server and two clients.

A message travels as ``0x0B <payload> 0x1C 0x0D``.  This module knows nothing about HL7: payloads
are opaque bytes handed to a :class:`Handler`, whose reply (if any) is framed and written back.

Server life cycle::

    server = await start_server(handler, "0.0.0.0", 2575)
    ...
    await stop_server(server)   # stops accepting, cancels open connections, waits (bounded)

``server.close()`` + ``await server.wait_closed()`` alone only stops accepting: open connections
then live on until their peer closes or ``idle_timeout`` expires.  Use :func:`stop_server`.

Logging (logger ``carethread.mllp``) records peer addresses, byte counts and exception class
names, never payload bytes or exception messages.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import weakref
from asyncio import StreamReader, StreamWriter
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "START", "END", "HEAD_SIZE", "frame", "Frame", "Oversize", "Junk", "Event", "Deframer", "Handler",
    "start_server", "stop_server", "MLLPError", "MLLPClient", "AsyncMLLPClient",
]

START = b"\x0b"
END = b"\x1c\x0d"
HEAD_SIZE = 4096  # bytes of an oversized frame kept for the reject reply (the MSH is in there)
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024
_NOT_CRLF = re.compile(rb"[^\r\n]")

log = logging.getLogger("carethread.mllp")


def frame(message: bytes) -> bytes:
    """Wrap ``message`` in MLLP framing; ValueError if it contains 0x0B or 0x1C 0x0D."""
    if START in message or END in message:
        raise ValueError("message contains MLLP framing bytes")
    return b"".join((START, message, END))


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete message (payload without framing)."""

    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Oversize:
    """A frame larger than ``max_frame``: its first ``HEAD_SIZE`` bytes and its full payload size."""

    head: bytes = field(repr=False)
    size: int


@dataclass(frozen=True, slots=True)
class Junk:
    """``size`` bytes discarded: outside any frame, or an unfinished frame cut by a new 0x0B."""

    size: int


Event = Frame | Oversize | Junk


class Deframer:
    """Incremental MLLP deframer: pure, no I/O, linear in the bytes fed.

    Bytes between frames are reported as one :class:`Junk` when the gap ends (at the next 0x0B,
    or on :meth:`finish`); a gap made only of CR/LF is ignored.  A 0x0B inside an unfinished frame
    discards that partial frame (as Junk, counting its 0x0B) and starts a new frame.
    """

    __slots__ = ("_max", "_buf", "_size", "_in_frame", "_over", "_last_fs", "_gap", "_gap_ws")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self._max = max_frame
        self._gap = 0  # bytes seen outside a frame since the last frame
        self._gap_ws = True  # ... and they are all CR/LF
        self._reset_frame()

    def _reset_frame(self) -> None:
        self._buf = bytearray()  # frame content so far (only the head once oversize)
        self._size = 0  # content bytes seen in the current frame
        self._in_frame = False
        self._over = False
        self._last_fs = False  # the last content byte was 0x1C (END may straddle two reads)

    @property
    def has_partial(self) -> bool:
        """True while a frame has started (0x0B seen) and its END has not arrived."""
        return self._in_frame

    @property
    def partial_size(self) -> int:
        """Content bytes received so far for the unfinished frame (0 if none)."""
        return self._size

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data``; return the events it completes, in order."""
        if not isinstance(data, bytes):
            data = bytes(data)
        events: list[Event] = []
        i, n = 0, len(data)
        while i < n:
            if not self._in_frame:
                s = data.find(START, i)
                stop = n if s < 0 else s
                if stop > i:
                    self._gap += stop - i
                    if self._gap_ws and _NOT_CRLF.search(data, i, stop):
                        self._gap_ws = False
                if s < 0:
                    break
                self._flush_gap(events)
                self._in_frame = True
                i = s + 1
                continue
            if self._last_fs and data[i] == 0x0D:  # END split between two reads
                self._complete(events, self._size - 1)
                i += 1
                continue
            e = data.find(END, i)
            s = data.find(START, i, n if e < 0 else e)
            if s >= 0:  # a new frame starts before this one ended
                events.append(Junk(1 + self._size + s - i))
                self._reset_frame()
                self._in_frame = True
                i = s + 1
            elif e < 0:
                self._append(data, i, n)
                break
            elif self._size == 0 and e - i <= self._max:  # whole frame in this read: one copy
                events.append(Frame(data[i:e]))
                self._reset_frame()
                i = e + 2
            else:
                self._append(data, i, e)
                self._complete(events, self._size)
                i = e + 2
        return events

    def finish(self) -> list[Event]:
        """End of stream: report a trailing gap or unfinished frame as Junk and reset."""
        events: list[Event] = []
        if self._in_frame:
            events.append(Junk(1 + self._size))
            self._reset_frame()
        self._flush_gap(events)
        return events

    def _flush_gap(self, events: list[Event]) -> None:
        if self._gap and not self._gap_ws:
            events.append(Junk(self._gap))
        self._gap = 0
        self._gap_ws = True

    def _append(self, data: bytes, start: int, stop: int) -> None:
        count = stop - start
        if count <= 0:
            return
        self._size += count
        self._last_fs = data[stop - 1] == 0x1C
        # Buffer up to max+1 bytes: the extra one may be the 0x1C of an END split across reads.
        if not self._over and self._size > self._max + 1:
            self._over = True
        view = memoryview(data)
        if not self._over:
            self._buf += view[start:stop]
        elif (room := HEAD_SIZE - len(self._buf)) < 0:
            del self._buf[HEAD_SIZE:]
        elif room > 0:
            self._buf += view[start : start + min(room, count)]

    def _complete(self, events: list[Event], size: int) -> None:
        if self._over or size > self._max:
            events.append(Oversize(bytes(self._buf[: min(HEAD_SIZE, size)]), size))
        else:
            buf = self._buf
            events.append(Frame(bytes(buf) if len(buf) == size else bytes(buf[:size])))
        self._reset_frame()


class Handler(Protocol):
    """What the server calls; replies are unframed payloads, or None for no reply."""

    async def handle(self, message: bytes) -> bytes | None: ...

    async def oversize(self, head: bytes, size: int) -> bytes | None: ...


@dataclass(eq=False)
class _ServerState:
    handler: Handler
    max_frame: int
    idle_timeout: float | None
    max_connections: int
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closing: bool = False


_SERVERS: weakref.WeakKeyDictionary[asyncio.base_events.Server, _ServerState] = weakref.WeakKeyDictionary()


async def start_server(
    handler: Handler, host: str, port: int, *, max_frame: int = DEFAULT_MAX_FRAME,
    idle_timeout: float | None = 300.0, max_connections: int = 256,
) -> asyncio.base_events.Server:
    """Listen for MLLP on host:port (0 = any free port); stop it with :func:`stop_server`."""
    if max_frame < 1 or max_connections < 1:
        raise ValueError("max_frame and max_connections must be positive")
    state = _ServerState(handler, max_frame, idle_timeout, max_connections)

    async def on_connect(reader: StreamReader, writer: StreamWriter) -> None:
        await _serve_connection(state, reader, writer)

    server = await asyncio.start_server(on_connect, host, port)
    _SERVERS[server] = state
    for sock in server.sockets:
        log.info("MLLP listening on %s", _fmt_addr(sock.getsockname()))
    return server


async def stop_server(server: asyncio.base_events.Server, *, timeout: float = 1.0) -> None:
    """Stop accepting, cancel open connection tasks, wait up to ``timeout`` for them to end."""
    server.close()
    state = _SERVERS.pop(server, None)
    if state is not None:
        state.closing = True
        tasks = list(state.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
    await server.wait_closed()


def _fmt_addr(addr: object) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)


async def _close_writer(writer: StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except Exception:  # noqa: BLE001 - the connection is gone either way
        pass


async def _serve_connection(state: _ServerState, reader: StreamReader, writer: StreamWriter) -> None:
    peer = _fmt_addr(writer.get_extra_info("peername"))
    task = asyncio.current_task()
    if state.closing or task is None or len(state.tasks) >= state.max_connections:
        if not state.closing:
            log.warning("connection limit (%d) reached; refusing %s", state.max_connections, peer)
        await _close_writer(writer)
        return
    state.tasks.add(task)
    try:
        await _run_connection(state, reader, writer, peer)
    except asyncio.CancelledError:
        # stop_server() cancelled us.  End normally: on 3.11, StreamReaderProtocol's done-callback
        # calls task.exception() and would log an error for a cancelled task.
        log.debug("MLLP connection from %s cancelled by server stop", peer)
    except Exception as exc:  # noqa: BLE001 - never let an exception escape a connection task
        log.error("MLLP connection from %s failed: %s", peer, type(exc).__name__)
    finally:
        state.tasks.discard(task)
        await _close_writer(writer)


async def _run_connection(state: _ServerState, reader: StreamReader, writer: StreamWriter, peer: str) -> None:
    deframer = Deframer(state.max_frame)
    while True:
        try:
            async with asyncio.timeout(state.idle_timeout):
                data = await reader.read(_READ_SIZE)
        except TimeoutError:
            log.info("closing MLLP connection from %s: idle for %ss", peer, state.idle_timeout)
            return
        except OSError as exc:
            log.info("MLLP connection from %s lost: %s", peer, type(exc).__name__)
            return
        if not data:
            if deframer.has_partial:
                log.warning("peer %s closed mid-frame; discarding %d buffered bytes", peer, deframer.partial_size)
            else:
                for event in deframer.finish():
                    log.warning("discarded %d bytes outside a frame from %s", event.size, peer)
            return
        for event in deframer.feed(data):
            if isinstance(event, Junk):
                log.warning("discarded %d bytes outside a frame from %s", event.size, peer)
                continue
            try:
                if isinstance(event, Frame):
                    reply = await state.handler.handle(event.payload)
                else:
                    log.warning(
                        "oversize frame of %d bytes (limit %d) from %s", event.size, state.max_frame, peer
                    )
                    reply = await state.handler.oversize(event.head, event.size)
                framed = None if reply is None else frame(reply)
            except Exception as exc:  # noqa: BLE001 - class name only: the message may hold PHI
                log.error("MLLP handler raised %s; closing connection from %s", type(exc).__name__, peer)
                return
            if framed is not None:
                writer.write(framed)
                try:
                    await writer.drain()
                except OSError as exc:
                    log.info("MLLP connection from %s lost while replying: %s", peer, type(exc).__name__)
                    return


class MLLPError(ConnectionError):
    """The peer closed without replying, or sent a reply larger than max_frame."""


class _Replies:
    """Reply bookkeeping shared by the two clients."""

    def __init__(self, max_frame: int) -> None:
        self._deframer = Deframer(max_frame)
        self._replies: deque[bytes] = deque()

    def _take(self, data: bytes) -> None:
        if not data:
            raise MLLPError("connection closed by peer before a reply")
        for event in self._deframer.feed(data):
            if isinstance(event, Frame):
                self._replies.append(event.payload)
            elif isinstance(event, Oversize):
                raise MLLPError(f"reply of {event.size} bytes exceeds max_frame")


class MLLPClient(_Replies):
    """Blocking MLLP client: ``with MLLPClient(host, port) as c: reply = c.send(message)``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, *, max_frame: int = DEFAULT_MAX_FRAME):
        super().__init__(max_frame)
        self._sock = socket.create_connection((host, port), timeout=timeout)

    def send(self, message: bytes) -> bytes:
        """Send one framed message; return the reply payload (unframed)."""
        self.send_raw(frame(message))
        return self.recv()

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are, unframed (tests, diagnostics)."""
        self._sock.sendall(data)

    def recv(self) -> bytes:
        """The next reply payload; MLLPError if the peer closes first, TimeoutError on timeout."""
        while not self._replies:
            self._take(self._sock.recv(_READ_SIZE))
        return self._replies.popleft()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncMLLPClient(_Replies):
    """asyncio MLLP client: ``async with AsyncMLLPClient(host, port) as c: reply = await c.send(m)``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, *, max_frame: int = DEFAULT_MAX_FRAME):
        super().__init__(max_frame)
        self._host, self._port, self._timeout = host, port, timeout
        self._reader: StreamReader | None = None
        self._writer: StreamWriter | None = None

    async def connect(self) -> None:
        async with asyncio.timeout(self._timeout):
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def send(self, message: bytes) -> bytes:
        """Send one framed message; return the reply payload (unframed)."""
        await self.send_raw(frame(message))
        return await self.recv()

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are, unframed (tests, diagnostics)."""
        if self._writer is None:
            raise MLLPError("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def recv(self) -> bytes:
        """The next reply payload; MLLPError if the peer closes first, TimeoutError on timeout."""
        if self._reader is None:
            raise MLLPError("not connected")
        while not self._replies:
            async with asyncio.timeout(self._timeout):
                self._take(await self._reader.read(_READ_SIZE))
        return self._replies.popleft()

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer, self._reader = self._writer, None, None
            await _close_writer(writer)

    async def __aenter__(self) -> AsyncMLLPClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
