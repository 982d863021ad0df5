"""The one place stages are chained and I/O happens:

    bytes -> archive -> parse + header checks -> map -> merge with stored -> validate -> store -> Outcome -> ACK

The archive row, the resources and the outcome commit in one transaction, so an ``AA`` is only sent
for a message whose every derived resource is on disk; a rejected message is archived all the same
(status ``AE``/``AR``) and can be replayed.  A store failure raises StoreError: nothing is
acknowledged and the sender will resend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from adapter.conformance import ProfileSet, ValidationIssue, load_profiles, outcome
from adapter.errors import AdapterError, InboundError, MappingError, ParseError, StoreError
from adapter.fhir import validate_r4
from adapter.inbound.ack import build_ack
from adapter.inbound.er7 import Er7Message
from adapter.inbound.export import ExportFile, Row, read_rows, row_control_id
from adapter.identity import IdentityService
from adapter.inbound.gpconnect import read_bundle
from adapter.inbound.hl7v2 import Header, read_message, sniff_header
from adapter.notify.communications import notify
from adapter.mapping import MappingContext, MappingSet, load_mappings, map_message, map_record
from adapter.records import Issue, Outcome, issue_from_error
from adapter.rules import RulesEngine, load_rules
from adapter.settings import Settings
from adapter.store.base import Store, StoredResource, Transaction

__all__ = ["Pipeline", "Processed", "RowResult", "BundleResult", "merge_resource", "HEALTH_VISITING", "GP", "MATERNITY"]

MATERNITY, HEALTH_VISITING, GP = "maternity", "health-visiting", "gp"
_T = TypeVar("_T")

_log = logging.getLogger("carethread.pipeline")

# Elements whose list accumulates across messages instead of being replaced (v2 sends full lists
# for everything else: an absent field means "no information", so it never deletes).
_ACCUMULATE = {"Patient": ("link",)}
# Elements the mapping derives from another element of the same message: they come from whichever
# message supplied that element, even by their absence (the attendance outcome exists only while
# the status is noshow).
_DERIVED = {"Appointment": {"extension": "status"}}


@dataclass(frozen=True, slots=True)
class Processed:
    outcome: Outcome
    header: Header | None

    @property
    def ack(self) -> bytes | None:
        """The ACK to send (built on demand: bulk ingest never needs it); None for an ACK we received."""
        return None if self.outcome.ack_code is None else build_ack(self.outcome, self.header)


def merge_resource(stored: dict[str, Any] | None, incoming: dict[str, Any], stored_time: str | None,
                   incoming_time: str | None) -> dict[str, Any]:
    """Top-level merge: the newer message wins element by element; the older one only fills gaps."""
    if stored is None:
        return incoming
    base = {k: v for k, v in stored.items() if k != "meta"}
    incoming_is_older = bool(stored_time and incoming_time and incoming_time < stored_time)
    if incoming_is_older:
        merged = {**incoming, **base, "meta": stored.get("meta", incoming.get("meta"))}
    else:
        merged = {**base, **incoming}
    for key, source in _DERIVED.get(incoming["resourceType"], {}).items():
        decided_by_incoming = source in incoming and (not incoming_is_older or source not in base)
        origin = incoming if decided_by_incoming else base
        if key in origin:
            merged[key] = origin[key]
        else:
            merged.pop(key, None)
    for key in _ACCUMULATE.get(incoming["resourceType"], ()):
        items = list(stored.get(key, []))
        items += [x for x in incoming.get(key, []) if x not in items]
        if items:
            merged[key] = items
    meta = dict(merged.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    merged["meta"] = meta
    return merged


# meta elements that say which message wrote a version, not what the resource says
_BOOKKEEPING_META = ("versionId", "lastUpdated", "source")


def _same_content(stored: dict[str, Any], merged: dict[str, Any]) -> bool:
    """Equal apart from bookkeeping: the store's meta.versionId / meta.lastUpdated, and meta.source
    (the message that produced the stored version keeps the credit: a resend with the same data under
    another control id adds no version; its Provenance still names the resource)."""
    if stored.keys() != merged.keys():
        return False
    for key, value in merged.items():
        if key == "meta":
            old = {k: v for k, v in stored.get("meta", {}).items() if k not in _BOOKKEEPING_META}
            new = {k: v for k, v in (value or {}).items() if k not in _BOOKKEEPING_META}
            if old != new:
                return False
        elif stored[key] != value:
            return False
    return True


@dataclass(frozen=True, slots=True)
class RowResult:
    """What became of one row of an export."""

    file: str
    line: int  # where the row starts (a CSV header is line 1)
    feed: str | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class BundleResult:
    """What became of one GP bundle, and the HTTP status that says so."""

    outcome: Outcome
    http_status: int  # 200 stored (entries may still have errors), 400 unreadable, 422 no usable Patient


def _only_targets(provenance: dict[str, Any], written: list[tuple[str, str]]) -> dict[str, Any]:
    if provenance.get("resourceType") != "Provenance":
        return provenance
    kept = {f"{t}/{i}" for t, i in written}
    return {**provenance, "target": [t for t in provenance.get("target", []) if t.get("reference") in kept]}


def _row_from_archive(payload: bytes) -> Row:
    data = json.loads(payload)
    record = data.get("record")
    ok = isinstance(record, dict) and data.get("feed")
    return Row(data.get("feed"), data.get("file", ""), int(data.get("line", 0)), record if ok else None, payload,
               None if ok else ParseError("the archived row could not be read", code="malformed-row"))


def _patient_refs(resource: dict[str, Any]) -> Iterator[str]:
    """Ids of the Patients a resource is about (subject, patient, participant actors)."""
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference", "") if isinstance(resource.get(key), dict) else ""
        if isinstance(ref, str) and ref.startswith("Patient/"):
            yield ref[8:]
    for participant in resource.get("participant", ()) if resource["resourceType"] == "Appointment" else ():
        ref = (participant.get("actor") or {}).get("reference", "") if isinstance(participant, dict) else ""
        if isinstance(ref, str) and ref.startswith("Patient/"):
            yield ref[8:]


class _RollBack(Exception):
    """Ends a dry run's transaction without committing it."""


