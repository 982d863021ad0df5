"""Query plans: comma-separated values and ``identity`` combined with other parameters are index seeks (issue 6),
and the daily rules' direct lookups (``ids_matching`` / ``fields_matching``) find what the search finds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapter.store.query import parse_search
from adapter.store.sqlite import SqliteStore

from .resources import NHS, flag, patient

MASTER = ("https://fhir.carethread.org/CodeSystem/record-type", "master")


def _plan(store: SqliteStore, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    request = parse_search(rtype, params)
    where = " AND ".join(["r.type = ?", *(f"({c.sql})" for c in request.criteria)])
    args: list[Any] = [rtype, *(a for c in request.criteria for a in c.args)]
    with store._reader("plan") as conn:  # noqa: SLF001 - the test looks at the SQL the store runs
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT count(*) FROM resource r WHERE {where}",
                                                 args)]


def _index_steps(plan: list[str]) -> list[str]:
    return [step for step in plan if "search_index" in step]


@pytest.fixture
def filled(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "s.db", synchronous="OFF")
    with store.transaction() as tx:
        for n in range(30):
            tx.put(patient(f"pat-{n}", nhs=f"99900000{n:02d}", birth_date=f"20{n % 20:02d}-03-15",
                           meta={"tag": [{"system": MASTER[0], "code": MASTER[1]}]} if n % 2 else {}))
            tx.put(flag(f"flag-{n}", subject=f"pat-{n}", status="active" if n % 3 else "inactive"))
            tx.put({"resourceType": "Provenance", "id": f"prov-{n}", "target": [{"reference": f"Flag/flag-{n}"}],
                    "recorded": "2026-11-01T08:00:00+00:00", "agent": [{"who": {"display": "test"}}]})
    return store


@pytest.mark.parametrize(("rtype", "params", "expected"), [
    ("Provenance", [("target", "Flag/flag-1,Flag/flag-2,Flag/flag-29")], {"prov-1", "prov-2", "prov-29"}),
    ("Flag", [("subject", "Patient/pat-3,pat-4,Patient/nope")], {"flag-3", "flag-4"}),
    ("Patient", [("identifier", f"{NHS}|9990000005,{NHS}|9990000006,9990000007")], {"pat-5", "pat-6", "pat-7"}),
    ("Flag", [("status:not", "active,entered-in-error")], {f"flag-{n}" for n in range(0, 30, 3)}),
    ("Patient", [("birthdate", "2001-03-15,2002"), ("gender", "female,male,unknown")], None),
])
def test_comma_separated_values_are_index_seeks(filled: SqliteStore, rtype: str, params: list[tuple[str, str]],
                                                 expected: set[str] | None) -> None:
    steps = _index_steps(_plan(filled, rtype, params))
    assert steps and all("value=?" in step or "value>?" in step for step in steps), steps
    found = {m.resource["id"] for m in filled.search(rtype, params, count=100, offset=0).matches}
    # the same as OR'ing the values by hand
    name, values = params[0]
    union: set[str] = set()
    for value in values.split(","):
        union |= {m.resource["id"] for m in filled.search(rtype, [(name, value), *params[1:]], count=100,
                                                          offset=0).matches}
    if name.endswith(":not"):
        union = {m.resource["id"] for m in filled.search(rtype, [], count=100, offset=0).matches} - {
            m.resource["id"] for v in values.split(",")
            for m in filled.search(rtype, [(name[:-4], v)], count=100, offset=0).matches}
    assert found == union
    if expected is not None:
        assert found == expected


def test_identity_with_status_looks_up_the_identitys_rows_only(filled: SqliteStore) -> None:
    params = [("identity", "Patient/pat-4"), ("status", "active")]
    steps = _index_steps(_plan(filled, "Flag", params))
    # status is checked per id of the identity (a seek on the whole key), not built for every active Flag
    assert any("value=? AND id=?" in step for step in steps), steps
    assert all("value=?" in step for step in steps), steps
    assert [m.resource["id"] for m in filled.search("Flag", params, count=10, offset=0).matches] == ["flag-4"]
    assert filled.search("Flag", [("identity", "Patient/pat-3"), ("status", "active")], count=10,
                         offset=0).total == 0
    assert filled.search("Flag", [("identity", "Patient/pat-3"), ("status:missing", "true")], count=10,
                         offset=0).total == 0


def test_ids_matching_finds_what_search_finds(filled: SqliteStore) -> None:
    master = f"{MASTER[0]}|{MASTER[1]}"
    for low, high in (("2003-01-01", "2009-12-31"), ("2005-03-15", "2005-03-15"), ("2019-06-01", None)):
        params = [("birthdate", f"ge{low}"), ("_tag", master)] + ([("birthdate", f"le{high}")] if high else [])
        expected = sorted(m.resource["id"] for m in filled.search("Patient", params, count=500, offset=0).matches)
        assert filled.ids_matching("Patient", date=("birthdate", low, high), tokens=[("_tag", *MASTER)]) == expected
    active = filled.fields_matching("Flag", ["$.subject.reference"], tokens=[("status", None, "active")])
    assert active == sorted((f"flag-{n}", f"Patient/pat-{n}") for n in range(30) if n % 3)
    with pytest.raises(ValueError):
        filled.ids_matching("Flag")


def test_versions_of_includes_this_transactions_writes(filled: SqliteStore) -> None:
    with filled.transaction() as tx:
        before = tx.versions_of("Flag")
        assert before["flag-1"][0] == 1 and len(before) == 30
        tx.put(flag("flag-1", status="inactive"))
        tx.put(flag("flag-new"))
        after = tx.versions_of("Flag")
        assert after["flag-1"][0] == 2 and after["flag-new"][0] == 1 and after["flag-2"] == before["flag-2"]
