"""SQLite implementation of ``Store``: the embedded default (sandbox, single site).

Threading: one writer connection, used under a lock (so write transactions are serialised across threads),
and a pool of reader connections handed out per call (WAL mode: readers never wait for the writer and see the
last commit). The store can be shared by an asyncio loop and FastAPI's threadpool. ``transaction()`` blocks
while another thread writes; from async code run the whole transaction in a worker thread.

Durability: ``synchronous="FULL"`` (default) syncs the WAL at every commit, so an archived message survives a
power cut once ``transaction()`` returns; ``NORMAL`` may lose the last commits (never corrupts). Batch many
messages per transaction in bulk loads to amortise the sync.

Layout: ``resource_version`` keeps every version (content as canonical JSON text without meta.versionId and
meta.lastUpdated, so "unchanged" is a string comparison); ``resource`` points at the current version;
``search_index`` holds the rows of ``adapter.store.search.index_rows``, ``patient_ref`` the Patients each
current resource is about (from those rows, keyed by Patient); ``inbound`` archives every payload.
A transaction writes its ``resource``, ``search_index`` and ``patient_ref`` rows at commit, in batches (see
``_SqliteTransaction._pending``); readers see only committed data, so this is invisible to them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from datetime import date as _date
from pathlib import Path
from typing import Any

from adapter.errors import StoreError
from adapter.store.checkpoint import BACKSTOP_FRAMES, Checkpointer
from adapter.store.base import InboundMessage, OutboxEntry, SearchResult, StoredResource
from adapter.store.query import Include, parse_search
from adapter.store.search import date_range, index_rows, param_rows

__all__ = ["SqliteStore"]

_SCHEMA: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE resource_version (
            type TEXT NOT NULL, id TEXT NOT NULL, version_id INTEGER NOT NULL,
            last_updated TEXT NOT NULL, source_time TEXT, content TEXT NOT NULL,
            prev INTEGER)  -- rowid of the previous version: history is a chain, no second index to write""",
        """CREATE TABLE resource (
            type TEXT NOT NULL, id TEXT NOT NULL, version_id INTEGER NOT NULL, last_updated TEXT NOT NULL,
            vrow INTEGER NOT NULL,  -- rowid of the current resource_version
            PRIMARY KEY (type, id)) WITHOUT ROWID""",
        "CREATE INDEX resource_recent ON resource (type, last_updated)",
        """CREATE TABLE search_index (
            type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
            system TEXT NOT NULL, high TEXT NOT NULL,  -- '' when the row has none
            PRIMARY KEY (type, param, value, id, system, high)) WITHOUT ROWID""",
        """CREATE TABLE inbound (
            id INTEGER PRIMARY KEY, channel TEXT NOT NULL, source TEXT NOT NULL, sender TEXT, control_id TEXT,
            received_at TEXT NOT NULL, status TEXT NOT NULL, error_code TEXT, error_location TEXT,
            payload BLOB NOT NULL, replay_of INTEGER REFERENCES inbound (id))""",
        "CREATE INDEX inbound_accepted ON inbound (source, control_id, sender) WHERE status = 'AA'",
        "CREATE INDEX inbound_status ON inbound (status, id)",
    ),
    (  # version 2: identity reconciliation (adapter.reconcile): each source Patient's identity, the
        # standardised record it is matched on, and the blocking keys that find it as a candidate
        """CREATE TABLE identity_member (
            patient_id TEXT PRIMARY KEY, identity_id TEXT NOT NULL, record TEXT NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX identity_member_identity ON identity_member (identity_id)",
        """CREATE TABLE identity_block (
            key TEXT NOT NULL, patient_id TEXT NOT NULL, PRIMARY KEY (key, patient_id)) WITHOUT ROWID""",
        "CREATE INDEX identity_block_patient ON identity_block (patient_id)",
    ),
    (  # version 3: the notification outbox (adapter.notify): one row per (Communication, Subscription) to
        # deliver, written in the same transaction as the Communication, so no notification is lost across a
        # restart; ``history`` is a JSON list of attempts ({at, outcome, http_status?, error?})
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY, communication_id TEXT NOT NULL, subscription_id TEXT NOT NULL,
            endpoint TEXT NOT NULL, payload TEXT,  -- channel.endpoint; channel.payload (NULL: no payload)
            headers TEXT NOT NULL,  -- JSON list of channel.header lines
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL, created_at TEXT NOT NULL,
            history TEXT NOT NULL DEFAULT '[]',
            UNIQUE (communication_id, subscription_id))""",
        "CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending'",
    ),
    (  # version 4: which current resources are about which Patient (their ``patient`` search parameter rows),
        # keyed by the Patient: one person's records in one index seek per Patient id (the rules read a whole
        # identity on every event; through search_index that was a seek per type and id). Kept like
        # search_index: rows held back to commit (_SqliteTransaction._pending).
        """CREATE TABLE patient_ref (
            patient_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
            PRIMARY KEY (patient_id, type, id)) WITHOUT ROWID""",
        "INSERT OR IGNORE INTO patient_ref (patient_id, type, id) SELECT value, type, id FROM search_index "
        "WHERE system = 'Patient' AND param IN ('patient', 'subject', 'actor')",
    ),
)

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_VERSION_COLUMNS = "v.version_id, v.last_updated, v.source_time, v.content"
_CURRENT = (
    f"SELECT {_VERSION_COLUMNS}, r.vrow FROM resource r JOIN resource_version v ON v.rowid = r.vrow "
    "WHERE r.type = ? AND r.id = ?"
)
# every version of one resource, newest first, by walking the prev chain from the current one
_VERSIONS = (
    "WITH RECURSIVE chain (vrow) AS ("
    " SELECT vrow FROM resource WHERE type = ? AND id = ?"
    " UNION ALL SELECT v.prev FROM resource_version v JOIN chain ON v.rowid = chain.vrow"
    " WHERE v.prev IS NOT NULL)"
    f" SELECT {_VERSION_COLUMNS} FROM chain JOIN resource_version v ON v.rowid = chain.vrow"
)
_INSERT_VERSION = (
    "INSERT INTO resource_version (type, id, version_id, last_updated, source_time, content, prev) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_CURRENT = (
    "INSERT INTO resource (type, id, version_id, last_updated, vrow) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (type, id) DO UPDATE SET version_id = excluded.version_id, "
    "last_updated = excluded.last_updated, vrow = excluded.vrow"
)
_DELETE_INDEX = (
    "DELETE FROM search_index "
    "WHERE type = ? AND id = ? AND param = ? AND system = ? AND value = ? AND high = ?"
)
_INSERT_INDEX = "INSERT INTO search_index (type, id, param, system, value, high) VALUES (?, ?, ?, ?, ?, ?)"
_DELETE_REF = "DELETE FROM patient_ref WHERE patient_id = ? AND type = ? AND id = ?"
_INSERT_REF = "INSERT INTO patient_ref (patient_id, type, id) VALUES (?, ?, ?)"
# kinds of the rows a transaction holds back until commit (_SqliteTransaction._pending), and how many it
# holds before writing them anyway (bounds memory in huge transactions)
_DELETE, _INSERT, _UPSERT, _REF_DELETE, _REF_INSERT = 0, 1, 2, 3, 4
_PENDING_LIMIT = 200_000


