"""WAL checkpoints in a thread of their own (adapter.store.checkpoint): commits never copy the log into the
database themselves, the log still restarts (bounded), nothing committed is lost, and close() ends the thread."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from adapter.store import checkpoint
from adapter.store.sqlite import SqliteStore

from .resources import patient


def _wait(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _log_frames(db_path: Path) -> int:
    """Frames in the write-ahead log now (a no-op checkpoint reports them)."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def _write(store: SqliteStore, start: int, count: int) -> None:
    for i in range(start, start + count):
        with store.transaction() as tx:
            tx.put(patient(f"p{i}", nhs=f"999{i:07d}"[:10]))


def test_commits_leave_the_checkpoint_to_the_thread(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == checkpoint.BACKSTOP_FRAMES
        assert store._checkpointer is None  # started by the first commit, not by opening
        _write(store, 0, 20)
        ck = store._checkpointer
        assert ck is not None
        assert _wait(lambda: ck.checkpoints >= 1)
        thread = ck._thread
        assert thread.is_alive()
    assert not thread.is_alive()  # close() stopped it


def test_the_log_restarts_and_nothing_is_lost(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 40)
    monkeypatch.setattr(checkpoint, "DELAY_S", 0.0)
    with SqliteStore(db_path) as store:
        _write(store, 0, 300)  # ~3 log frames each: ~900 frames if the log never restarted
        ck = store._checkpointer
        assert ck is not None
        assert _wait(lambda: ck.restarts >= 1), "no pass under the write lock"
        _write(store, 300, 1)
        assert _log_frames(db_path) < 300  # it restarted (how recently depends on the thread's timing)
    with SqliteStore(db_path) as store:
        missing = [i for i in range(301) if store.read("Patient", f"p{i}") is None]
    assert missing == []


def test_without_the_thread_sqlite_checkpoints_as_before(db_path: Path) -> None:
    with SqliteStore(db_path, background_checkpoint=False) as store:
        assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 4000
        _write(store, 0, 3)
        assert store._checkpointer is None
