"""The Store contract, run against SqliteStore: versions, history, transactions, savepoints, archive."""

from __future__ import annotations

import copy
import itertools
import re
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.errors import StoreError
import adapter.store.sqlite as sqlite_module
from adapter.store.sqlite import SqliteStore

from .resources import flag, patient

INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00")


# --- resources ----------------------------------------------------------------------------------------------

def test_first_put_creates_version_1_with_meta(store: SqliteStore) -> None:
    with store.transaction() as tx:
        stored, changed = tx.put(patient(), source_time="2026-11-26T08:00:00+00:00")
    assert changed is True
    assert stored.version_id == 1
    assert stored.resource["meta"]["versionId"] == "1"
    assert INSTANT.fullmatch(stored.last_updated)
    assert stored.resource["meta"]["lastUpdated"] == stored.last_updated
    assert stored.source_time == "2026-11-26T08:00:00+00:00"
    assert store.read("Patient", "pat-1") == stored


def test_changed_put_increments_version_and_keeps_history(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(patient(family="One"))
    with store.transaction() as tx:
        second, changed = tx.put(patient(family="Two"), source_time="t2")
    with store.transaction() as tx:
        third, _ = tx.put(patient(family="Three"))
    assert changed and (second.version_id, third.version_id) == (2, 3)
    assert store.read("Patient", "pat-1") == third
    history = store.history("Patient", "pat-1")
    assert [h.version_id for h in history] == [3, 2, 1]
    assert [h.resource["name"][0]["family"] for h in history] == ["Three", "Two", "One"]
    assert history[1].source_time == "t2"
    vread = store.vread("Patient", "pat-1", 1)
    assert vread is not None and vread.resource["name"][0]["family"] == "One"
    assert vread.resource["meta"]["versionId"] == "1"


def test_identical_put_writes_nothing(store: SqliteStore) -> None:
    with store.transaction() as tx:
        first, _ = tx.put(patient(), source_time="t1")
    with store.transaction() as tx:
        again, changed = tx.put(patient(), source_time="t2")
        # the stored dict as read back (meta.versionId/lastUpdated set) is the same content too
        echoed, echoed_changed = tx.put(first.resource)
    assert (changed, echoed_changed) == (False, False)
    assert again == first and echoed == first  # source_time of the unchanged put is not recorded
    assert len(store.history("Patient", "pat-1")) == 1


def test_meta_keys_other_than_version_are_kept_and_count_as_content(store: SqliteStore) -> None:
    meta = {"versionId": "77", "lastUpdated": "2000-01-01T00:00:00Z", "source": "urn:carethread:maternity",
            "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            "tag": [{"system": "https://fhir.carethread.org/tag", "code": "synthetic"}]}
    with store.transaction() as tx:
        stored, _ = tx.put(patient(meta=meta))
        _, changed = tx.put(patient(meta={**meta, "tag": []}))
    assert stored.resource["meta"] == {**meta, "versionId": "1", "lastUpdated": stored.last_updated}
    assert changed is True


def test_put_neither_modifies_nor_shares_the_argument(store: SqliteStore) -> None:
    resource = patient(meta={"versionId": "9", "source": "x"})
    original = copy.deepcopy(resource)
    with store.transaction() as tx:
        stored, _ = tx.put(resource)
    assert resource == original
    stored.resource["name"][0]["family"] = "Mutated"
    resource["name"][0]["family"] = "Mutated too"
    read = store.read("Patient", "pat-1")
    assert read is not None and read.resource["name"][0]["family"] == "Testperson"


def test_put_needs_type_and_id(store: SqliteStore) -> None:
    with store.transaction() as tx, pytest.raises(ValueError):
        tx.put({"resourceType": "Patient"})


def test_unknown_resources(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
        assert tx.read("Patient", "nope") is None
    assert store.read("Patient", "nope") is None
    assert store.read("Flag", "pat-1") is None  # ids are per type
    assert store.vread("Patient", "pat-1", 2) is None
    assert store.vread("Patient", "nope", 1) is None
    assert store.history("Patient", "nope") == []


def test_transaction_read_sees_its_own_writes(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(patient())
        seen = tx.read("Patient", "pat-1")
        assert seen is not None and seen.version_id == 1
        assert store.read("Patient", "pat-1") is None  # not committed yet: other readers do not see it


def test_search_index_follows_updates(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(patient(family="Oldname"))
    with store.transaction() as tx:
        tx.put(patient(family="Newname"))
    assert store.search("Patient", [("family", "oldname")], count=10, offset=0).total == 0
    assert store.search("Patient", [("family", "newname")], count=10, offset=0).total == 1
    assert store.search("Patient", [("given", "alex")], count=10, offset=0).total == 1  # unchanged rows kept


# --- transactions and savepoints ----------------------------------------------------------------------------

def test_exception_rolls_back_the_whole_transaction(store: SqliteStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
        tx.put(patient())
        tx.archive(channel="mllp", source="maternity", sender="A^B", control_id="1", payload=b"MSH|")
        raise RuntimeError("boom")
    assert store.read("Patient", "pat-1") is None
    assert store.list_inbound() == []


def test_savepoint_rollback_keeps_the_outer_transaction(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(patient("kept"))
        with pytest.raises(KeyError), tx.savepoint():
            tx.put(patient("dropped"))
            tx.put(patient("kept", family="Changed"))
            raise KeyError("undo this block")
        with tx.savepoint():  # a savepoint that completes is kept
            tx.put(flag(subject="kept"))
            with pytest.raises(ValueError), tx.savepoint():  # nested
                tx.put(flag("flag-2", subject="kept"))
                raise ValueError
    assert store.read("Patient", "dropped") is None
    kept = store.read("Patient", "kept")
    assert kept is not None and kept.version_id == 1 and kept.resource["name"][0]["family"] == "Testperson"
    assert store.read("Flag", "flag-1") is not None
    assert store.read("Flag", "flag-2") is None
    assert store.search("Patient", [("family", "changed")], count=10, offset=0).total == 0


def test_reads_inside_a_transaction_see_the_state_after_a_savepoint_rollback(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(patient("kept"))
        with pytest.raises(KeyError), tx.savepoint():
            tx.put(patient("kept", family="Changed"))
            tx.put(patient("dropped"))
            assert tx.read("Patient", "kept").version_id == 2  # type: ignore[union-attr]
            raise KeyError("undo this block")
        current = tx.read("Patient", "kept")
        assert current is not None and current.version_id == 1
        assert current.resource["name"][0]["family"] == "Testperson"
        assert tx.read("Patient", "dropped") is None
        stored, changed = tx.put(patient("kept", family="Again"))
        assert changed and stored.version_id == 2


def test_transaction_object_is_dead_after_the_block(store: SqliteStore) -> None:
    with store.transaction() as tx:
        pass
    with pytest.raises(RuntimeError):
        tx.put(patient())


def test_nested_transaction_in_one_thread_is_refused(store: SqliteStore) -> None:
    with store.transaction(), pytest.raises(RuntimeError, match="savepoint"), store.transaction():
        pass
    with store.transaction() as tx:  # the store is still usable
        tx.put(patient())


# --- the inbound archive ------------------------------------------------------------------------------------

def test_archive_round_trip(store: SqliteStore) -> None:
    payload = b"\x0bMSH|^~\\&|SYN|RX1|CT|CT|20261126080000||ADT^A01|c1|P|2.4\r\x1c\r\xff"
    with store.transaction() as tx:
        first = tx.archive(channel="mllp", source="maternity", sender="SYN^RX1", control_id="c1",
                           payload=payload)
        tx.set_status(first, "AE", error_code="missing-field", error_location="PID-3")
        replay = tx.archive(channel="replay", source="maternity", sender=None, control_id=None,
                            payload=payload, status="AA", replay_of=first)
    message = store.inbound(first)
    assert message is not None
    assert (message.channel, message.source, message.sender, message.control_id) == ("mllp", "maternity",
                                                                                     "SYN^RX1", "c1")
    assert (message.status, message.error_code, message.error_location) == ("AE", "missing-field", "PID-3")
    assert message.payload == payload and isinstance(message.payload, bytes)
    assert INSTANT.fullmatch(message.received_at)
    replayed = store.inbound(replay)
    assert replayed is not None and replayed.replay_of == first and replayed.status == "AA"
    assert replayed.sender is None and replayed.control_id is None
    assert store.inbound(999) is None


def test_set_status_of_unknown_message(store: SqliteStore) -> None:
    with store.transaction() as tx, pytest.raises(KeyError):
        tx.set_status(42, "AA")


def test_find_accepted(store: SqliteStore) -> None:
    with store.transaction() as tx:
        rejected = tx.archive(channel="mllp", source="maternity", sender="A^B", control_id="1", payload=b"x")
        tx.set_status(rejected, "AR")
        assert tx.find_accepted("maternity", "A^B", "1") is None
        accepted = tx.archive(channel="mllp", source="maternity", sender="A^B", control_id="1", payload=b"x")
        tx.set_status(accepted, "AA")
        assert tx.find_accepted("maternity", "A^B", "1") == accepted  # seen inside the same transaction
        no_sender = tx.archive(channel="file", source="maternity", sender=None, control_id="1", payload=b"x",
                               status="AA")
    with store.transaction() as tx:
        assert tx.find_accepted("maternity", "A^B", "1") == accepted
        assert tx.find_accepted("maternity", None, "1") == no_sender
        assert tx.find_accepted("maternity", "A^C", "1") is None
        assert tx.find_accepted("gp", "A^B", "1") is None
        assert tx.find_accepted("maternity", "A^B", "2") is None


def test_list_inbound_newest_first_with_filter_and_paging(store: SqliteStore) -> None:
    with store.transaction() as tx:
        ids = [tx.archive(channel="http", source="maternity", sender="S", control_id=str(n), payload=b"x",
                          status="AA" if n % 2 else "AE") for n in range(7)]
    assert [m.id for m in store.list_inbound()] == ids[::-1]
    assert [m.id for m in store.list_inbound(status="AA")] == [ids[5], ids[3], ids[1]]
    assert [m.id for m in store.list_inbound(limit=2, offset=1)] == [ids[5], ids[4]]
    assert store.list_inbound(status="duplicate") == []


# --- lifecycle ----------------------------------------------------------------------------------------------

def test_reopening_keeps_everything(db_path: Path) -> None:
    with SqliteStore(db_path) as store, store.transaction() as tx:
        tx.put(patient(family="One"))
        tx.put(patient(family="Two"))
        archived = tx.archive(channel="file", source="maternity", sender=None, control_id="c", payload=b"p")
    with SqliteStore(db_path, synchronous="NORMAL") as store:
        current = store.read("Patient", "pat-1")
        assert current is not None and current.version_id == 2
        assert len(store.history("Patient", "pat-1")) == 2
        assert store.search("Patient", [("family", "two")], count=10, offset=0).total == 1
        inbound = store.inbound(archived)
        assert inbound is not None and inbound.payload == b"p"
        with store.transaction() as tx:
            assert tx.put(patient(family="Three"))[0].version_id == 3


def test_schema_version_is_recorded_and_a_newer_schema_refused(db_path: Path) -> None:
    SqliteStore(db_path).close()
    with closing(sqlite3.connect(db_path)) as conn, conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(sqlite_module._SCHEMA),)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(db_path)


def test_a_version_1_database_is_migrated_in_place(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        for statement in sqlite_module._SCHEMA[0]:
            conn.execute(statement)
    with SqliteStore(db_path) as store, store.transaction() as tx:
        tx.set_identity_member("p1", "i1", "{}", ["nhs:9990001006"])
        assert tx.identity_candidates(["nhs:9990001006"]) == [("p1", "i1", "{}")]


def test_a_version_3_database_gets_its_patient_references_backfilled(db_path: Path) -> None:
    """Version 4 added patient_ref (one person's records by Patient id): a database written before it is
    backfilled from search_index when it is opened."""
    from .test_store_pending import assert_tables_consistent

    with SqliteStore(db_path) as store, store.transaction() as tx:
        tx.put(patient("p1"))
        tx.put(flag("f1", "p1"))
        tx.put({"resourceType": "Appointment", "id": "a1", "status": "noshow",
                "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]})
        tx.put({"resourceType": "RelatedPerson", "id": "r1", "patient": {"reference": "Patient/p2"}})
    with closing(sqlite3.connect(db_path)) as conn, conn:  # as a version 3 database was
        conn.execute("DROP TABLE patient_ref")
        conn.execute("UPDATE schema_version SET version = 3")
    with SqliteStore(db_path) as store, store.transaction() as tx:
        found = tx.resources_of_patients(["Flag", "Appointment", "RelatedPerson"], ["p1"])
        assert [(r.resource["resourceType"], r.resource["id"]) for r in found] == [("Appointment", "a1"),
                                                                                  ("Flag", "f1")]
    assert_tables_consistent(db_path)


def test_identity_members_and_blocking_keys(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        with store.transaction() as tx:
            tx.set_identity_member("p1", "i1", "r1", ["a", "b"])
            tx.set_identity_member("p2", "i1", "r2", ["b", "c"])
            tx.set_identity_member("p3", "i2", "r3", ["d"])
            assert sorted(tx.identity_candidates(["b", "d"])) == [("p1", "i1", "r1"), ("p2", "i1", "r2"),
                                                                  ("p3", "i2", "r3")]
            tx.set_identity_member("p1", "i2", "r1b", ["d"])  # moved, keys replaced
            assert tx.identity_candidates(["a"]) == []
            assert tx.identity_members("i2") == [("p1", "r1b"), ("p3", "r3")]
            assert tx.identity_of("p2") == ("i1", "r2") and tx.identity_of("nope") is None
            with pytest.raises(RuntimeError), tx.savepoint():
                tx.set_identity_member("p9", "i9", "r9", ["d"])
                raise RuntimeError
            assert tx.identity_of("p9") is None


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteStore(":memory:")
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "x.db", synchronous="SOMETIMES")


def test_closed_store_refuses_work(db_path: Path) -> None:
    store = SqliteStore(db_path)
    store.read("Patient", "x")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError):
        store.read("Patient", "x")
    with pytest.raises(StoreError), store.transaction():
        pass


# --- property: the store against a plain list model ---------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["Ash", "Birch", "Cedar", "Ásh"]), min_size=1, max_size=8))
def test_versions_and_index_follow_the_puts(families: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "p.db", synchronous="OFF") as store:
        for family in families:
            with store.transaction() as tx:
                tx.put(patient(family=family))
        changes = 1 + sum(a != b for a, b in itertools.pairwise(families))
        history = store.history("Patient", "pat-1")
        assert history[0].resource["name"][0]["family"] == families[-1]
        assert len(history) == changes
        for family in set(families):
            found = store.search("Patient", [("family:exact", family)], count=10, offset=0).total
            assert found == (1 if family == families[-1] else 0)