def _index_order(row: tuple[str, ...]) -> tuple[str, ...]:
    """A (type, id, param, system, value, high) row's search_index primary key: (type, param, value, id,
    system, high). Python's str order is SQLite's BINARY order (UTF-8 keeps code point order)."""
    return row[0], row[2], row[4], row[1], row[3], row[5]


_INBOUND_COLUMNS = (
    "id, channel, source, sender, control_id, received_at, status, error_code, error_location, payload, "
    "replay_of"
)
_STRIPPED_META = ("versionId", "lastUpdated")
_encode = json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, ensure_ascii=False, check_circular=False
).encode


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _canonical(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without meta.versionId / meta.lastUpdated (the part whose equality means 'unchanged')."""
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not any(k in meta for k in _STRIPPED_META):
        return resource
    body = dict(resource)
    kept = {k: v for k, v in meta.items() if k not in _STRIPPED_META}
    if kept:
        body["meta"] = kept
    else:
        del body["meta"]
    return body


def _stored(version_id: int, last_updated: str, source_time: str | None, content: str) -> StoredResource:
    body = json.loads(content)
    meta = {"versionId": str(version_id), "lastUpdated": last_updated, **body.pop("meta", {})}
    resource = {"resourceType": body.pop("resourceType"), "id": body.pop("id"), "meta": meta, **body}
    return StoredResource(resource, version_id, last_updated, source_time)


def _flag_subject(flag: dict[str, Any]) -> str | None:
    ref = (flag.get("subject") or {}).get("reference", "")
    return ref[8:] if isinstance(ref, str) and ref.startswith("Patient/") else None


_PATIENT_PARAMS = ("patient", "subject", "actor")  # the index rows behind the ``patient`` search parameter


def _patients_of_rows(rows: Any) -> frozenset[str]:
    """Patient ids a resource is about (its subject, patient or participant actor index rows: param, system,
    value, high)."""
    return frozenset(row[2] for row in rows if row[1] == "Patient" and row[0] in _PATIENT_PARAMS)


def _inbound(row: tuple[Any, ...]) -> InboundMessage:
    *head, payload, replay_of = row  # the columns of _INBOUND_COLUMNS, in order
    message_id, channel, source, sender, control_id, received_at, status, error_code, error_location = head
    return InboundMessage(message_id, channel, source, sender, control_id, received_at, status, error_code,
                          error_location, bytes(payload), replay_of)


_OUTBOX_COLUMNS = (
    "id, communication_id, subscription_id, endpoint, payload, headers, status, attempts, next_attempt_at, "
    "created_at, history"
)


def _outbox(row: tuple[Any, ...]) -> OutboxEntry:
    *head, headers, status, attempts, due, created, history = row  # _OUTBOX_COLUMNS, in order
    outbox_id, communication_id, subscription_id, endpoint, payload = head
    return OutboxEntry(outbox_id, communication_id, subscription_id, endpoint, payload,
                       tuple(json.loads(headers)), status, attempts, due, created, tuple(json.loads(history)))


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"store {what} failed ({type(exc).__name__})") from exc


def _included(
    conn: sqlite3.Connection, matches: list[StoredResource], includes: tuple[Include, ...]
) -> list[StoredResource]:
    """The resources the page's matches reference through the ``_include`` parameters, each once."""
    wanted: dict[tuple[str, str], None] = {}
    for include in includes:
        for match in matches:
            for _, target_type, target_id, _ in param_rows(match.resource, include.param):
                if include.target_type in (None, target_type):
                    wanted[(target_type, target_id)] = None
    for match in matches:
        wanted.pop((match.resource["resourceType"], match.resource["id"]), None)
    rows = (conn.execute(_CURRENT, key).fetchone() for key in wanted)
    return [_stored(*row[:4]) for row in rows if row is not None]


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._open = True
        self._savepoints = 0
        # current-version rows read or written in this transaction (one writer: nobody else changes
        # them), so read-then-put looks each resource up once. Every resource put in the transaction is
        # here (its resource row may still be held back, below), so a savepoint rollback restores the
        # entries its puts replaced (``_undo``: (key, previous entry), kept while a savepoint is open)
        # rather than forgetting them.
        self._current: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        self._current_ids: dict[str, set[str]] = {}  # type -> ids with an entry in _current (versions_of)
        self._undo: list[tuple[tuple[str, str], tuple[Any, ...] | None]] = []
        # Writes held back until commit, in order: (_INSERT or _DELETE, search_index row) and (_UPSERT,
        # resource row). Nothing on the writer connection reads search_index (searches use readers, which
        # see only committed data), and resource is only read through _current_row, whose cache holds
        # every resource put in this transaction. So these rows can go in at commit with one executemany
        # per kind, sorted in primary-key order (fewer calls and b-tree descents than ~5 statements per
        # put: bulk ingest ~12% faster). A savepoint rollback drops what was logged since the savepoint;
        # rows are only written early while no savepoint is open, so a ROLLBACK TO never undoes rows
        # logged before its savepoint.
        self._pending: list[tuple[int, tuple[Any, ...]]] = []
        # subjects of the Flags put in this transaction (their index rows are held back): flag id -> Patient id
        # or None; kept in step with _current, savepoint rollbacks included (flags_of_patients)
        self._flag_subject: dict[str, str | None] = {}
        # rules engine: the Patients (search parameter ``patient``) of every resource put in this transaction,
        # and the reverse, kept in step with _current (resources_of_patients)
        self._patients: dict[tuple[str, str], frozenset[str]] = {}
        self._by_patient: dict[str, set[tuple[str, str]]] = {}

    def _current_row(self, resource_type: str, resource_id: str) -> tuple[Any, ...] | None:
        key = (resource_type, resource_id)
        if key in self._current:
            return self._current[key]
        row = self._connection().execute(_CURRENT, key).fetchone()
        self._current[key] = row
        self._current_ids.setdefault(resource_type, set()).add(resource_id)
        return row

    def _connection(self) -> sqlite3.Connection:
        if not self._open:
            raise RuntimeError("transaction already ended")
        return self._conn

    def _flush(self, *, atomic: bool = False) -> None:
        """Write the held-back rows: before commit, or mid-transaction outside any savepoint when the log
        grows large (``atomic``: all or nothing, so a failure leaves the tables and the log as they were)."""
        log = self._pending
        if not log:
            return
        # Net effect per row, as one transaction may change a row more than once. resource: the last
        # upsert of a key wins. search_index: a row existed before iff its first change is a delete, and
        # exists after iff its last change is an insert (they alternate: put diffs against the current
        # version); write only the rows whose existence changes.
        upserts: dict[tuple[str, str], tuple[Any, ...]] = {}
        first: dict[tuple[Any, ...], int] = {}
        last: dict[tuple[Any, ...], int] = {}
        for kind, row in log:
            if kind == _UPSERT:
                upserts[row[:2]] = row
            else:  # search_index rows have six columns, patient_ref rows three: they never collide
                first.setdefault(row, kind)
                last[row] = kind
        inserts = [row for row, kind in last.items() if kind == _INSERT and first[row] == _INSERT]
        deletes = [row for row, kind in last.items() if kind == _DELETE and first[row] == _DELETE]
        ref_inserts = [row for row, kind in last.items() if kind == _REF_INSERT and first[row] == _REF_INSERT]
        ref_deletes = [row for row, kind in last.items() if kind == _REF_DELETE and first[row] == _REF_DELETE]
        conn = self._conn
        if atomic:
            conn.execute("SAVEPOINT pending_flush")
        try:
            if upserts:
                conn.executemany(_UPSERT_CURRENT, sorted(upserts.values()))  # primary key (type, id) first
            if deletes:
                conn.executemany(_DELETE_INDEX, sorted(deletes, key=_index_order))
            if inserts:
                conn.executemany(_INSERT_INDEX, sorted(inserts, key=_index_order))
            if ref_deletes:
                conn.executemany(_DELETE_REF, sorted(ref_deletes))
            if ref_inserts:
                conn.executemany(_INSERT_REF, sorted(ref_inserts))
        except BaseException:
            if atomic:
                conn.execute("ROLLBACK TO pending_flush")
                conn.execute("RELEASE pending_flush")
            raise
        if atomic:
            conn.execute("RELEASE pending_flush")
        self._pending = []

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        with _translated("read"):
            row = self._current_row(resource_type, resource_id)
        return None if row is None else _stored(*row[:4])

    def exists(self, resource_type: str, resource_id: str) -> bool:
        """Whether the resource has a current version (this transaction's writes included): ``read(...) is not
        None`` without parsing its content."""
        with _translated("read"):
            return self._current_row(resource_type, resource_id) is not None

    def put(self, resource: dict[str, Any], *, source_time: str | None = None) -> tuple[StoredResource, bool]:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str) or not rtype or not rid:
            raise ValueError("a resource needs a resourceType and an id")
        body = _canonical(resource)
        content = _encode(body)
        conn = self._connection()
        with _translated("put"):
            current = self._current_row(rtype, rid)
            if current is not None and current[3] == content:
                return _stored(*current[:4]), False
            version_id, prev = (1, None) if current is None else (current[0] + 1, current[4])
            now = _now()
            version_row = (rtype, rid, version_id, now, source_time, content, prev)
            vrow = conn.execute(_INSERT_VERSION, version_row).lastrowid
            log = self._pending
            log.append((_UPSERT, (rtype, rid, version_id, now, vrow)))
            if self._savepoints:
                self._undo.append(((rtype, rid), current))  # _current_row cached ``current`` for the key
            self._current[(rtype, rid)] = (version_id, now, source_time, content, vrow)
            if rtype == "Flag":
                self._flag_subject[rid] = _flag_subject(body)
            # rewrite only the index rows that changed (an update rarely touches most searchable values)
            rows = index_rows(body)
            patients = _patients_of_rows(rows)
            self._set_patients((rtype, rid), patients)  # rules engine (resources_of_patients)
            old_patients: frozenset[str] = frozenset()
            if current is not None:
                old_rows, new_rows = set(index_rows(json.loads(current[3]))), set(rows)
                old_patients = _patients_of_rows(old_rows)
                log.extend((_DELETE, (rtype, rid, *row)) for row in old_rows - new_rows)
                rows = [row for row in rows if row not in old_rows]
            log.extend((_INSERT, (rtype, rid, *row)) for row in rows)
            log.extend((_REF_DELETE, (pid, rtype, rid)) for pid in old_patients - patients)
            log.extend((_REF_INSERT, (pid, rtype, rid)) for pid in patients - old_patients)
            if len(log) > _PENDING_LIMIT and not self._savepoints:
                self._flush(atomic=True)
        # built from the canonical body rather than re-parsed: top level fresh, nested values shared
        meta = {"versionId": str(version_id), "lastUpdated": now, **body.get("meta", {})}
        stored = {"resourceType": rtype, "id": rid, "meta": meta,
                  **{k: v for k, v in body.items() if k not in ("resourceType", "id", "meta")}}
        return StoredResource(stored, version_id, now, source_time), True

    def archive(
        self,
        *,
        channel: str,
        source: str,
        sender: str | None,
        control_id: str | None,
        payload: bytes,
        status: str = "received",
        replay_of: int | None = None,
    ) -> int:
        with _translated("archive"):
            cur = self._connection().execute(
                "INSERT INTO inbound (channel, source, sender, control_id, received_at, status, payload, "
                "replay_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (channel, source, sender, control_id, _now(), status, payload, replay_of),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def set_status(
        self,
        archive_id: int,
        status: str,
        *,
        error_code: str | None = None,
        error_location: str | None = None,
    ) -> None:
        with _translated("set_status"):
            cur = self._connection().execute(
                "UPDATE inbound SET status = ?, error_code = ?, error_location = ? WHERE id = ?",
                (status, error_code, error_location, archive_id),
            )
        if cur.rowcount != 1:
            raise KeyError(archive_id)

    def find_accepted(self, source: str, sender: str | None, control_id: str) -> int | None:
        with _translated("find_accepted"):
            row = self._connection().execute(
                "SELECT id FROM inbound "
                "WHERE source = ? AND control_id = ? AND sender IS ? AND status = 'AA' ORDER BY id LIMIT 1",
                (source, control_id, sender),
            ).fetchone()
        return None if row is None else int(row[0])

    # -- identity reconciliation: members and blocking keys (written at once, not held back) -------------

    def identity_candidates(self, keys: list[str], limit: int = 500) -> list[tuple[str, str, str]]:
        """(patient id, identity id, record) of the members sharing any blocking key, at most ``limit``."""
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        with _translated("identity_candidates"):
            return self._connection().execute(
                "SELECT m.patient_id, m.identity_id, m.record FROM identity_member m WHERE m.patient_id IN "
                f"(SELECT DISTINCT patient_id FROM identity_block WHERE key IN ({marks})) LIMIT ?",
                (*keys, limit)).fetchall()

    def identity_members(self, identity_id: str) -> list[tuple[str, str]]:
        """(patient id, record) of every member of an identity."""
        with _translated("identity_members"):
            return self._connection().execute(
                "SELECT patient_id, record FROM identity_member WHERE identity_id = ? ORDER BY patient_id",
                (identity_id,)).fetchall()

    def identity_of(self, patient_id: str) -> tuple[str, str] | None:
        """(identity id, record) of a source Patient, None if it has none yet."""
        with _translated("identity_of"):
            row = self._connection().execute(
                "SELECT identity_id, record FROM identity_member WHERE patient_id = ?", (patient_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def flags_of_patients(self, patient_ids: list[str]) -> list[str]:
        """``Flag/id`` of every Flag whose subject is one of these Patients, including Flags written
        earlier in this transaction (their index rows are still held back: see ``_pending``).  Meant for
        rare decisions (identity merges and reviews): it looks at every resource this transaction put."""
        wanted = set(patient_ids)
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        with _translated("flags_of_patients"):
            found = {r[0] for r in self._connection().execute(
                "SELECT id FROM search_index WHERE type = 'Flag' AND param = 'subject' AND system = 'Patient' "
                f"AND value IN ({marks})", tuple(wanted))}
        for rid, subject in self._flag_subject.items():
            if subject in wanted:
                found.add(rid)
            else:
                found.discard(rid)
        return sorted(f"Flag/{rid}" for rid in found)

    def set_identity_member(self, patient_id: str, identity_id: str, record: str, keys: list[str]) -> None:
        """Put a source Patient in an identity, with the record it matches on and its blocking keys."""
        conn = self._connection()
        with _translated("set_identity_member"):
            conn.execute("INSERT INTO identity_member (patient_id, identity_id, record) VALUES (?, ?, ?) "
                         "ON CONFLICT (patient_id) DO UPDATE SET identity_id = excluded.identity_id, "
                         "record = excluded.record", (patient_id, identity_id, record))
            old = {k for (k,) in conn.execute("SELECT key FROM identity_block WHERE patient_id = ?", (patient_id,))}
            new = set(keys)
            if old - new:
                conn.executemany("DELETE FROM identity_block WHERE key = ? AND patient_id = ?",
                                 [(k, patient_id) for k in sorted(old - new)])
            if new - old:
                conn.executemany("INSERT INTO identity_block (key, patient_id) VALUES (?, ?)",
                                 [(k, patient_id) for k in sorted(new - old)])

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        conn = self._connection()
        name = f"sp{self._savepoints}"
        self._savepoints += 1
        pending_mark, undo_mark = len(self._pending), len(self._undo)
        try:
            with _translated("savepoint"):
                conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                # forget the rows held back since the savepoint and the cache entries of its puts
                del self._pending[pending_mark:]
                for key, previous in reversed(self._undo[undo_mark:]):
                    self._current[key] = previous
                    if key[0] == "Flag":
                        self._flag_subject[key[1]] = None if previous is None else _flag_subject(json.loads(previous[3]))
                    self._set_patients(key, frozenset() if previous is None
                                       else _patients_of_rows(index_rows(json.loads(previous[3]))))
                del self._undo[undo_mark:]
                with _translated("savepoint rollback"):
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                raise
            with _translated("savepoint release"):
                conn.execute(f"RELEASE {name}")
                if self._savepoints == 1:  # the outermost one: no rollback can reach its changes now
                    self._undo.clear()
                    if len(self._pending) > _PENDING_LIMIT:
                        self._flush(atomic=True)
        finally:
            self._savepoints -= 1

    # -- notification outbox --------------------------------------------------------------------------------
    # (adapter.notify) rows are written at once, not held back: only the worker reads them, after commit

    def list_current(self, resource_type: str) -> list[StoredResource]:
        """The current version of every resource of a type, including this transaction's writes (for the few
        resources the notifier scans: Subscriptions, configured Organizations), in id order."""
        rows: dict[str, tuple[Any, ...]] = {}
        with _translated("list_current"):
            for rid, *row in self._connection().execute(
                    f"SELECT r.id, {_VERSION_COLUMNS}, r.vrow FROM resource r "
                    "JOIN resource_version v ON v.rowid = r.vrow WHERE r.type = ?", (resource_type,)):
                rows[rid] = tuple(row)
        # this transaction's puts (their resource rows may still be held back) win over what is committed
        for rid in self._current_ids.get(resource_type, ()):
            cached = self._current[(resource_type, rid)]
            if cached is not None:
                rows[rid] = cached
        return [_stored(*rows[rid][:4]) for rid in sorted(rows)]

    def versions_of(self, resource_type: str) -> dict[str, tuple[int, str]]:
        """id -> (version id, lastUpdated) of the current version of every resource of a type, this
        transaction's writes included, without reading their content (a cheap way to tell whether a small set,
        such as the configured Organizations, changed since it was last read)."""
        with _translated("versions_of"):
            versions = {rid: (version, updated) for rid, version, updated in self._connection().execute(
                "SELECT id, version_id, last_updated FROM resource WHERE type = ?", (resource_type,))}
        for rid in self._current_ids.get(resource_type, ()):
            cached = self._current[(resource_type, rid)]
            if cached is None:
                versions.pop(rid, None)
            else:
                versions[rid] = (cached[0], cached[1])
        return versions

    def enqueue_outbox(self, *, communication_id: str, subscription_id: str, endpoint: str,
                       payload: str | None, headers: list[str], next_attempt_at: str) -> int | None:
        """Add a pending delivery; None (and nothing written) if this Communication already has a row for
        this Subscription."""
        with _translated("enqueue_outbox"):
            cur = self._connection().execute(
                "INSERT INTO outbox (communication_id, subscription_id, endpoint, payload, headers, status, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT (communication_id, subscription_id) DO NOTHING",
                (communication_id, subscription_id, endpoint, payload, json.dumps(headers), next_attempt_at,
                 _now()))
        return cur.lastrowid if cur.rowcount == 1 else None

    def outbox_entry(self, outbox_id: int) -> OutboxEntry | None:
        with _translated("outbox_entry"):
            row = self._connection().execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
        return None if row is None else _outbox(row)

    def outbox_of(self, communication_id: str) -> list[OutboxEntry]:
        """Every delivery row of a Communication, oldest first."""
        with _translated("outbox_of"):
            rows = self._connection().execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE communication_id = ? ORDER BY id",
                (communication_id,)).fetchall()
        return [_outbox(row) for row in rows]

    def record_outbox_attempt(self, outbox_id: int, attempt: dict[str, Any], *, status: str,
                              next_attempt_at: str | None = None) -> OutboxEntry:
        """Append ``attempt`` to the row's history, count it, and set its status (and, while it stays
        pending, when to try next). Raises KeyError for an unknown row."""
        conn = self._connection()
        with _translated("record_outbox_attempt"):
            row = conn.execute("SELECT history, next_attempt_at FROM outbox WHERE id = ?",
                               (outbox_id,)).fetchone()
            if row is None:
                raise KeyError(outbox_id)
            history = [*json.loads(row[0]), attempt]
            conn.execute("UPDATE outbox SET status = ?, attempts = attempts + 1, next_attempt_at = ?, "
                         "history = ? WHERE id = ?",
                         (status, next_attempt_at or row[1], _encode(history), outbox_id))
            updated = conn.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?",
                                   (outbox_id,)).fetchone()
        return _outbox(updated)


    # -- rules engine (adapter.rules) --------------------------------------------------------------------------
    # The resources of one person's records, this transaction's writes included (their index rows may still be
    # held back: _pending), so a rule sees the identity's whole state as the transaction will commit it.

    def _set_patients(self, key: tuple[str, str], patients: frozenset[str]) -> None:
        old = self._patients.get(key)
        if old == patients:
            return
        for pid in old or ():
            members = self._by_patient.get(pid)
            if members is not None:
                members.discard(key)
        for pid in patients:
            self._by_patient.setdefault(pid, set()).add(key)
        self._patients[key] = patients

    def resources_of_patients(self, resource_types: list[str], patient_ids: list[str]) -> list[StoredResource]:
        """The current version of every resource of these types whose subject, patient or participant actor
        (the ``patient`` search parameter) is one of these Patients, this transaction's writes included; in
        (type, id) order.  One seek per Patient in ``patient_ref`` (no scan): meant for one person's records."""
        wanted, types = set(patient_ids), set(resource_types)
        if not wanted or not types:
            return []
        # one seek per Patient id in patient_ref, each match's current version in the same statement; a resource
        # this transaction has read or written is taken from its cache instead (its rows may be held back)
        pmarks, tmarks = ",".join("?" * len(wanted)), ",".join("?" * len(types))
        sql = (f"SELECT p.type, p.id, {_VERSION_COLUMNS}, r.vrow FROM patient_ref p "
               "JOIN resource r ON r.type = p.type AND r.id = p.id JOIN resource_version v ON v.rowid = r.vrow "
               f"WHERE p.patient_id IN ({pmarks}) AND p.type IN ({tmarks})")
        args = [*sorted(wanted), *sorted(types)]
        found: set[tuple[str, str]] = set()
        with _translated("resources_of_patients"):
            for rtype, rid, *row in self._connection().execute(sql, args):
                key = (rtype, rid)
                if key not in self._current:
                    self._current[key] = tuple(row)
                    self._current_ids.setdefault(rtype, set()).add(rid)
                found.add(key)
        found = {key for key in found if key not in self._patients or self._patients[key] & wanted}
        for pid in wanted:
            found.update(key for key in self._by_patient.get(pid, ()) if key[0] in types)
        out = []
        for rtype, rid in sorted(found):
            stored = self.read(rtype, rid)
            if stored is not None:
                out.append(stored)
        return out


