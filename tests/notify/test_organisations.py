"""Organisations from configuration: the shipped sandbox file, the checks, the Organization and Subscription
resources they become at start-up, and recipient resolution by ODS code or role."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.errors import ConfigError
from adapter.notify import default_check, load_organisations, prepare_notifications, sync_organisations
from adapter.notify.organisations import (
    CONFIG_SOURCE,
    ODS_SYSTEM,
    ROLE_SYSTEM,
    ROLES,
    Organisation,
    UnknownRecipient,
    organization_id,
    resolve_recipients,
)
from adapter.settings import Settings
from adapter.store.sqlite import SqliteStore

from .conftest import ORGS, current

ROOT = Path(__file__).resolve().parents[2]


def test_the_sandbox_file_is_the_default_and_holds_the_five_synthetic_organisations() -> None:
    assert Settings().organisations == Path("sandbox/organisations.yaml")
    orgs = {o.ods: o for o in load_organisations(ROOT / "sandbox" / "organisations.yaml")}
    assert orgs["Y12345"].roles == ("gp-practice",)
    assert {role for o in orgs.values() for role in o.roles} == set(ROLES)
    assert len(orgs) == 5
    assert all("Synthetic" in o.name for o in orgs.values())
    with_endpoint = [o for o in orgs.values() if o.endpoint]
    assert with_endpoint and all(o.endpoint.startswith("http://127.0.0.1:") for o in with_endpoint)


def test_no_setting_means_no_organisations() -> None:
    assert load_organisations(None) == []


@pytest.mark.parametrize("text, where", [
    ("organisations: {}", "one key"),
    ("other: []\norganisations: []", "one key"),
    ("organisations:\n  - {ods: Y12345, name: A}", "organisations[0]"),
    ("organisations:\n  - {ods: y12345, name: A, roles: [gp-practice]}", "organisations[0]"),
    ("organisations:\n  - {ods: Y12345, name: A, roles: [gp]}", "organisations[0]"),
    ("organisations:\n  - {ods: Y12345, name: A, roles: [gp-practice], colour: red}", "organisations[0]"),
    ("organisations:\n  - {ods: Y12345, name: A, roles: [gp-practice]}\n"
     "  - {ods: Y12345, name: B, roles: [gp-practice]}", "organisations[1]"),
    ("organisations:\n  - {ods: Y12345, name: A, roles: [gp-practice], endpoint: 'ftp://x/y'}",
     "organisations[0]"),
    ("organisations:\n  - {ods: Y12345, name: A, roles: [gp-practice], headers: ['A: b']}",
     "organisations[0]"),
    ("organisations:\n  - {ods: Y12345, name: A, roles: [gp-practice], endpoint: 'http://h/f', "
     "headers: ['no colon']}", "organisations[0]"),
    ("organisations: [", "cannot be read"),
])
def test_a_wrong_configuration_is_refused_naming_where(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "organisations.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_organisations(path)
    assert where in f"{caught.value.location} {caught.value.message}"


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_organisations(tmp_path / "nope.yaml")


def test_organisations_become_organizations_and_endpoints_subscriptions(tmp_path: Path) -> None:
    orgs = [*ORGS, Organisation("ZCS001", "Synthetic Children's Social Care", ("childrens-social-care",),
                                "https://csc.example/fhir", ("Authorization: Bearer synthetic",))]
    with SqliteStore(tmp_path / "o.db", synchronous="OFF") as store:
        assert sync_organisations(store, orgs, default_check) == len(orgs) + 1
        org = store.read("Organization", "ods-Y12345")
        assert org is not None and org.resource["meta"]["source"] == CONFIG_SOURCE
        assert org.resource["identifier"] == [{"system": ODS_SYSTEM, "value": "Y12345"}]
        assert org.resource["type"][0]["coding"][0] == {"system": ROLE_SYSTEM, "code": "gp-practice",
                                                         "display": "GP practice"}
        assert org.resource["active"] is True and organization_id("Y12345") == "ods-Y12345"
        sub = store.read("Subscription", "ods-ZCS001-rest-hook")
        assert sub is not None
        assert sub.resource["status"] == "active"
        assert sub.resource["criteria"] == "Communication?recipient=Organization/ods-ZCS001"
        assert sub.resource["channel"] == {"type": "rest-hook", "endpoint": "https://csc.example/fhir",
                                           "payload": "application/fhir+json",
                                           "header": ["Authorization: Bearer synthetic"]}
        # searchable by ODS code like any Organization
        found = store.search("Organization", [("identifier", f"{ODS_SYSTEM}|ZCS001")], count=10, offset=0)
        assert [m.resource["id"] for m in found.matches] == ["ods-ZCS001"]

        assert sync_organisations(store, orgs, default_check) == 0  # unchanged: nothing written

        # an organisation leaves the configuration: ended, not deleted; its subscription is turned off
        assert sync_organisations(store, orgs[:1], default_check) == 4 + 1
        assert current(store, "Organization", "ods-ZCS001")["active"] is False
        assert current(store, "Subscription", "ods-ZCS001-rest-hook")["status"] == "off"
        assert current(store, "Organization", "ods-Y12345")["meta"]["versionId"] == "1"


def test_resources_not_from_the_configuration_are_left_alone(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "o.db", synchronous="OFF") as store:
        with store.transaction() as tx:
            tx.put({"resourceType": "Organization", "id": "org-from-gp", "name": "x", "active": True})
        sync_organisations(store, [], default_check)
        assert current(store, "Organization", "org-from-gp")["meta"]["versionId"] == "1"


def test_recipients_resolve_by_ods_code_or_role_once_each(store: SqliteStore) -> None:
    with store.transaction() as tx:
        assert resolve_recipients(tx, ["Y12345"]) == [("Y12345", "ods-Y12345", "Synthetic Street Surgery")]
        both = resolve_recipients(tx, ["health-visiting", "ZHV001", "maternity-safeguarding",
                                       "safeguarding-team"])
        assert [ods for ods, _, _ in both] == ["ZHV001", "ZHV002", "ZSG001"]
        for bad in (["ZZZ999"], ["childrens-social-care"], ["not a code"], ["gp"]):
            with pytest.raises(UnknownRecipient):
                resolve_recipients(tx, bad)


def test_an_ended_organisation_is_no_longer_a_recipient(store: SqliteStore) -> None:
    sync_organisations(store, ORGS[1:], default_check)
    with store.transaction() as tx:
        with pytest.raises(UnknownRecipient):
            resolve_recipients(tx, ["Y12345"])
        with pytest.raises(UnknownRecipient):
            resolve_recipients(tx, ["gp-practice"])


def test_prepare_notifications_finds_the_shipped_file_from_any_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SqliteStore(tmp_path / "p.db", synchronous="OFF") as store:
        worker = prepare_notifications(store, Settings(db=tmp_path / "p.db"))
        assert worker.store is store
        assert store.read("Organization", "ods-Y12345") is not None
        with pytest.raises(ConfigError):
            prepare_notifications(store, Settings(organisations=tmp_path / "missing.yaml"))
