"""Notifications: a FHIR ``Communication`` (CarethreadCommunication) per recipient organisation, and the
outbox rows that deliver it, written in the caller's transaction.

    with store.transaction() as tx:
        ...                                   # the rule's own result (its Flag, say)
        notify(tx, rule_id="adult-setting-presentation", recipients=["safeguarding-team"],
               subject_ref="Patient/<master id>", payload_refs=["Flag/<id>", "Encounter/<id>"],
               priority="urgent", reason_display="16-17 year old with safeguarding history in adult A&E",
               sent="2026-11-26T08:00:00+00:00", dedup_key="<what makes this occurrence unique>")
    # committed: the Communications, the rule's result and the outbox rows together, or none of them

Each Communication:

* id ``communication_id(rule_id, dedup_key, ODS code)``: a re-run of the rule for the same occurrence finds it
  and writes nothing (not even when ``sent`` or the wording differ): a notification is sent once;
* ``meta.profile`` CarethreadCommunication; ``status`` ``in-progress`` until delivery settles it
  (``completed`` with ``received``, or ``not-done`` with ``statusReason``: adapter.notify.delivery);
* ``category`` communication-category#notification, ``priority`` (routine | urgent | asap | stat),
  ``subject`` (a Patient), ``recipient`` (one configured Organization), ``sent``;
* ``reasonCode``: the rule, ``https://fhir.carethread.org/CodeSystem/safeguarding-rule#<rule_id>`` with the
  CodeSystem's display, and ``reason_display`` as its text (the caller's words: no names or identifiers);
* ``payload``: one ``contentReference`` per ``payload_refs`` entry, the Flag first by convention (the profile
  requires a Flag among them).

Every reference must be ``Type/id`` of a resource that exists (in this transaction or before): a
notification never points at nothing. Each Communication is validated (R4 structure and its profile) by
``check`` before ``tx.put``: ``check`` defaults to ``default_check`` (profiles loaded once per process); a
pipeline passes its own ``Pipeline.check_resource``. Bad arguments raise ValueError (UnknownRecipient for a
recipient nobody is configured for), an invalid resource MappingError: either way the caller's transaction
should roll back.

Then every live Subscription (adapter.notify.subscriptions) whose criteria match the new Communication gets an
outbox row, due at once. Only Communications created here are notified: a Communication written through the
API, and the status updates delivery makes, trigger nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from adapter.conformance import ProfileSet, load_profiles
from adapter.conformance.validator import DEFAULT_PROFILES_DIR
from adapter.errors import MappingError
from adapter.fhir import CT, validate_r4
from adapter.notify.organisations import resolve_recipients
from adapter.notify.subscriptions import (
    Criteria,
    CriteriaError,
    endpoint_problem,
    header_problem,
    is_live,
    parse_criteria,
    payload_problem,
)
from adapter.store.base import Transaction
from adapter.store.search import parse_reference

__all__ = [
    "COMMUNICATION_PROFILE",
    "PRIORITIES",
    "RULE_SYSTEM",
    "SubscriptionCache",
    "Check",
    "add_waker",
    "communication_id",
    "default_check",
    "instant",
    "notify",
    "remove_waker",
    "rule_codes",
]

_log = logging.getLogger("carethread.notify")

Check = Callable[[dict[str, Any]], None]  # raises (MappingError) for a resource that must not be stored

COMMUNICATION_PROFILE = f"{CT}/StructureDefinition/CarethreadCommunication"
RULE_SYSTEM = f"{CT}/CodeSystem/safeguarding-rule"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-category"
PRIORITIES = ("routine", "urgent", "asap", "stat")  # R4 request-priority (required binding)
_RULE_FILE = DEFAULT_PROFILES_DIR / "codesystems" / "CodeSystem-safeguarding-rule.json"


@cache
def rule_codes() -> dict[str, str]:
    """The safeguarding rule ids (code -> display) of CodeSystem/safeguarding-rule."""
    data = json.loads(_RULE_FILE.read_text(encoding="utf-8"))
    return {c["code"]: c["display"] for c in data["concept"]}


_NAMESPACE = uuid.UUID("a3f1c7e2-5d64-4b8e-9c2a-1e7b0d4f6a93")  # Carethread notifications', fixed forever


def communication_id(rule_id: str, dedup_key: str, ods: str) -> str:
    """Deterministic (uuid5 of the three): the same rule, occurrence and recipient always give the same
    Communication id."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((rule_id, dedup_key, ods))))


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC as the outbox stores and compares them (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


_profiles: ProfileSet | None = None
_profiles_lock = threading.Lock()


def default_check(resource: dict[str, Any]) -> None:
    """R4 structure, then the type's profile (ours, else UK Core): what ``Pipeline.check_resource`` does."""
    global _profiles
    validate_r4(resource)
    with _profiles_lock:
        if _profiles is None:
            _profiles = load_profiles()
        profiles = _profiles
    rtype = str(resource.get("resourceType"))
    issues = profiles.validate(resource, profiles.default_profile(rtype))
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise MappingError(f"{rtype} does not conform to its profile ({errors[0].code})",
                           code="invalid-resource", location=errors[0].expression)


# -- waking delivery workers (adapter.notify.delivery) when rows are enqueued ------------------------------

_wakers: set[Callable[[], None]] = set()
_wakers_lock = threading.Lock()


def add_waker(waker: Callable[[], None]) -> None:
    """Call ``waker`` (from any thread) whenever notify() enqueues a delivery."""
    with _wakers_lock:
        _wakers.add(waker)


def remove_waker(waker: Callable[[], None]) -> None:
    with _wakers_lock:
        _wakers.discard(waker)


def _wake() -> None:
    with _wakers_lock:
        wakers = list(_wakers)
    for waker in wakers:
        waker()


# -- notify ------------------------------------------------------------------------------------------------

def _checked_reference(tx: Transaction, ref: object, what: str) -> str:
    parsed = parse_reference(ref) if isinstance(ref, str) else None
    if parsed is None or parsed[0] is None or ref != f"{parsed[0]}/{parsed[1]}":
        raise ValueError(f"{what} must be a relative reference Type/id")
    if not tx.exists(parsed[0], parsed[1]):
        raise ValueError(f"{what} references a {parsed[0]} that does not exist")
    return ref


def notify(tx: Transaction, *, rule_id: str, recipients: list[str], subject_ref: str, payload_refs: list[str],
           priority: str, reason_display: str, sent: str, dedup_key: str, check: Check | None = None,
           now: datetime | None = None, subscriptions: SubscriptionCache | None = None) -> list[dict[str, Any]]:
    """Create the notification of one rule occurrence for each recipient, in ``tx``; returns the
    Communications (as stored, in recipient order), those that already existed included. See the module
    docstring.

    ``recipients``: ODS codes and/or roles (adapter.notify.organisations.ROLES) of configured organisations.
    ``check``: validates each Communication before it is stored (default ``default_check``).
    ``now``: when the outbox rows fall due (default: the current time).
    ``subscriptions``: a cache of the parsed Subscriptions kept by a caller that notifies often (one store)."""
    codes = rule_codes()
    if rule_id not in codes:
        raise ValueError("rule_id is not a code of CodeSystem/safeguarding-rule")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    if not dedup_key or not isinstance(dedup_key, str):
        raise ValueError("dedup_key must be a non-empty string")
    if not isinstance(reason_display, str) or not reason_display.strip():
        raise ValueError("reason_display must be text")
    if not recipients or not payload_refs:
        raise ValueError("a notification needs recipients and payload references")
    subject = _checked_reference(tx, subject_ref, "subject_ref")
    if not subject.startswith("Patient/"):
        raise ValueError("subject_ref must reference a Patient")
    payload = [_checked_reference(tx, ref, "payload_refs") for ref in dict.fromkeys(payload_refs)]
    check = check or default_check
    moment = now or datetime.now(UTC)

    out: list[dict[str, Any]] = []
    live: list[tuple[dict[str, Any], Criteria]] | None = None
    enqueued = 0
    for ods, org_id, org_name in resolve_recipients(tx, recipients):
        cid = communication_id(rule_id, dedup_key, ods)
        existing = tx.read("Communication", cid)
        if existing is not None:  # this occurrence was notified already: nothing new
            out.append(existing.resource)
            continue
        recipient: dict[str, Any] = {"reference": f"Organization/{org_id}"}
        if org_name:
            recipient["display"] = org_name
        communication: dict[str, Any] = {
            "resourceType": "Communication",
            "id": cid,
            "meta": {"profile": [COMMUNICATION_PROFILE], "source": f"{CT}/source/rule/{rule_id}"},
            "status": "in-progress",
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "notification",
                                      "display": "Notification"}]}],
            "priority": priority,
            "subject": {"reference": subject},
            "sent": sent,
            "recipient": [recipient],
            "payload": [{"contentReference": {"reference": ref}} for ref in payload],
            "reasonCode": [{"coding": [{"system": RULE_SYSTEM, "code": rule_id, "display": codes[rule_id]}],
                            "text": reason_display.strip()}],
        }
        check(communication)
        stored, _ = tx.put(communication)
        out.append(stored.resource)
        if live is None:
            live = subscriptions.live(tx, moment) if subscriptions is not None else _live_subscriptions(tx, moment)
        matched = 0
        for subscription, criteria in live:
            if criteria.matches(stored.resource):
                matched += 1
                channel = subscription["channel"]
                row = tx.enqueue_outbox(communication_id=cid, subscription_id=subscription["id"],
                                        endpoint=channel["endpoint"], payload=channel.get("payload"),
                                        headers=list(channel.get("header", ())),
                                        next_attempt_at=instant(moment))
                enqueued += row is not None
        _log.info("notification %s rule=%s priority=%s subscriptions=%d", cid, rule_id, priority, matched)
    if enqueued:
        _wake()
    return out


