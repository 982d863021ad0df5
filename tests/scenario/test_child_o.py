"""The case behind Carethread (DOMAIN.md §1), from the mother's 13th year to the baby's 11th week, as
dated HL7 v2, health visiting and GP inputs sent to the real HTTP entry points (`POST /hl7v2`,
`POST /ingest/health-visiting`, `POST /ingest/gp`) of the application, with the rules' clock set to each
input's date.  At each step: which flags exist, and which notifications were delivered to which
organisation's receiver (respx mocks every organisation's rest-hook endpoint).

    2022-04  Miss A (born 2009-03-10) is 13: a child protection plan and a sexual exploitation risk (GP)
    2023-06  the plan ends: every organisation with contact in the year before is told
    2026-04  at 17, adult A&E: her history goes to the safeguarding team
    2026-04  at 17, early pregnancy unit: unborn child concern; maternity safeguarding, HV, social care told;
             her 16-year-old partner is in the household: change in household
    2026-11  the baby is born; the father, 16, is named: baby flagged from the mother's concern,
             young parent flag on a record derived for the father
    2026-11  discharged; no health visiting contact in 14 days: handover gap
    2027-01  the 6-8 week review not brought (HV): one is enough for a flagged child: repeated was not brought
    2027-02  week 11: the summary an A&E clinician would get
    2027-03  Miss A is 18: child flags end, history flags start
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from adapter.api.app import create_app
from adapter.api.routes.hl7v2 import hl7v2_router
from adapter.api.routes.identity import identity_router
from adapter.api.routes.ingest import ingest_router
from adapter.notify.delivery import DeliverySettings, DeliveryWorker
from adapter.rules import run_daily
from adapter.service import open_pipeline
from adapter.settings import Settings
from tests.hl7builder import message, seg

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
MOTHER, BABY, CONTROL = "9990030006", "9990030014", "9990030022"
CPP, CSE, UNBORN, CHILD_CONCERN = "342191000000101", "919461000000108", "878111000000109", "836881000000105"
ORGS = {"Y12345": "gp-practice", "ZHV001": "health-visiting", "ZMS001": "maternity-safeguarding",
        "ZCS001": "childrens-social-care", "ZSG001": "safeguarding-team"}
DERIVED = "https://fhir.carethread.org/CodeSystem/record-type|derived"
MASTER = "https://fhir.carethread.org/CodeSystem/record-type|master"


@dataclass
class Case:
    client: httpx.AsyncClient
    worker: DeliveryWorker
    pipeline: Any
    now: list[datetime]
    delivered: Counter[tuple[str, str]] = field(default_factory=Counter)  # (ODS, rule) -> deliveries
    by_id: Counter[str] = field(default_factory=Counter)  # Communication id -> deliveries

    async def at(self, when: str) -> None:
        self.now[0] = datetime.fromisoformat(when).replace(tzinfo=UTC)

    async def hl7(self, msg: bytes) -> None:
        r = await self.client.post("/hl7v2", content=msg)
        assert b"MSA|AA|" in r.content, r.content

    async def hv(self, **files: str) -> None:
        r = await self.client.post("/ingest/health-visiting", files=[
            ("file", (name, text.encode(), "text/csv")) for name, text in files.items()])
        assert r.status_code == 200 and not [i for i in r.json()["issue"] if i["severity"] == "error"], r.text

    async def gp(self, bundle: dict[str, Any]) -> None:
        r = await self.client.post("/ingest/gp", json=bundle)
        assert r.status_code == 200 and not [i for i in r.json()["issue"] if i["severity"] == "error"], r.text

    async def daily(self) -> None:
        run_daily(self.pipeline.store, self.pipeline.rules, self.now[0])

    async def deliver(self) -> Counter[tuple[str, str]]:
        """Deliver what is due; returns what this step delivered: (ODS code, rule id) -> count."""
        before = Counter(self.delivered)
        while await self.worker.run_once():
            pass
        return self.delivered - before

    async def fhir(self, path: str, **params: str) -> dict[str, Any]:
        r = await self.client.get(f"/fhir/{path}", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def flags(self, nhs: str) -> dict[str, str]:
        """The person's flags across the whole identity: code -> status (active wins)."""
        [master] = (await self.fhir("Patient", identifier=f"{NHS}|{nhs}", _tag=MASTER))["entry"]
        bundle = await self.fhir("Flag", identity=f"Patient/{master['resource']['id']}", _count="200")
        out: dict[str, str] = {}
        for e in bundle.get("entry", []):
            code, status = e["resource"]["code"]["coding"][0]["code"], e["resource"]["status"]
            out[code] = "active" if "active" in (status, out.get(code)) else status
        return out