class SqliteStore:
    """``Store`` on one SQLite file, created (with its directory) if missing. See the module docstring."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", writer_cache_mb: int | None = None,
                 background_checkpoint: bool = True) -> None:
        """``writer_cache_mb``: page cache of the writer connection; bulk loads that batch hundreds of
        messages per transaction want tens of MB (SQLite's default, 2 MB, is best for one message per
        transaction). ``background_checkpoint``: WAL checkpoints in a thread of their own
        (adapter.store.checkpoint), not inside the commit that crosses the threshold."""
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError("SqliteStore needs a file path (each ':memory:' connection is its own database)")
        self._synchronous = synchronous.upper()
        if self._synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._writer_thread: int | None = None
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._idle_readers: deque[sqlite3.Connection] = deque()
        self._closed = False
        self._background_checkpoint = background_checkpoint
        self._checkpointer: Checkpointer | None = None  # started at the first commit
        try:
            with _translated("open"):
                self._writer = self._connect(writer=True)
                self._writer.execute("PRAGMA journal_mode = WAL")
                if writer_cache_mb:
                    self._writer.execute(f"PRAGMA cache_size = -{int(writer_cache_mb) * 1024}")
                self._migrate()
        except BaseException:
            self.close()
            raise

    # -- connections -----------------------------------------------------------------------------------------

    def _connect(self, *, writer: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            if writer:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                # with the checkpoint thread, SQLite's own is only a backstop; without it, 16 MB of log per
                # checkpoint (fewer syncs than the default 4 MB: ~7% faster)
                frames = BACKSTOP_FRAMES if self._background_checkpoint else 4000
                conn.execute(f"PRAGMA wal_autocheckpoint = {frames}")
            else:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _reader(self, what: str) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError("store is closed")
        try:
            conn = self._idle_readers.pop()
        except IndexError:
            with _translated("connect"):
                conn = self._connect()
        try:
            with _translated(what):
                yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._idle_readers.append(conn)

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(_SCHEMA):
                raise StoreError(f"database schema version {current} is newer than this Carethread supports")
            for statements in _SCHEMA[current:]:
                for statement in statements:
                    conn.execute(statement)
            if current < len(_SCHEMA):
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(_SCHEMA),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writes ----------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[_SqliteTransaction]:
        if self._writer_thread == threading.get_ident():
            raise RuntimeError("this thread already holds a transaction; use tx.savepoint() to nest")
        with self._write_lock:
            if self._closed:
                raise StoreError("store is closed")
            self._writer_thread = threading.get_ident()
            conn = self._writer
            tx = _SqliteTransaction(conn)
            try:
                with _translated("begin"):
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    yield tx
                except BaseException:
                    tx._open = False
                    if conn.in_transaction:
                        with _translated("rollback"):
                            conn.execute("ROLLBACK")
                    raise
                tx._open = False
                try:
                    with _translated("commit"):
                        tx._flush()
                        conn.execute("COMMIT")
                except StoreError:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                self._committed()
            finally:
                self._writer_thread = None

    def _committed(self) -> None:
        """Tell the checkpoint thread there is log to copy (starting it at the first commit)."""
        if not self._background_checkpoint:
            return
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self._path, self._synchronous, self._write_lock, owner=self)
        self._checkpointer.poke()

    # -- reads -----------------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        with self._reader("read") as conn:
            row = conn.execute(_CURRENT, (resource_type, resource_id)).fetchone()
        return None if row is None else _stored(*row[:4])

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        with self._reader("vread") as conn:
            row = conn.execute(
                f"{_VERSIONS} WHERE v.version_id = ?", (resource_type, resource_id, version_id)
            ).fetchone()
        return None if row is None else _stored(*row)

    def history(self, resource_type: str, resource_id: str) -> list[StoredResource]:
        with self._reader("history") as conn:
            rows = conn.execute(
                f"{_VERSIONS} ORDER BY v.version_id DESC", (resource_type, resource_id)
            ).fetchall()
        return [_stored(*row) for row in rows]

    def search(
        self, resource_type: str, params: list[tuple[str, str]], *, count: int, offset: int
    ) -> SearchResult:
        request = parse_search(resource_type, params)
        where = " AND ".join(["r.type = ?", *(f"({c.sql})" for c in request.criteria)])
        args: list[Any] = [resource_type]
        for criterion in request.criteria:
            args.extend(criterion.args)
        with self._reader("search") as conn:
            conn.execute("BEGIN")  # one snapshot for the count, the page and the includes
            total = conn.execute(f"SELECT count(*) FROM resource r WHERE {where}", args).fetchone()[0]
            matches = []
            if count > 0 and offset < total:
                # With criteria, "+" keeps SQLite from walking the whole type in resource_recent order and
                # testing each row (a full scan for a one-patient query): it starts from the matches and
                # sorts them. Without criteria, the index order is the page order.
                order = "+r.last_updated DESC, r.id" if request.criteria else "r.last_updated DESC, r.id"
                rows = conn.execute(
                    f"SELECT {_VERSION_COLUMNS} FROM resource r JOIN resource_version v ON v.rowid = r.vrow "
                    f"WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                    [*args, count, offset],
                ).fetchall()
                matches = [_stored(*row) for row in rows]
            included = _included(conn, matches, request.includes)
            conn.execute("COMMIT")
        return SearchResult(matches, total, included)

    def ids_matching(self, resource_type: str, *, date: tuple[str, str | None, str | None] | None = None,
                     tokens: list[tuple[str, str | None, str]] | tuple[()] = ()) -> list[str]:
        """Ids of the resources ``fields_matching`` finds, sorted."""
        return [row[0] for row in self.fields_matching(resource_type, (), date=date, tokens=tokens)]

    def fields_matching(self, resource_type: str, paths: tuple[str, ...] | list[str], *,
                        date: tuple[str, str | None, str | None] | None = None,
                        tokens: list[tuple[str, str | None, str]] | tuple[()] = ()) -> list[tuple[Any, ...]]:
        """Ids of the (committed) current resources of a type with a ``date`` index row ``(param, ge, le)``
        matching FHIR ``param=ge<ge>&param=le<le>`` (ISO dates, either may be None: the row ends on or after
        ``ge`` and starts on or before ``le``) and, for each ``tokens`` entry ``(param, system or None, code)``,
        that token: ``(id, *values)`` with the value of each JSON path (SQLite ``json_extract``, e.g.
        ``$.subject.reference``) in the current version, sorted by id. Index seeks only (dates are at most a
        year wide, so ``ge`` bounds the row's start too): no count, paging or parsing as ``search`` does; for
        the daily rules' candidates."""
        if date is None and not tokens:
            raise ValueError("fields_matching needs a date or a token")
        args: list[Any] = []
        where: list[str] = []
        if date is not None:
            param, ge, le = date
            source = "search_index d"
            where.append("d.type = ? AND d.param = ?")
            args += [resource_type, param]
            if ge is not None:
                low = date_range(ge)
                earliest = date_range((_date.fromisoformat(ge[:10]) - timedelta(days=367)).isoformat())
                if low is None or earliest is None:
                    raise ValueError("ge must be an ISO date")
                where.append("d.value >= ? AND d.high >= ?")
                args += [earliest[0], low[0]]
            if le is not None:
                high = date_range(le)
                if high is None:
                    raise ValueError("le must be an ISO date")
                where.append("d.value <= ?")
                args.append(high[1])
            checks = list(tokens)
        else:
            param, system, code = tokens[0]
            source = "search_index d"
            where.append("d.type = ? AND d.param = ? AND d.value = ?")
            args += [resource_type, param, code]
            if system is not None:
                where.append("d.system = ?")
                args.append(system)
            checks = list(tokens[1:])
        for param, system, code in checks:
            where.append("EXISTS (SELECT 1 FROM search_index t WHERE t.type = d.type AND t.param = ? "
                         f"AND t.value = ? AND t.id = d.id{' AND t.system = ?' if system is not None else ''})")
            args += [param, code, *([system] if system is not None else [])]
        sql = f"SELECT DISTINCT d.id FROM {source} WHERE {' AND '.join(where)}"
        if paths:
            extract = ", ".join("json_extract(v.content, ?)" for _ in paths)
            sql = (f"SELECT m.id, {extract} FROM ({sql}) m JOIN resource r ON r.type = ? AND r.id = m.id "
                   "JOIN resource_version v ON v.rowid = r.vrow")
            args = [*paths, *args, resource_type]
        with self._reader("fields_matching") as conn:
            return conn.execute(f"{sql} ORDER BY 1", args).fetchall()

    def inbound(self, archive_id: int) -> InboundMessage | None:
        with self._reader("inbound") as conn:
            row = conn.execute(
                f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE id = ?", (archive_id,)
            ).fetchone()
        return None if row is None else _inbound(row)

    def list_inbound(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[InboundMessage]:
        where, args = ("WHERE status = ?", [status]) if status is not None else ("", [])
        with self._reader("list_inbound") as conn:
            rows = conn.execute(
                f"SELECT {_INBOUND_COLUMNS} FROM inbound {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_inbound(row) for row in rows]

    # -- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Idempotent; the store is unusable afterwards."""
        if self._checkpointer is not None:  # before taking the write lock: its last pass may want it
            self._checkpointer.stop()
        with self._write_lock:
            self._closed = True
            with self._connections_lock:
                connections, self._connections = self._connections, []
            self._idle_readers.clear()
            for conn in connections:
                conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- notification outbox --------------------------------------------------------------------------------

    def due_outbox(self, now: str, *, limit: int = 50) -> list[OutboxEntry]:
        """Pending deliveries whose next attempt is due at ``now`` (an instant as the outbox stores them),
        soonest first."""
        with self._reader("due_outbox") as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?", (now, limit)).fetchall()
        return [_outbox(row) for row in rows]

    def next_outbox_due(self) -> str | None:
        """When the soonest pending delivery is due; None when nothing is pending."""
        with self._reader("next_outbox_due") as conn:
            row = conn.execute("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()
        return None if row is None else row[0]

    def list_outbox(self, *, communication_id: str | None = None, status: str | None = None,
                    limit: int = 100) -> list[OutboxEntry]:
        """Delivery rows, oldest first, optionally of one Communication and/or with one status."""
        where, args = [], []
        if communication_id is not None:
            where.append("communication_id = ?")
            args.append(communication_id)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._reader("list_outbox") as conn:
            rows = conn.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox {clause}ORDER BY id LIMIT ?",
                                [*args, limit]).fetchall()
        return [_outbox(row) for row in rows]