class _Pending:
    """What a message stored that identity reconciliation and the rules have still to see: each Patient
    once (its source, and the RelatedPersons stored with it, newest first: the mother's identifiers), and the
    Patients the stored resources are about (the rules run on their identities)."""

    __slots__ = ("patients", "about")

    def __init__(self) -> None:
        self.patients: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self.about: dict[str, None] = {}

    def add(self, resources: list[dict[str, Any]], source: str) -> None:
        related = [r for r in resources if r["resourceType"] == "RelatedPerson"]
        for resource in resources:
            if resource["resourceType"] == "Patient":
                pid = resource["id"]
                known = self.patients.get(pid)
                self.patients[pid] = (known[0], related + known[1]) if known else (source, related)
                self.about.setdefault(pid, None)
            for ref in _patient_refs(resource):
                self.about.setdefault(ref, None)


class Pipeline:
    """Every source's processing against one store: maternity HL7 v2 messages, health visiting export
    rows, GP Connect bundles."""

    source = MATERNITY

    def __init__(self, store: Store, settings: Settings, mappings: MappingSet | None = None,
                 profiles: ProfileSet | None = None) -> None:
        self.store = store
        self.settings = settings
        self.profiles = profiles or load_profiles()
        self.tz = ZoneInfo(settings.timezone)
        # both checked at start-up: a bad mapping or profile file stops the process (ConfigError)
        self.mappings = mappings or load_mappings(overlay=settings.mappings_dir)
        self.accepted_processing_ids = frozenset(p.upper() for p in settings.accepted_processing_ids)
        self.events = self.mappings.events()  # what the (possibly overlaid) mapping files handle
        self.identity = IdentityService(alert=self._identity_alert)  # the linkage model, checked at start-up
        # every "now" of the safeguarding rules (the sandbox moves it); the rules checked at start-up
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.rules = RulesEngine(load_rules(settings.rules), put=self._put_derived, check=self.check_resource,
                                 reconcile_derived=self._reconcile_derived)
        self._local = threading.local()  # .pending: the _Pending of the message being processed (_settled)

    # --- entry points -------------------------------------------------------------------------------

    def process(self, payload: bytes, *, channel: str, replay_of: int | None = None) -> Processed:
        """One message, one transaction (MLLP, HTTP, replay)."""
        try:
            with self.store.transaction() as tx:
                return self._process_in(tx, payload, channel, replay_of)
        except StoreError as exc:  # the store is unavailable: acknowledge nothing
            _log.error("store failure while processing a %s message: %s", channel, type(exc).__name__)
            raise StoreError("the message store is unavailable") from None

    def process_many(self, payloads: Iterable[bytes], *, channel: str = "file") -> Iterator[Processed]:
        """Bulk: many messages per transaction (one savepoint each), so the fsync cost is shared."""
        batch: list[bytes] = []
        size = max(1, self.settings.ingest_batch_size)
        for payload in payloads:
            batch.append(payload)
            if len(batch) >= size:
                yield from self._batch(batch, channel)
                batch = []
        if batch:
            yield from self._batch(batch, channel)

    def dry_run(self, payloads: list[bytes]) -> tuple[list[Processed], list[dict[str, Any]]]:
        """What ingesting ``payloads`` would do and store, without storing anything: the real
        processing in a transaction that is rolled back.  Returns each message's outcome and the
        resources as they would be stored (merged with what is already there)."""
        results: list[Processed] = []
        would_store: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            with self.store.transaction() as tx:
                for payload in payloads:
                    processed = self._process_in(tx, payload, "dry-run", None)
                    results.append(processed)
                    for rtype, rid in processed.outcome.resources:
                        stored = tx.read(rtype, rid)
                        if stored is not None:
                            would_store[(rtype, rid)] = stored.resource
                raise _RollBack
        except _RollBack:
            pass
        return results, list(would_store.values())

    def replay(self, archive_id: int) -> Processed:
        """Process an archived payload again, by the source it came from."""
        record = self.store.inbound(archive_id)
        if record is None:
            raise KeyError(archive_id)
        if record.source == HEALTH_VISITING:
            row = _row_from_archive(record.payload)
            return Processed(self._in_transaction(lambda tx: self._row_in(tx, row, "replay", archive_id)), None)
        if record.source == GP:
            return Processed(self.process_bundle(record.payload, channel="replay", replay_of=archive_id).outcome,
                             None)
        return self.process(record.payload, channel="replay", replay_of=archive_id)

    # --- health visiting: tabular exports, one row at a time ----------------------------------------------

    def ingest_export(self, files: list[ExportFile], *, channel: str = "file") -> Iterator[RowResult]:
        """Every row of an export, in feed order, many rows per transaction (one savepoint each).  A bad
        row is archived and reported at its file, line and column; the rest of the export goes on."""
        rows = read_rows(files, self.mappings.feeds_of(HEALTH_VISITING))
        size = max(1, self.settings.ingest_batch_size)
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= size:
                yield from self._row_batch(batch, channel)
                batch = []
        if batch:
            yield from self._row_batch(batch, channel)

    def _row_batch(self, batch: list[Row], channel: str) -> list[RowResult]:
        def run(tx: Transaction) -> list[RowResult]:
            return [RowResult(r.file, r.line, r.feed, self._row_in(tx, r, channel, None)) for r in batch]
        return self._in_transaction(run)

    def _in_transaction(self, work: Callable[[Transaction], _T]) -> _T:
        try:
            with self.store.transaction() as tx:
                return work(tx)
        except StoreError as exc:
            _log.error("store failure: %s", type(exc).__name__)
            raise StoreError("the message store is unavailable") from None

    def _row_in(self, tx: Transaction, row: Row, channel: str, replay_of: int | None) -> Outcome:
        def archive(status: str, control_id: str | None, error: AdapterError | None = None) -> int:
            archive_id = tx.archive(channel=channel, source=HEALTH_VISITING, sender=row.feed, control_id=control_id,
                                    payload=row.raw, status=status, replay_of=replay_of)
            if error is not None:
                where = f"{row.file}:{row.line}" + (f" {error.location}" if error.location else "")
                tx.set_status(archive_id, status, error_code=error.code, error_location=where)
            return archive_id

        if row.error is not None or row.feed is None or row.record is None:
            err = row.error or ParseError("the row cannot be read", code="malformed-row")
            _log.info("rejected row code=%s line=%s", err.code, row.line)
            return Outcome("AR", archive("AR", None, err), (Issue(err.code, None, err.message),))
        control_id = row_control_id(row.feed, row.record)
        if tx.find_accepted(HEALTH_VISITING, row.feed, control_id) is not None:
            return Outcome("duplicate", archive("duplicate", control_id))
        error: AdapterError
        try:
            with tx.savepoint():
                with self._settled(tx):
                    mapped = map_record(self.mappings, row.feed, row.record,
                                        self._context(tx, HEALTH_VISITING, control_id))
                    self._check_person(tx, row.feed, mapped.resources)
                    written, changed = self._store_resources(tx, mapped.resources, mapped.source_time,
                                                             HEALTH_VISITING)
                archive_id = archive("AA", control_id)
            return Outcome("AA", archive_id, tuple(mapped.warnings), tuple(written), changed, mapped.trace)
        except StoreError:
            raise
        except MappingError as exc:
            _log.info("row not applied code=%s line=%s location=%s", exc.code, row.line, exc.location)
            error = exc
        except (AdapterError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            _log.exception("internal error while mapping a row (%s)", type(exc).__name__)
            error = AdapterError("internal error while mapping", code="internal-error")
        return Outcome("AE", archive("AE", control_id, error), (issue_from_error(error),))

    # --- GP: GP Connect STU3 bundles, one entry at a time -------------------------------------------------

    def process_bundle(self, payload: bytes, *, channel: str, practice: str | None = None,
                       replay_of: int | None = None) -> BundleResult:
        """One GP Connect bundle, one transaction.  Invalid JSON or not a bundle: rejected whole (400); no
        Patient, or the Patient itself invalid: rejected whole (422); an entry that cannot be converted or
        stored: reported at ``Bundle.entry[i]`` while the others are stored (archived ``AE`` for replay)."""
        return self._in_transaction(lambda tx: self._bundle_in(tx, payload, channel, practice, replay_of))

    def _bundle_in(self, tx: Transaction, payload: bytes, channel: str, practice: str | None,
                   replay_of: int | None) -> BundleResult:
        control_id = hashlib.sha256(payload).hexdigest()

        def archive(status: str, sender: str | None, error: AdapterError | None = None) -> int:
            archive_id = tx.archive(channel=channel, source=GP, sender=sender, control_id=control_id, payload=payload,
                                    status=status, replay_of=replay_of)
            if error is not None:
                tx.set_status(archive_id, status, error_code=error.code, error_location=error.location)
            return archive_id

        ctx = self._context(tx, GP, control_id)
        try:
            bundle = read_bundle(payload, self.mappings, tz=self.tz, practice=practice, birth_date_of=ctx.birth_date_of)
        except InboundError as exc:
            _log.info("rejected bundle code=%s location=%s", exc.code, exc.location)
            return BundleResult(Outcome("AR", archive("AR", practice, exc), (issue_from_error(exc),)), 400)
        except MappingError as exc:
            _log.info("bundle not applied code=%s location=%s", exc.code, exc.location)
            return BundleResult(Outcome("AE", archive("AE", practice, exc), (issue_from_error(exc),)), 422)
        sender = bundle.practice
        if tx.find_accepted(GP, sender, control_id) is not None:
            return BundleResult(Outcome("duplicate", archive("duplicate", sender)), 200)
        if bundle.patient_id is None and (not bundle.patient_ref or
                                          tx.read("Patient", bundle.patient_ref.removeprefix("Patient/")) is None):
            err = MappingError("the bundle has no Patient and names none already known", code="no-patient",
                               location="Bundle")
            return BundleResult(Outcome("AE", archive("AE", sender, err), (issue_from_error(err),)), 422)
        issues: list[Issue] = []
        written: list[tuple[str, str]] = []
        changed = 0
        try:
            with tx.savepoint(), self._settled(tx):  # the Patient failing undoes the whole bundle
                for entry in bundle.entries:
                    issues += entry.issues
                    if any(i.severity == "E" for i in entry.issues) or not entry.resources:
                        continue
                    resources = entry.resources
                    if entry.index is None:  # the bundle's Provenance: only what was stored
                        resources = [_only_targets(r, written) for r in resources]
                    is_patient = any(r["resourceType"] == "Patient" and r["id"] == bundle.patient_id
                                     for r in resources)
                    try:
                        with tx.savepoint():
                            w, c = self._store_resources(tx, resources, bundle.source_time, GP)
                    except MappingError as exc:
                        where = f"Bundle.entry[{entry.index}]" if entry.index is not None else "Bundle"
                        if is_patient:
                            raise MappingError(exc.message, code=exc.code, location=where) from None
                        issues.append(Issue(exc.code, f"{where} {exc.location or ''}".strip(), exc.message))
                        continue
                    written += w
                    changed += c
        except MappingError as exc:
            _log.info("bundle not applied: its Patient code=%s", exc.code)
            return BundleResult(Outcome("AE", archive("AE", sender, exc), (issue_from_error(exc),)), 422)
        errors = [i for i in issues if i.severity == "E"]
        first = MappingError(errors[0].message, code=errors[0].code, location=errors[0].location) if errors else None
        status = "AE" if errors else "AA"
        return BundleResult(Outcome(status, archive(status, sender, first), tuple(issues), tuple(written), changed),
                            200)

    def _context(self, tx: Transaction, source: str, control_id: str, sending_facility: str = "") -> MappingContext:
        def birth_date_of(patient_id: str) -> str | None:
            stored = tx.read("Patient", patient_id)
            return stored.resource.get("birthDate") if stored else None

        return MappingContext(source=source, sending_facility=sending_facility, control_id=control_id, tz=self.tz,
                              codes=self.mappings.codes, birth_date_of=birth_date_of, mappings=self.mappings)

    def _check_person(self, tx: Transaction, feed: str, resources: list[dict[str, Any]]) -> None:
        """A row about a person (``person:`` in its feed file) needs that person: produced by the row
        itself or already stored (an earlier row, file or export).  Else the row is rejected there."""
        column = self.mappings.files[self.mappings.feeds[feed].name].model.person
        if column is None:
            return
        produced = {r["id"] for r in resources if r["resourceType"] == "Patient"}
        for resource in resources:
            for ref in _patient_refs(resource):
                if ref not in produced and tx.read("Patient", ref) is None:
                    raise MappingError("no person with this local id in this or an earlier export",
                                       code="unknown-person", location=column)
                produced.add(ref)

    # --- internals ----------------------------------------------------------------------------------

    def _batch(self, batch: list[bytes], channel: str) -> list[Processed]:
        try:
            with self.store.transaction() as tx:
                return [self._process_in(tx, p, channel, None) for p in batch]
        except StoreError as exc:
            _log.error("store failure during a %s batch: %s", channel, type(exc).__name__)
            raise StoreError("the message store is unavailable") from None

    def _process_in(self, tx: Transaction, payload: bytes, channel: str, replay_of: int | None) -> Processed:
        """Archive and process one payload inside ``tx``.  The archive row is written with the final
        status in the same transaction as the resources, so it is on disk before any ACK."""
        header: Header | None = None
        try:
            msg, header = read_message(payload, accepted_processing_ids=self.accepted_processing_ids,
                                       events=self.events)
        except InboundError as exc:
            header = sniff_header(payload)
            _log.info("rejected message code=%s location=%s", exc.code, exc.location)
            archive_id = self._archive(tx, payload, header, channel, replay_of, "AR", exc)
            return Processed(Outcome("AR", archive_id, (issue_from_error(exc),)), header)
        if header.is_ack:
            return Processed(Outcome("ignored", self._archive(tx, payload, header, channel, replay_of, "ignored")),
                             header)
        if tx.find_accepted(self.source, header.sender, header.control_id) is not None:
            archive_id = self._archive(tx, payload, header, channel, replay_of, "duplicate")
            return Processed(Outcome("duplicate", archive_id), header)
        error: AdapterError | None = None
        try:
            with tx.savepoint():
                with self._settled(tx):
                    outcome = self._apply(tx, msg, header)
                archive_id = self._archive(tx, payload, header, channel, replay_of, "AA")
            return Processed(outcome.with_archive(archive_id), header)
        except StoreError:
            raise
        except MappingError as exc:
            _log.info("message not applied code=%s location=%s", exc.code, exc.location)
            error = exc
        except (AdapterError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # a defect in a mapping must not take the listener down: archive, report, keep going
            _log.exception("internal error while mapping (%s)", type(exc).__name__)
            error = AdapterError("internal error while mapping", code="internal-error")
        archive_id = self._archive(tx, payload, header, channel, replay_of, "AE", error)
        return Processed(Outcome("AE", archive_id, (issue_from_error(error),)), header)

    def _archive(self, tx: Transaction, payload: bytes, header: Header | None, channel: str,
                 replay_of: int | None, status: str, error: AdapterError | None = None) -> int:
        archive_id = tx.archive(channel=channel, source=self.source, sender=header.sender if header else None,
                                control_id=(header.control_id or None) if header else None, payload=payload,
                                status=status, replay_of=replay_of)
        if error is not None:
            tx.set_status(archive_id, status, error_code=error.code, error_location=error.location)
        return archive_id

    def _apply(self, tx: Transaction, msg: Er7Message, header: Header) -> Outcome:
        ctx = self._context(tx, self.source, header.control_id, header.sending_facility)
        mapped = map_message(msg, header, ctx)
        written, changed = self._store_resources(tx, mapped.resources, mapped.source_time, self.source)
        return Outcome("AA", None, tuple(mapped.warnings), tuple(written), changed, mapped.trace)

    def _store_resources(self, tx: Transaction, resources: list[dict[str, Any]], source_time: str | None,
                         source: str) -> tuple[list[tuple[str, str]], int]:
        """Merge each resource with its stored version, validate what changed, write it; identity
        reconciliation and the rules follow at the end of the message (``_settled``).  Every source
        ends here: one merge rule, one validation, one write path, one identity step."""
        pending: _Pending | None = getattr(self._local, "pending", None)
        if pending is None:
            raise RuntimeError("resources are stored inside _settled (one message's processing)")
        written, changed = self._merge_and_put(tx, resources, source_time)
        pending.add(resources, source)
        return written, changed

    @contextmanager
    def _settled(self, tx: Transaction) -> Iterator[None]:
        """Identity reconciliation and the safeguarding rules for everything one message (an HL7 v2 message, an
        export row, a GP bundle) stored, run once at its end, in its transaction (so an ACK still means all of
        it is committed): a GP bundle's Patient is reconciled and its identity evaluated once, not after each
        of its entries.  Never across messages: a later message may overwrite what an earlier one said (an
        appointment's no-show rescheduled under the same id), and the rules must have seen each message's
        state, in bulk as over MLLP (tests/rules/test_batch_equivalence.py).  On an exception nothing is
        settled: the message's savepoint is rolled back."""
        if getattr(self._local, "pending", None) is not None:
            raise RuntimeError("one message at a time: _settled does not nest")
        pending = self._local.pending = _Pending()
        try:
            yield
        finally:
            self._local.pending = None
        self._settle(tx, pending)

    def _settle(self, tx: Transaction, pending: _Pending) -> None:
        for pid, (source, related) in pending.patients.items():
            self._reconcile(tx, pid, source, related)
        self._run_rules(tx, list(pending.about))

    def _run_rules(self, tx: Transaction, patient_ids: list[str]) -> None:
        """The safeguarding rules (adapter.rules) on each identity of these Patients, in the transaction."""
        if not patient_ids:
            return
        now = self.clock()
        for identity_id in self.rules.identities_of_patients(tx, patient_ids):
            try:
                with tx.savepoint():
                    self.rules.evaluate(tx, identity_id, now)
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - a rule defect must not lose the record: stored, logged
                _log.exception("safeguarding rules failed for identity %s (%s)", identity_id, type(exc).__name__)

    def _reconcile_derived(self, tx: Transaction, patient: dict[str, Any]) -> None:
        """A Patient the rules derived (a father known only as a RelatedPerson) joins identity reconciliation."""
        self.identity.reconcile(tx, patient, "derived", [], lambda r: self._put_derived(tx, r))

    def _reconcile(self, tx: Transaction, patient_id: str, source: str, related: list[dict[str, Any]]) -> None:
        stored = tx.read("Patient", patient_id)
        if stored is None:
            return
        try:
            with tx.savepoint():
                self.identity.reconcile(tx, stored.resource, source, related, lambda r: self._put_derived(tx, r))
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed match must not lose the record: stored, not linked
            _log.exception("identity reconciliation failed (%s): the record is stored unlinked", type(exc).__name__)

    def _put_derived(self, tx: Transaction, resource: dict[str, Any]) -> None:  # also the rules' writer
        """Store a resource Carethread derived (master Patients, links, review Tasks): validated, written
        as given (no merge with the stored version: the deriving code read it), unless unchanged."""
        stored = tx.read(resource["resourceType"], resource["id"])
        if stored is not None and _same_content(stored.resource, resource):
            return
        self.check_resource(resource)
        tx.put(resource, source_time=stored.source_time if stored else None)

    def review_decision(self, body: bytes, task: dict[str, Any], decision: str) -> StoredResource | None:
        """A reviewer's decision on an identity-review Task (PUT): archived, the Task stored and the decision
        applied in one transaction.  The candidates are the stored Task's, not the client's.  None: no such
        review Task.  A Task decided before is updated, not applied again."""
        def work(tx: Transaction) -> StoredResource | None:
            current = tx.read("Task", task["id"])
            if current is None or "identity-review" not in json.dumps(current.resource.get("code")):
                return None
            archive_id = tx.archive(channel="http", source="api", sender=None, control_id=None, payload=body)
            if current.resource.get("status") == "requested":
                applied = self.identity.resolve_review(tx, current.resource, decision,
                                                       lambda r: self._put_derived(tx, r))
                if applied is not None:  # identities joined: the rules see all of the person's records now
                    self._run_rules(tx, [applied.patient_id])
            stored, _ = tx.put(task)
            tx.set_status(archive_id, "AA")
            return stored
        return self._in_transaction(work)

    def _identity_alert(self, tx: Transaction, subject_ref: str, flag_refs: list[str], dedup_key: str) -> None:
        """A possible match that carries a safeguarding flag: tell the safeguarding team, merge nothing."""
        try:
            with tx.savepoint():
                notify(tx, rule_id="identity-review-flag-alert", recipients=["safeguarding-team"],
                       subject_ref=subject_ref, payload_refs=flag_refs, priority="urgent",
                       reason_display="Possible linked record with a safeguarding flag: identity review needed",
                       sent=datetime.now(UTC).isoformat(timespec="seconds"), dedup_key=dedup_key,
                       check=self.check_resource)
        except ValueError as exc:  # no safeguarding team configured: the review Task still stands
            _log.warning("identity alert not raised (%s)", type(exc).__name__)

    def _merge_and_put(self, tx: Transaction, resources: list[dict[str, Any]],
                       source_time: str | None) -> tuple[list[tuple[str, str]], int]:
        written: list[tuple[str, str]] = []
        changed = 0
        for resource in resources:
            stored = tx.read(resource["resourceType"], resource["id"])
            merged = merge_resource(stored.resource if stored else None, resource,
                                    stored.source_time if stored else None, source_time)
            written.append((resource["resourceType"], resource["id"]))
            if stored is not None and _same_content(stored.resource, merged):
                continue  # nothing new: already validated and stored
            self.check_resource(merged)
            newest = max((t for t in (stored.source_time if stored else None, source_time) if t), default=None)
            _, did_change = tx.put(merged, source_time=newest)
            changed += did_change
        return written, changed

    def _profile_issues(self, resource: dict[str, Any]) -> list[ValidationIssue]:
        """Our profile for the type (UK Core where we have none); the resource is R4-valid already."""
        return self.profiles.validate(resource, self.profiles.default_profile(str(resource.get("resourceType"))))

    def resource_issues(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """OperationOutcome issues for a resource (API writes): R4 structure first, then the profile."""
        try:
            validate_r4(resource)
        except MappingError as exc:
            return [{"severity": "error", "code": "structure", "diagnostics": exc.message,
                     "expression": [exc.location or resource.get("resourceType", "Resource")]}]
        return outcome(self._profile_issues(resource))["issue"]  # type: ignore[no-any-return]

    def check_resource(self, resource: dict[str, Any]) -> None:
        """Every resource the pipeline stores passes R4 structure and its profile; else MappingError
        (ACK AE) naming the first error's FHIRPath location."""
        validate_r4(resource)
        errors = [i for i in self._profile_issues(resource) if i.severity == "error"]
        if errors:
            raise MappingError(f"{resource['resourceType']} does not conform to its profile ({errors[0].code})",
                               code="invalid-resource", location=errors[0].expression)

    def ack_for_oversize(self, head: bytes, size: int) -> Processed:
        """An MLLP frame over the size limit: archive its head, reject it (AR)."""
        header = sniff_header(head)
        err = ParseError(f"message of {size} bytes exceeds the maximum frame size", code="message-too-large")
        with self.store.transaction() as tx:
            archive_id = self._archive(tx, head, header, "mllp", None, "AR", err)
        return Processed(Outcome("AR", archive_id, (issue_from_error(err),)), header)