@pytest.fixture
async def case(tmp_path: Path) -> AsyncIterator[Case]:
    orgs = tmp_path / "organisations.yaml"
    orgs.write_text("organisations:\n" + "".join(
        f"  - ods: {ods}\n    name: Synthetic {role}\n    roles: [{role}]\n"
        f"    endpoint: https://{ods.lower()}.receiver.test/fhir\n" for ods, role in ORGS.items()))
    settings = Settings(db=tmp_path / "case.sqlite3", organisations=orgs)
    pipeline = open_pipeline(settings)
    now = [datetime(2022, 4, 5, 9, tzinfo=UTC)]
    pipeline.clock = lambda: now[0]
    app = create_app(pipeline.store, routers=[hl7v2_router(pipeline), ingest_router(pipeline),
                                              identity_router(pipeline)],
                     validate_resource=pipeline.resource_issues)
    worker = DeliveryWorker(pipeline.store, DeliverySettings(base_delay=0.01, max_delay=0.01),
                            check=pipeline.check_resource, clock=pipeline.clock)
    with respx.mock(assert_all_called=False) as receivers:
        c = Case(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://carethread.test"),
                 worker, pipeline, now)

        def receive(request: httpx.Request) -> httpx.Response:
            ods = request.url.host.split(".")[0].upper()
            communication = json.loads(request.content)
            c.delivered[(ods, communication["reasonCode"][0]["coding"][0]["code"])] += 1
            c.by_id[communication["id"]] += 1
            return httpx.Response(200)

        receivers.put(url__regex=r"https://[a-z0-9]+\.receiver\.test/fhir/Communication/.+").mock(side_effect=receive)
        yield c
        await c.client.aclose()
        await worker.stop()
    pipeline.store.close()


def gp_bundle(nhs: str, birth: str, *entries: dict[str, Any], gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"gp-{nhs}", "active": True,
                      "identifier": [{"system": NHS, "value": nhs}], "gender": gender, "birthDate": birth,
                      "name": [{"use": "official", "family": "SYNTHETIC", "given": ["Amber" if gender == "female" else "Robin"]}],
                      "managingOrganization": {"reference": "Organization/gp-org"}}},
        {"resource": {"resourceType": "Organization", "id": "gp-org", "name": "Synthetic Street Surgery",
                      "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}]}},
        *({"resource": e} for e in entries)]}


def condition(cid: str, nhs: str, code: str, onset: str, ended: str | None = None) -> dict[str, Any]:
    c = {"resourceType": "Condition", "id": cid, "clinicalStatus": "resolved" if ended else "active",
         "verificationStatus": "confirmed", "subject": {"reference": f"Patient/gp-{nhs}"},
         "code": {"coding": [{"system": SNOMED, "code": code}]}, "onsetDateTime": onset}
    if ended:
        c["abatementDateTime"] = ended
    return c


def gp_encounter(eid: str, nhs: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "subject": {"reference": f"Patient/gp-{nhs}"},
            "period": {"start": when, "end": when}, "serviceProvider": {"reference": "Organization/gp-org"}}


def mother_pid() -> str:
    return seg("PID", {1: "1", 3: f"{MOTHER}^^^NHS^NH~MATA01^^^RX1^MR", 5: "SYNTHETIC^Amber", 7: "20090310",
                       8: "F", 11: "1 Example Road^^Exampletown^^ZZ99 1AA", 32: "NSTS01"})