def _live_subscriptions(tx: Transaction, now: datetime) -> list[tuple[dict[str, Any], Criteria]]:
    """(Subscription, its parsed criteria) of every subscription new notifications are matched against. The
    API checks a Subscription when it is written; one stored another way is checked here, and skipped (with a
    warning naming its id) if Carethread cannot deliver to it."""
    live = (stored.resource for stored in tx.list_current("Subscription") if is_live(stored.resource, now))
    return [entry for entry in map(_usable, live) if entry is not None]


def _usable(subscription: dict[str, Any]) -> tuple[dict[str, Any], Criteria] | None:
    """The Subscription and its parsed criteria, or None (logged) if Carethread cannot deliver to it."""
    channel = subscription.get("channel")
    headers = channel.get("header", []) if isinstance(channel, dict) else None
    if (not isinstance(channel, dict) or channel.get("type") != "rest-hook"
            or not isinstance(headers, list) or endpoint_problem(channel.get("endpoint"))
            or payload_problem(channel.get("payload")) or any(header_problem(line) for line in headers)):
        _log.warning("subscription %s skipped: not a rest-hook channel Carethread can deliver to", subscription["id"])
        return None
    try:
        return subscription, parse_criteria(subscription.get("criteria"))
    except CriteriaError:
        _log.warning("subscription %s skipped: criteria not supported", subscription["id"])
        return None


class SubscriptionCache:
    """``_live_subscriptions`` without reading and parsing every Subscription for every notification: each is
    read and parsed again only when its version changes (``tx.versions_of``, which lists versions without
    content). One instance per store (a rules engine's); stores without ``versions_of`` read them all."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[object, tuple[dict[str, Any], Criteria] | None]] = {}
        self._lock = threading.Lock()

    def live(self, tx: Transaction, now: datetime) -> list[tuple[dict[str, Any], Criteria]]:
        versions_of = getattr(tx, "versions_of", None)
        if versions_of is None:
            return _live_subscriptions(tx, now)
        versions = versions_of("Subscription")
        out = []
        with self._lock:
            for gone in self._parsed.keys() - versions.keys():
                del self._parsed[gone]
            for sid in sorted(versions):  # id order, as list_current gives them
                cached = self._parsed.get(sid)
                if cached is None or cached[0] != versions[sid]:
                    stored = tx.read("Subscription", sid)
                    cached = (versions[sid], _usable(stored.resource) if stored is not None else None)
                    self._parsed[sid] = cached
                entry = cached[1]
                if entry is not None and is_live(entry[0], now):
                    out.append(entry)
        return out
