"""notify(): Communications built to our profile with deterministic ids, an idempotent re-run, outbox rows for
the matching Subscriptions in the same transaction (rolled back together), criteria matching, and search over
the FHIR API."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from adapter.api import create_app
from adapter.conformance import load_profiles
from adapter.errors import MappingError
from adapter.notify import COMMUNICATION_PROFILE, communication_id, notify, rule_codes
from adapter.notify.communications import SubscriptionCache
from adapter.notify.organisations import UnknownRecipient
from adapter.notify.subscriptions import CriteriaError, parse_criteria
from adapter.store.sqlite import SqliteStore
from tests.api.conftest import client_for

from .conftest import HOOK, RULE_SYSTEM, T0, current, notify_args, put, run_notify, subscription

RULES = ["continuity-past-16", "adult-setting-presentation", "at-18", "pregnancy-under-18-or-history",
         "birth", "was-not-brought-pattern", "young-father", "change-in-household", "flag-closure",
         "handover-gap", "identity-review-flag-alert"]


def test_the_rule_codesystem_holds_exactly_the_rule_ids() -> None:
    assert list(rule_codes()) == RULES
    cs = load_profiles().defs.code_systems[RULE_SYSTEM]
    assert cs["content"] == "complete" and cs["count"] == len(RULES)


def test_one_communication_per_recipient_to_our_profile(store: SqliteStore) -> None:
    made = run_notify(store, recipients=["Y12345", "health-visiting"])
    assert [c["recipient"][0]["reference"] for c in made] == [
        "Organization/ods-Y12345", "Organization/ods-ZHV001", "Organization/ods-ZHV002"]
    c = made[0]
    assert c["id"] == communication_id("adult-setting-presentation", "enc-1", "Y12345")
    assert c["meta"]["profile"] == [COMMUNICATION_PROFILE] and c["meta"]["versionId"] == "1"
    assert c["status"] == "in-progress" and c["priority"] == "urgent"
    assert c["subject"] == {"reference": "Patient/pat-1"}
    assert c["sent"] == "2026-11-26T08:00:00+00:00"
    assert c["payload"] == [{"contentReference": {"reference": "Flag/flag-1"}},
                            {"contentReference": {"reference": "Encounter/enc-1"}}]
    assert c["reasonCode"] == [{"coding": [{"system": RULE_SYSTEM, "code": "adult-setting-presentation",
                                            "display": "Presentation in an adult setting"}],
                                "text": notify_args()["reason_display"]}]
    assert c["category"][0]["coding"][0]["code"] == "notification"
    profiles = load_profiles()
    for made_one in made:
        assert [i for i in profiles.validate(made_one) if i.severity == "error"] == []


def test_ids_are_deterministic_and_a_rerun_creates_nothing(store: SqliteStore) -> None:
    put(store, subscription("sub-gp", "Communication?recipient=Organization/ods-Y12345"))
    first = run_notify(store)
    again = run_notify(store, sent="2026-11-27T09:00:00+00:00", reason_display="reworded", priority="routine")
    assert [c["id"] for c in again] == [c["id"] for c in first]
    assert again[0]["meta"]["versionId"] == "1" and again[0]["sent"] == first[0]["sent"]
    assert len(store.history("Communication", first[0]["id"])) == 1
    assert len(store.list_outbox()) == 1
    other = run_notify(store, dedup_key="enc-2")
    assert other[0]["id"] != first[0]["id"] and len(store.list_outbox()) == 2
    assert communication_id("birth", "k", "Y12345") != communication_id("birth", "k", "ZHV001")


def test_outbox_rows_for_each_live_matching_subscription(store: SqliteStore) -> None:
    put(store,
        subscription("by-recipient", "Communication?recipient=Organization/ods-Y12345",
                     headers=["Authorization: Bearer synthetic"]),
        subscription("by-recipient-id-only", "Communication?recipient=ods-Y12345"),
        subscription("by-reason", f"Communication?reason-code={RULE_SYSTEM}|adult-setting-presentation"),
        subscription("by-reason-code-only", "Communication?reason-code=adult-setting-presentation,birth"),
        subscription("everything", "Communication", payload=None),
        subscription("both", "Communication?recipient=Organization/ods-Y12345&priority=urgent"),
        subscription("other-recipient", "Communication?recipient=Organization/ods-ZHV001"),
        subscription("other-reason", "Communication?reason-code=birth"),
        subscription("other-priority", "Communication?recipient=Organization/ods-Y12345&priority=routine"),
        subscription("turned-off", "Communication", status="off"),
        subscription("requested", "Communication", status="requested"),
        subscription("ended", "Communication", end="2026-11-01T00:00:00Z"),
        subscription("in-error", "Communication", status="error", error="synthetic"),
        subscription("not-yet-ended", "Communication", end=(T0 + timedelta(days=1)).isoformat()))
    [made] = run_notify(store)
    rows = {r.subscription_id: r for r in store.list_outbox(communication_id=made["id"])}
    assert sorted(rows) == sorted(["by-recipient", "by-recipient-id-only", "by-reason", "by-reason-code-only",
                                   "everything", "both", "in-error", "not-yet-ended"])
    row = rows["by-recipient"]
    assert (row.status, row.attempts, row.history) == ("pending", 0, ())
    assert (row.endpoint, row.payload, row.headers) == (HOOK, "application/fhir+json",
                                                        ("Authorization: Bearer synthetic",))
    assert row.next_attempt_at == "2026-11-26T08:00:00.000+00:00"
    assert rows["everything"].payload is None
    assert store.due_outbox("2026-11-26T08:00:00.000+00:00", limit=100) == sorted(
        rows.values(), key=lambda r: r.id)
    assert store.due_outbox("2026-11-26T07:59:59.999+00:00") == []
    assert store.next_outbox_due() == "2026-11-26T08:00:00.000+00:00"


def test_a_subscription_written_in_the_same_transaction_is_matched(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.put(subscription("new", "Communication"))
        [made] = notify(tx, now=T0, **notify_args())
    assert [r.subscription_id for r in store.list_outbox(communication_id=made["id"])] == ["new"]


def test_the_communication_and_its_outbox_rows_roll_back_together(store: SqliteStore) -> None:
    put(store, subscription("sub", "Communication"))

    class RuleFailed(Exception):
        pass

    with pytest.raises(RuleFailed), store.transaction() as tx:
        [made] = notify(tx, now=T0, **notify_args())
        assert [r.subscription_id for r in tx.outbox_of(made["id"])] == ["sub"]  # visible inside
        raise RuleFailed
    assert store.read("Communication", made["id"]) is None
    assert store.list_outbox() == []

    with store.transaction() as tx:  # a savepoint undoes both too
        with pytest.raises(RuleFailed), tx.savepoint():
            notify(tx, now=T0, **notify_args())
            raise RuleFailed
        assert tx.outbox_of(made["id"]) == [] and tx.read("Communication", made["id"]) is None
    assert store.list_outbox() == [] and store.search("Communication", [], count=10, offset=0).total == 0


@pytest.mark.parametrize("overrides, error", [
    ({"rule_id": "not-a-rule"}, ValueError),
    ({"priority": "high"}, ValueError),
    ({"dedup_key": ""}, ValueError),
    ({"reason_display": " "}, ValueError),
    ({"recipients": []}, ValueError),
    ({"recipients": ["ZZZ999"]}, UnknownRecipient),
    ({"recipients": ["childrens-social-care"]}, UnknownRecipient),
    ({"subject_ref": "Flag/flag-1"}, ValueError),
    ({"subject_ref": "Patient/nobody"}, ValueError),
    ({"subject_ref": "https://elsewhere.example/Patient/pat-1"}, ValueError),
    ({"payload_refs": ["Flag/missing"]}, ValueError),
    ({"payload_refs": ["Encounter/enc-1"]}, MappingError),  # the profile: a Flag among the payload
    ({"sent": "26/11/2026"}, MappingError),  # R4: not a dateTime
])
def test_bad_arguments_write_nothing(store: SqliteStore, overrides: dict[str, object],
                                     error: type[Exception]) -> None:
    put(store, subscription("sub", "Communication"))
    with pytest.raises(error), store.transaction() as tx:
        notify(tx, now=T0, **notify_args(**overrides))
    assert store.list_outbox() == [] and store.search("Communication", [], count=10, offset=0).total == 0


@pytest.mark.parametrize("criteria", [
    "Patient?name=x", "Communication?status=completed", "Communication?recipient:missing=true",
    "Communication?recipient=", "Communication?subject=urn:uuid:1", "", None, "Communication?_id=x",
])
def test_criteria_carethread_cannot_match_are_refused(criteria: object) -> None:
    with pytest.raises(CriteriaError):
        parse_criteria(criteria)


def test_criteria_match_like_a_search() -> None:
    c = {"resourceType": "Communication", "id": "c", "subject": {"reference": "Patient/p"},
         "priority": "stat",
         "recipient": [{"reference": "Organization/o"}],
         "reasonCode": [{"coding": [{"system": RULE_SYSTEM, "code": "birth"}]}]}
    yes = ["Communication", "Communication?recipient=o",
           "Communication?recipient=Organization/o,Organization/x",
           "Communication?subject=Patient/p&patient=p", f"Communication?reason-code={RULE_SYSTEM}|",
           "Communication?reason-code=https%3A%2F%2Ffhir.carethread.org%2FCodeSystem%2F"
           "safeguarding-rule%7Cbirth",
           "Communication?priority=stat,urgent"]
    no = ["Communication?recipient=Practitioner/o", "Communication?recipient=x",
          "Communication?reason-code=|birth",
          "Communication?reason-code=http://other|birth", "Communication?priority=stat&recipient=x"]
    assert [parse_criteria(q).matches(c) for q in yes] == [True] * len(yes)
    assert [parse_criteria(q).matches(c) for q in no] == [False] * len(no)
    assert not parse_criteria("Communication").matches({"resourceType": "Flag"})


async def test_communications_and_subscriptions_are_searchable_over_the_fhir_api(store: SqliteStore) -> None:
    put(store, subscription("sub-gp", "Communication?recipient=Organization/ods-Y12345"))
    run_notify(store, recipients=["Y12345", "ZHV001"])
    run_notify(store, rule_id="birth", dedup_key="birth-1", sent="2026-12-01T10:00:00+00:00")
    async with client_for(create_app(store)) as client:
        async def ids(query: str) -> list[str]:
            r = await client.get(f"/fhir/{query}")
            assert r.status_code == 200, r.text
            return sorted(e["resource"]["id"] for e in r.json().get("entry", []))

        gp = await ids("Communication?recipient=Organization/ods-Y12345")
        assert len(gp) == 2
        assert len(await ids("Communication?subject=Patient/pat-1")) == 3
        assert await ids(f"Communication?reason-code={RULE_SYSTEM}|birth") == [
            communication_id("birth", "birth-1", "Y12345")]
        assert len(await ids("Communication?sent=ge2026-12-01")) == 1
        assert len(await ids("Communication?sent=2026-11-26&recipient=Organization/ods-ZHV001")) == 1
        assert await ids("Subscription?url=" + HOOK) == ["sub-gp"]
        assert await ids("Subscription?status=active&type=rest-hook") == ["sub-gp"]
        assert await ids("Subscription?criteria:contains=ods-Y12345") == ["sub-gp"]
        ods = "https://fhir.nhs.uk/Id/ods-organization-code|Y12345"
        assert (await client.get(f"/fhir/Organization?identifier={ods}")).json()["total"] == 1


async def test_post_subscription_is_checked_and_activated(store: SqliteStore) -> None:
    async with client_for(create_app(store)) as client:
        def body(**changes: object) -> dict:  # type: ignore[type-arg]
            sub = subscription("ignored", "Communication?recipient=Organization/ods-Y12345",
                               status="requested", headers=["Authorization: Bearer synthetic"])
            del sub["id"]
            sub.update(changes)
            return sub

        r = await client.post("/fhir/Subscription", json=body())
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["status"] == "active" and created["meta"]["versionId"] == "1"
        assert current(store, "Subscription", created["id"])["status"] == "active"

        # an update that keeps the status the server set, or turns it off, is fine; asking for active is not
        r = await client.put(f"/fhir/Subscription/{created['id']}", json={**created, "reason": "changed"})
        assert r.status_code == 200 and r.json()["status"] == "active"
        r = await client.put(f"/fhir/Subscription/{created['id']}", json={**created, "status": "off"})
        assert r.status_code == 200 and r.json()["status"] == "off"
        r = await client.put(f"/fhir/Subscription/{created['id']}", json={**created, "status": "requested"})
        assert r.status_code == 200 and r.json()["status"] == "active"

        refused = [
            ({"status": "active"}, "Subscription.status"),
            ({"status": "error"}, "Subscription.status"),
            ({"status": "bogus"}, "Subscription.status"),
            ({"channel": {"type": "websocket", "endpoint": HOOK}}, "Subscription.channel.type"),
            ({"channel": {"type": "rest-hook"}}, "Subscription.channel.endpoint"),
            ({"channel": {"type": "rest-hook", "endpoint": "mailto:x@example.org"}},
             "Subscription.channel.endpoint"),
            ({"channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/fhir+xml"}},
             "Subscription.channel.payload"),
            ({"channel": {"type": "rest-hook", "endpoint": HOOK, "header": ["Bad Header"]}},
             "Subscription.channel.header[0]"),
            ({"channel": {"type": "rest-hook", "endpoint": HOOK, "header": ["X-Ok: fine", "Host: evil"]}},
             "Subscription.channel.header[1]"),
            ({"criteria": "Observation?code=x"}, "Subscription.criteria"),
            ({"criteria": "Communication?status=completed"}, "Subscription.criteria"),
        ]
        for changes, where in refused:
            r = await client.post("/fhir/Subscription", json=body(**changes))
            assert r.status_code == 422, (changes, r.text)
            outcome = r.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert where in [e for i in outcome["issue"] for e in i.get("expression", [])], (changes, outcome)
            assert "synthetic" not in r.text  # never echoes a header value
        total = (await client.get("/fhir/Subscription")).json()["total"]
        assert total == 1


def test_a_stored_subscription_carethread_cannot_deliver_to_is_skipped(
        store: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    put(store, subscription("xml", "Communication", payload="application/fhir+xml"),
        subscription("bad-header", "Communication", headers=["X-Bad: line\r\nInjected: yes"]),
        subscription("mail", "Communication", endpoint="mailto:someone@example.org"),
        subscription("criteria", "Observation?code=x"),
        subscription("fine", "Communication"))
    [made] = run_notify(store)
    assert [r.subscription_id for r in store.list_outbox(communication_id=made["id"])] == ["fine"]
    assert caplog.text.count("skipped") == 4 and "someone" not in caplog.text


def test_the_subscription_cache_follows_each_subscription_version(store: SqliteStore) -> None:
    """A rules engine keeps one SubscriptionCache across notifications: a Subscription changed, added, turned
    off or removed since the last notification is seen by the next one."""
    cache = SubscriptionCache()

    def rows(dedup: str) -> list[str]:
        with store.transaction() as tx:
            [made] = notify(tx, now=T0, subscriptions=cache, **notify_args(dedup_key=dedup))
        return sorted(r.subscription_id for r in store.list_outbox(communication_id=made["id"]))

    put(store, subscription("a", "Communication?recipient=Organization/ods-Y12345"))
    assert rows("k1") == ["a"]
    put(store, subscription("a", "Communication?recipient=Organization/ods-ZHV001"),  # a new version of a
        subscription("b", "Communication"))
    assert rows("k2") == ["b"]
    put(store, subscription("b", "Communication", status="off"))
    assert rows("k3") == []
    with store.transaction() as tx:  # written in the same transaction as the notification
        tx.put(subscription("c", "Communication?priority=urgent"))
        [made] = notify(tx, now=T0, subscriptions=cache, **notify_args(dedup_key="k4"))
    assert [r.subscription_id for r in store.list_outbox(communication_id=made["id"])] == ["c"]
    assert rows("k5") == ["c"]
