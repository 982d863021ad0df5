"""The rows a SqliteStore transaction holds back until commit (search_index changes, resource upserts).

Whatever the order of puts, savepoint rollbacks and early flushes, the committed resource and search_index
tables must be exactly what the current versions say: checked against ``index_rows`` of every current
resource, and through search.
"""

from __future__ import annotations

import json
import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from adapter.store import sqlite as sqlite_store
from adapter.store.search import index_rows
from adapter.store.sqlite import SqliteStore

from .resources import flag, patient


def assert_tables_consistent(db_path: Path) -> None:
    """resource points at each resource's newest version; search_index holds exactly their index rows."""
    with closing(sqlite3.connect(db_path)) as conn:
        current = conn.execute(
            "SELECT r.type, r.id, r.version_id, v.version_id, v.content FROM resource r "
            "JOIN resource_version v ON v.rowid = r.vrow"
        ).fetchall()
        newest = dict(((t, i), n) for t, i, n in conn.execute(
            "SELECT type, id, max(version_id) FROM resource_version GROUP BY type, id"))
        indexed = set(conn.execute("SELECT type, id, param, system, value, high FROM search_index"))
        referenced = set(conn.execute("SELECT patient_id, type, id FROM patient_ref"))
    assert {(t, i): n for t, i, n, _, _ in current} == newest
    assert all(n == vn for _, _, n, vn, _ in current)
    expected = {(t, i, *row) for t, i, _, _, content in current for row in index_rows(json.loads(content))}
    assert indexed == expected
    # patient_ref: the Patient of every patient/subject/actor reference row, keyed by the Patient
    assert referenced == {(value, t, i) for t, i, param, system, value, _ in expected
                          if system == "Patient" and param in ("patient", "subject", "actor")}


def family_in(tx: Any, pid: str) -> str:
    stored = tx.read("Patient", pid)
    assert stored is not None
    return str(stored.resource["name"][0]["family"])


def family_total(store: SqliteStore, family: str) -> int:
    return store.search("Patient", [("family:exact", family)], count=10, offset=0).total


def test_search_after_commit_finds_everything_written_in_one_transaction(store: SqliteStore,
                                                                       db_path: Path) -> None:
    with store.transaction() as tx:
        for n in range(50):
            tx.put(patient(f"p{n}", family=f"Fam{n}", nhs=f"99900000{n:02d}"))
            tx.put(flag(f"f{n}", subject=f"p{n}"))
        # a value that goes away and comes back within the transaction, and one changed twice
        tx.put(patient("p0", family="Other", nhs="9990000000"))
        tx.put(patient("p0", family="Fam0", nhs="9990000000"))
        tx.put(patient("p1", family="Once", nhs="9990000001"))
        tx.put(patient("p1", family="Twice", nhs="9990000001"))
        assert store.read("Patient", "p2") is None  # nothing visible to readers before commit
    assert_tables_consistent(db_path)
    assert store.search("Patient", [], count=0, offset=0).total == 50
    assert all(family_total(store, f"Fam{n}") == 1 for n in range(2, 50))
    assert (family_total(store, "Fam0"), family_total(store, "Other")) == (1, 0)
    assert [family_total(store, f) for f in ("Once", "Twice", "Fam1")] == [0, 1, 0]
    assert store.search("Flag", [("patient", "Patient/p7")], count=10, offset=0).total == 1
    assert store.read("Patient", "p1").version_id == 3  # type: ignore[union-attr]


def test_savepoint_rollback_discards_the_rows_held_back_since_the_savepoint(store: SqliteStore,
                                                                          db_path: Path) -> None:
    with store.transaction() as tx:
        tx.put(patient("kept", family="Before"))
        tx.put(patient("also", family="Also"))
        with pytest.raises(KeyError), tx.savepoint():
            tx.put(patient("kept", family="Inside"))  # deletes Before's rows, adds Inside's: both undone
            tx.put(patient("dropped", family="Dropped"))
            tx.put(flag("f-dropped", subject="kept"))
            raise KeyError("undo this block")
        assert family_in(tx, "kept") == "Before"
        with tx.savepoint():
            tx.put(patient("also", family="After"))
    assert_tables_consistent(db_path)
    assert [family_total(store, f) for f in ("Before", "Inside", "Dropped")] == [1, 0, 0]
    assert (family_total(store, "Also"), family_total(store, "After")) == (0, 1)
    assert store.read("Patient", "kept").version_id == 1  # type: ignore[union-attr]
    assert store.read("Flag", "f-dropped") is None


def test_a_failed_transaction_writes_none_of_its_held_back_rows(store: SqliteStore, db_path: Path) -> None:
    with store.transaction() as tx:
        tx.put(patient("p", family="Committed"))
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put(patient("p", family="Lost"))
        tx.put(patient("q", family="Lost"))
        raise RuntimeError
    assert_tables_consistent(db_path)
    assert (family_total(store, "Committed"), family_total(store, "Lost")) == (1, 0)


@pytest.mark.parametrize("limit", [0, 3, 10, 200_000])
def test_random_puts_and_rollbacks_with_early_flushes(limit: int, db_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Puts in and out of (nested) savepoints, some rolled back, with the held-back rows written early
    (beyond ``limit`` of them), still commit exactly the surviving versions; reads in the transaction
    follow."""
    monkeypatch.setattr(sqlite_store, "_PENDING_LIMIT", limit)
    rng = random.Random(limit)
    model: dict[str, str] = {}  # patient id -> family committed

    def puts(tx: Any, state: dict[str, str]) -> None:
        for _ in range(rng.randrange(1, 4)):
            pid, family = f"p{rng.randrange(6)}", rng.choice(["Ash", "Birch", "Cedar"])
            tx.put(patient(pid, family=family, given=rng.choice(["Al", "Bo"])))
            state[pid] = family

    def block(tx: Any, state: dict[str, str], depth: int) -> dict[str, str]:
        inner = dict(state)
        try:
            with tx.savepoint():
                puts(tx, inner)
                if depth < 3 and rng.random() < 0.5:
                    inner = block(tx, inner, depth + 1)
                    puts(tx, inner)
                if rng.random() < 0.4:
                    raise LookupError
        except LookupError:
            return state
        return inner

    with SqliteStore(db_path, synchronous="OFF") as store:
        for _ in range(4):
            with store.transaction() as tx:
                state = dict(model)
                for _ in range(15):
                    if rng.random() < 0.3:
                        puts(tx, state)
                    else:
                        state = block(tx, state, 1)
                    for pid, family in state.items():
                        assert family_in(tx, pid) == family
                model = state
            assert_tables_consistent(db_path)
            for family in ("Ash", "Birch", "Cedar"):
                assert family_total(store, family) == sum(f == family for f in model.values())
