"""``identity=``: given a master or any source Patient, what belongs to any record of that human."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.store.query import SearchParamError
from adapter.store.sqlite import SqliteStore

from .resources import flag, patient

MASTER_TAG = {"system": "https://fhir.carethread.org/CodeSystem/record-type", "code": "master"}


@pytest.fixture
def store(db_path: Path) -> SqliteStore:
    s = SqliteStore(db_path)
    with s.transaction() as tx:
        tx.put({**patient("master-1"), "meta": {"tag": [MASTER_TAG]},
                "link": [{"other": {"reference": "Patient/src-a"}, "type": "seealso"},
                         {"other": {"reference": "Patient/src-b"}, "type": "seealso"}]})
        tx.put({**patient("src-a"), "link": [{"other": {"reference": "Patient/master-1"}, "type": "refer"}]})
        tx.put({**patient("src-b"), "link": [{"other": {"reference": "Patient/master-1"}, "type": "refer"}]})
        tx.put(patient("other"))
        for fid, subject in (("f-master", "master-1"), ("f-a", "src-a"), ("f-b", "src-b"), ("f-other", "other")):
            tx.put(flag(fid, subject))
        tx.set_identity_member("src-a", "master-1", "{}", [])
        tx.set_identity_member("src-b", "master-1", "{}", [])
    return s


def ids(store: SqliteStore, rtype: str, params: list[tuple[str, str]]) -> set[str]:
    return {m.resource["id"] for m in store.search(rtype, params, count=100, offset=0).matches}


@pytest.mark.parametrize("given", ["Patient/src-a", "src-b", "Patient/master-1"])
def test_any_record_of_an_identity_finds_all_its_flags(store: SqliteStore, given: str) -> None:
    assert ids(store, "Flag", [("identity", given)]) == {"f-master", "f-a", "f-b"}
    assert ids(store, "Patient", [("identity", given)]) == {"master-1", "src-a", "src-b"}


def test_a_patient_not_yet_reconciled_is_its_own_identity(store: SqliteStore) -> None:
    assert ids(store, "Flag", [("identity", "Patient/other")]) == {"f-other"}


def test_masters_and_sources_by_tag_and_link(store: SqliteStore) -> None:
    tag = f"{MASTER_TAG['system']}|master"
    assert ids(store, "Patient", [("_tag", tag)]) == {"master-1"}
    assert ids(store, "Patient", [("_tag:not", tag)]) == {"src-a", "src-b", "other"}
    assert ids(store, "Patient", [("link", "Patient/src-a")]) == {"master-1"}
    assert ids(store, "Patient", [("link", "Patient/master-1")]) == {"src-a", "src-b"}


def test_identity_takes_only_patient_references(store: SqliteStore) -> None:
    with pytest.raises(SearchParamError):
        store.search("Flag", [("identity", "Group/g")], count=10, offset=0)
