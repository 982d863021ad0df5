"""Hypothesis: events about one child arrive in any order, from any source, some twice.  Whatever the order,
the child's safeguarding flag is never lost before its end rule (18th birthday), and processing everything
again creates nothing new."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.notify import configure_organisations
from adapter.pipeline import Pipeline
from adapter.settings import Settings
from adapter.store.sqlite import SqliteStore
from tests.rules.conftest import ROOT, Env, adt, noshow, pid, pv1

CHILD = "9990040001"
CPP = "342191000000101"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _child() -> str:
    return pid(CHILD, "ORD1", "Sky", "20100301")


def _gp_cpp(ended: bool) -> dict[str, Any]:
    condition = {"resourceType": "Condition", "id": "cpp", "verificationStatus": "confirmed",
                 "clinicalStatus": "resolved" if ended else "active",
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": CPP}]},
                 "subject": {"reference": "Patient/gp-child"}, "onsetDateTime": "2021-01-10"}
    if ended:
        condition["abatementDateTime"] = "2025-12-31"
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "gp-child", "active": True, "gender": "female",
                      "birthDate": "2010-03-01", "identifier": [{"system": NHS, "value": CHILD}],
                      "name": [{"family": "SYNTHETIC", "given": ["Sky"]}],
                      "managingOrganization": {"reference": "Organization/o"}}},
        {"resource": {"resourceType": "Organization", "id": "o", "name": "Synthetic Street Surgery",
                      "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}]}},
        {"resource": condition}]}


# Each event: (name, how to send it).  The plan starts in 2021 (GP, HV), the GP later records its end.
EVENTS: dict[str, Any] = {
    "gp-plan": lambda e: e.gp(_gp_cpp(ended=False)),
    "gp-plan-ended": lambda e: e.gp(_gp_cpp(ended=True)),
    "hv-person": lambda e: e.hv(people=f"ORDHV,{CHILD},01,2010-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n"),
    "hv-concern-ended": lambda e: e.hv(
        people=f"ORDHV,{CHILD},01,2010-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
        concerns=f"ORDC1,ORDHV,{CPP},2021-02-01,2026-01-31,Someone\n"),
    "adult-ae": lambda e: e.hl7(adt("A04", _child(), pv1("AE", "20260501230000", visit="ORDV1", location="A&E"),
                                     ts="20260501230000")),
    "no-show": lambda e: e.hl7(noshow("ORD-APPT", "20260510100000", _child())),
    "maternity-admission": lambda e: e.hl7(adt("A01", _child(), pv1("OBS", "20260515080000", visit="ORDV2"),
                                                ts="20260515080000")),
}


def _env(folder: Path) -> tuple[Env, SqliteStore]:
    store = SqliteStore(folder / "orders.sqlite3", synchronous="OFF")
    s = Settings(db=folder / "orders.sqlite3", organisations=ROOT / "sandbox" / "organisations.yaml")
    pipeline = Pipeline(store, s)
    configure_organisations(store, s, check=pipeline.check_resource)
    env = Env(store, pipeline)
    env.now[0] = datetime(2026, 6, 1, 9, tzinfo=UTC)
    pipeline.clock = lambda: env.now[0]
    return env, store


def _child_flagged(env: Env) -> bool:
    """An active CPP flag on any record of the child's identity (source or derived)."""
    masters = env.search("Patient", [("identifier", f"{NHS}|{CHILD}"), ("_tag", MASTER)])
    if not masters:
        return False
    flags = env.search("Flag", [("identity", f"Patient/{masters[0]['id']}"), ("status", "active")])
    return any(f["code"]["coding"][0]["code"] == CPP for f in flags)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(list(EVENTS)), repeats=st.lists(st.sampled_from(list(EVENTS)), max_size=3))
def test_a_child_flag_is_never_lost_before_18_and_reruns_create_nothing(order: list[str], repeats: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env, store = _env(Path(tmp))
        try:
            flagged = False
            for name in [*order, *repeats]:
                EVENTS[name](env)
                # once any source has said there is (or was) a plan, the child (16) stays flagged
                flagged = flagged or name in ("gp-plan", "gp-plan-ended", "hv-concern-ended")
                assert _child_flagged(env) == flagged, (name, order)
            before = env.versions()
            for name in order:
                EVENTS[name](env)
            assert env.versions() == before, order  # nothing new: no flag, notification or Provenance
            # ... until the 18th birthday, when the continuity ends
            env.now[0] = datetime(2028, 3, 2, 9, tzinfo=UTC)
            from adapter.rules import run_daily
            run_daily(store, env.pipeline.rules, env.now[0])
            derived = [f for f in env.derived_flags("continuity-past-16") if f["status"] == "active"]
            assert derived == []
        finally:
            store.close()
