"""WAL checkpoints off the writer's path.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the write-ahead log past its threshold: that
one commit copies every page of the log into the database file and syncs it.  On a large database a commit
then takes 50-80 ms instead of 0.3 ms; one commit in twenty pays it, which was most of the mean cost of a
message (and all of the p99 ACK latency).

``Checkpointer`` is a thread with its own connection that, a short while after commits, runs a PASSIVE
checkpoint (copies what is committed, never waits for the writer, syncs as the store's ``synchronous`` says).
A PASSIVE checkpoint cannot let the log restart from its beginning while the writer keeps appending, so when
the log has grown past ``restart_frames`` (128 MB) one pass runs holding the store's write lock: the pages
still to copy are the few written since the previous pass, and the next transaction starts the log afresh.
That pass syncs, and a sync costs what the file system holds dirty, so the log and the database are synced
just before it, outside the lock: the writer waits ~30-40 ms (not ~65) once per 128 MB of log.

The writer connection keeps SQLite's own automatic checkpoint as a backstop at a much larger threshold (a
stalled checkpointer costs a slow commit, never an unbounded log).  The thread holds no reference to the
store: it ends with ``stop()`` (the store's ``close()``) or when the store is garbage collected.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

__all__ = ["Checkpointer", "BACKSTOP_FRAMES", "RESTART_FRAMES"]

_log = logging.getLogger("carethread.store")

BACKSTOP_FRAMES = 64_000  # the writer's own wal_autocheckpoint while a Checkpointer runs (~256 MB of log)
RESTART_FRAMES = 32_000  # log frames (4 KB pages) past which a pass makes the log restart (~128 MB)
DELAY_S = 0.1  # after a commit, wait this long so one pass (one sync) serves the commits that follow


class Checkpointer:
    """Background WAL checkpoints for one SQLite file.  ``poke()`` after each commit (cheap: sets an event)."""

    def __init__(self, path: Path, synchronous: str, write_lock: threading.Lock, *, owner: Any = None,
                 delay: float | None = None, restart_frames: int | None = None) -> None:
        self._path = path
        self._synchronous = synchronous
        self._write_lock = write_lock
        self._delay = DELAY_S if delay is None else delay
        self._restart_frames = RESTART_FRAMES if restart_frames is None else restart_frames
        self._owner = weakref.ref(owner) if owner is not None else None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self.checkpoints = 0  # passes run (for tests and benchmarks)
        self.restarts = 0  # of them, those run under the write lock to let the log restart
        self._thread = threading.Thread(target=self._run, name="carethread-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._dirty.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _alive(self) -> bool:
        return not self._stopping.is_set() and (self._owner is None or self._owner() is not None)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            _log.warning("checkpoint thread not started (%s): SQLite's automatic checkpoint remains",
                         type(exc).__name__)
            return
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")  # a checkpoint syncs as its connection says
            while self._alive():
                if not self._dirty.wait(timeout=5.0):
                    continue  # idle: look again whether the store still exists
                if self._stopping.wait(self._delay):
                    break
                self._dirty.clear()
                self._pass(conn)
        except sqlite3.Error as exc:  # the file went away, disk full...: the writer's backstop remains
            _log.warning("checkpoint thread stopped (%s)", type(exc).__name__)
        finally:
            conn.close()

    def _pass(self, conn: sqlite3.Connection) -> None:
        _busy, log_frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        if log_frames < self._restart_frames:
            return
        # The pass under the write lock syncs what it copies, and a sync writes back whatever the file system
        # holds dirty: sync the log and the database first, outside the lock (~65 -> ~35 ms under it here).
        for suffix in ("-wal", ""):
            _sync(Path(f"{self._path}{suffix}"))
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with self._write_lock:  # no writer now: this pass finishes the log, so the next commit restarts it
            if self._stopping.is_set():  # the store is closing (it stops this thread before closing)
                return
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.restarts += 1


def _sync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
