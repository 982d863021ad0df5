"""The store shared by threads: readers never see 'database is locked' while writes go on; writers queue."""

from __future__ import annotations

import threading
from collections.abc import Callable

from adapter.store.sqlite import SqliteStore

from .resources import flag, patient


def _run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # collected, and asserted on below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_readers_run_while_a_writer_writes(store: SqliteStore) -> None:
    writes = 150
    done = threading.Event()

    def writer() -> None:
        try:
            for n in range(writes):
                with store.transaction() as tx:
                    tx.archive(channel="mllp", source="maternity", sender="S", control_id=str(n),
                               payload=b"x")
                    tx.put(patient(family=f"Family{n}"))
                    tx.put(flag(f"flag-{n}"))
        finally:
            done.set()

    def reader() -> None:
        reads = 0
        while not done.is_set() or reads < 20:
            current = store.read("Patient", "pat-1")
            if current is not None:  # a committed version is complete: its history reaches back to version 1
                assert [h.version_id for h in store.history("Patient", "pat-1")][-1] == 1
            result = store.search("Flag", [("patient", "pat-1")], count=5, offset=0)
            assert len(result.matches) == min(5, result.total)
            store.list_inbound(limit=5)
            reads += 1

    errors = _run_threads([writer, reader, reader, reader, reader])
    assert errors == []
    final = store.read("Patient", "pat-1")
    assert final is not None and final.version_id == writes
    assert store.search("Flag", [], count=0, offset=0).total == writes


def test_writers_from_several_threads_are_serialised(store: SqliteStore) -> None:
    per_thread = 40

    def writer(name: str) -> Callable[[], None]:
        def run() -> None:
            for n in range(per_thread):
                with store.transaction() as tx:
                    tx.put(patient("shared", family=f"{name}{n}"))  # every put changes the same resource
                    tx.put(patient(f"{name}-{n}"))
        return run

    errors = _run_threads([writer(f"W{k}") for k in range(4)])
    assert errors == []
    shared = store.read("Patient", "shared")
    assert shared is not None
    assert [h.version_id for h in store.history("Patient", "shared")] == list(range(4 * per_thread, 0, -1))
    assert store.search("Patient", [], count=0, offset=0).total == 4 * per_thread + 1