def baby_pid() -> str:
    return seg("PID", {1: "1", 3: f"{BABY}^^^NHS^NH~MATB01^^^RX1^MR", 5: "SYNTHETIC^Robin", 7: "20261120",
                       8: "M", 11: "1 Example Road^^Exampletown^^ZZ99 1AA", 21: f"{MOTHER}^^^NHS^NH", 32: "NSTS01"})


def pv1(service: str, location: str, visit: str, admit: str, discharge: str | None = None) -> str:
    fields = {1: "1", 2: "E" if service == "AE" else "I", 3: f"{location}^^^RX1", 10: service, 19: visit, 44: admit}
    if discharge:
        fields[45] = discharge
    return seg("PV1", fields)


async def test_the_case_from_thirteen_to_the_babys_eleventh_week(case: Case) -> None:
    # --- 13: a child protection plan and a sexual exploitation risk, recorded by the GP -----------------------
    await case.at("2022-04-05T09:00:00")
    await case.gp(gp_bundle(MOTHER, "2009-03-10", condition("cpp", MOTHER, CPP, "2022-04-01"),
                            condition("cse", MOTHER, CSE, "2022-04-01"), gp_encounter("e1", MOTHER, "2022-04-04")))
    assert await case.flags(MOTHER) == {CPP: "active", CSE: "active"}
    assert await case.deliver() == Counter()

    # --- 14: the plan ends; the GP had contact in the year before: told at once ------------------------------
    await case.at("2023-07-02T09:00:00")
    await case.gp(gp_bundle(MOTHER, "2009-03-10", condition("cpp", MOTHER, CPP, "2022-04-01", "2023-06-30"),
                            condition("cse", MOTHER, CSE, "2022-04-01"), gp_encounter("e2", MOTHER, "2023-01-10")))
    step = await case.deliver()
    assert step[("Y12345", "flag-closure")] == 1, step
    assert (await case.flags(MOTHER))[CPP] == "active"  # the source ended it; she stays flagged until 18

    # --- 17: adult A&E: the history goes to the safeguarding team ----------------------------------------------
    await case.at("2026-04-10T23:00:00")
    await case.hl7(message("ADT^A04", mother_pid(), pv1("AE", "A&E", "V-AE-1", "20260410224500"),
                           ts="20260410230000"))
    step = await case.deliver()
    assert step[("ZSG001", "adult-setting-presentation")] == 1

    # --- 17: early pregnancy unit, with her 16-year-old partner named: unborn concern, household change -------
    await case.at("2026-04-20T10:00:00")
    partner = seg("NK1", {1: "1", 2: "PLACEHOLDER^Jordan", 3: "PTN^Partner^HL70063", 15: "M", 16: "20100115"})
    await case.hl7(message("ADT^A04", mother_pid(), partner, pv1("EPU", "EPU", "V-EPU-1", "20260420093000"),
                           ts="20260420100000"))
    assert (await case.flags(MOTHER))[UNBORN] == "active"
    step = await case.deliver()
    for ods in ("ZMS001", "ZHV001", "ZCS001"):
        assert step[(ods, "pregnancy-under-18-or-history")] == 1, step
    assert step[("ZCS001", "change-in-household")] == 1, step

    # --- the birth; the father, 16, named on the baby's record --------------------------------------------------
    await case.at("2026-11-20T08:00:00")
    father = seg("NK1", {1: "1", 2: "PLACEHOLDER^Jordan", 3: "FTH^Father^HL70063", 15: "M", 16: "20100115"})
    await case.hl7(message("ADT^A01", baby_pid(), father, pv1("501", "MATWARD", "V-BIRTH-1", "20261120060000"),
                           ts="20261120080000"))
    baby_flags = await case.flags(BABY)
    assert baby_flags[CHILD_CONCERN] == "active"
    derived_fathers = (await case.fhir("Patient", _tag=DERIVED)).get("entry", [])
    assert len(derived_fathers) == 1 and derived_fathers[0]["resource"]["birthDate"] == "2010-01-15"
    step = await case.deliver()
    assert step[("ZHV001", "birth")] == 1 and step[("Y12345", "birth")] == 1, step
    assert step[("ZCS001", "young-father")] == 1, step

    # --- discharged; 15 days on, no health visiting contact: a handover gap -----------------------------------
    await case.at("2026-11-22T12:00:00")
    await case.hl7(message("ADT^A03", baby_pid(), pv1("501", "MATWARD", "V-BIRTH-1", "20261120060000",
                                                        "20261122110000"), ts="20261122120000"))
    await case.deliver()
    await case.at("2026-12-07T09:00:00")
    await case.daily()
    step = await case.deliver()
    assert step[("ZHV001", "handover-gap")] == 1, step

    # --- the 6-8 week review not brought (HV) --------------------------------------------------------------------
    await case.at("2027-01-15T09:00:00")
    await case.hv(**{
        "people.csv": ("local_patient_id,nhs_number,nhs_number_status,person_birth_date,person_stated_gender_code,"
                       "postcode,gp_practice_code,person_family_name,person_given_name\n"
                       f"HVB1,{BABY},01,2026-11-20,1,ZZ99 1AA,Y12345,SYNTHETIC,Robin\n"),
        "care_contacts.csv": ("care_contact_id,local_patient_id,care_contact_date,care_contact_time,"
                              "contact_duration_minutes,contact_type,attended_or_did_not_attend,care_professional_name,"
                              "care_professional_team,contact_location_type\n"
                              "HVC1,HVB1,2027-01-14,10:00,30,6_8_WEEK_REVIEW,3,HV Practitioner ONE,Team A,CLINIC\n")})
    step = await case.deliver()
    assert (await case.flags(BABY)).get("repeated-was-not-brought") == "active"  # one is enough: flagged child
    assert step[("Y12345", "was-not-brought-pattern")] == 1 and step[("ZHV001", "was-not-brought-pattern")] == 1

    # --- week 11: every no-show of the baby was-not-brought; each notification delivered once ------------------
    await case.at("2027-02-05T09:00:00")
    noshows = await case.fhir("Appointment", **{"patient.identifier": f"{NHS}|{BABY}", "status": "noshow"})
    assert noshows["total"] >= 1
    assert all(x["valueCodeableConcept"]["coding"][0]["code"] == "was-not-brought"
               for e in noshows["entry"] for x in e["resource"]["extension"])
    assert set(case.by_id.values()) == {1}  # every notification delivered once, none twice
    assert case.delivered[("ZSG001", "adult-setting-presentation")] == 2  # A&E, then the early pregnancy unit

    # --- 18: child flags end, history flags start ------------------------------------------------------------------
    await case.at("2027-03-11T09:00:00")
    await case.daily()
    flags = await case.flags(MOTHER)
    assert flags.get("history-of-child-safeguarding") == "active"
    assert flags[CPP] == "inactive"  # the plan's continuity ended on the 18th birthday
    assert flags[CSE] == "active"  # the GP has not ended this one: a source's flag is the source's to end


async def test_controls_raise_nothing(case: Case) -> None:
    # a 17-year-old with no history in adult A&E
    await case.at("2026-04-10T23:00:00")
    pid = seg("PID", {1: "1", 3: f"{CONTROL}^^^NHS^NH~CTL01^^^RX1^MR", 5: "CONTROL^Sam", 7: "20090101", 8: "M",
                      32: "NSTS01"})
    await case.hl7(message("ADT^A04", pid, pv1("AE", "A&E", "V-CTL-1", "20260410224500"), ts="20260410230000"))
    # a one-off no-show for an adult
    adult = seg("PID", {1: "1", 3: "9990030030^^^NHS^NH~CTL02^^^RX1^MR", 5: "CONTROL^Alex", 7: "19900101", 8: "F",
                        32: "NSTS01"})
    sch = seg("SCH", {2: "CTL-APPT^EPR", 9: "30", 10: "min", 11: "^^^20260415100000", 25: "Noshow"})
    await case.hl7(message("SIU^S26^SIU_S12", sch, adult, ts="20260415120000"))
    await case.daily()
    assert await case.deliver() == Counter()
    assert (await case.fhir("Flag")).get("total", 0) == 0
    assert (await case.fhir("Communication")).get("total", 0) == 0
