"""One test per rule branch, driven through the pipeline (HL7 v2, health visiting exports, GP bundles)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.errors import ConfigError
from adapter.rules import load_rules, run_daily
from tests.rules.conftest import Env, adt, father, noshow, obx, pid, pv1

NHS = ["9990020000", "9990020019", "9990020027", "9990020035", "9990020043", "9990020051", "9990020078",
       "9990020086", "9990020094", "9990020108"]
CPP, CSE, CONCERN, UNBORN = "342191000000101", "919461000000108", "836881000000105", "878111000000109"
RULE_URL = "https://fhir.carethread.org/safeguarding-rule/"


def detail(flag: dict) -> list[str]:
    return [e["valueReference"]["reference"] for e in flag.get("extension", [])]


def provenance_of(env: Env, flag: dict) -> dict:
    [prov] = [p for p in env.search("Provenance", [("target", f"Flag/{flag['id']}")])
              if p.get("policy", [""])[0].startswith(RULE_URL) and p["activity"]["coding"][0]["code"] == "CREATE"]
    return prov


# --- declarations -----------------------------------------------------------------------------------------

def test_shipped_rules_load_and_every_rule_id_is_a_code() -> None:
    from adapter.notify.communications import rule_codes
    rules = load_rules()
    assert set(rules.rules) <= set(rule_codes())
    assert rules["was-not-brought-pattern"]["count"] == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nrules:\n  no-such-rule: {}\n", "site.yaml:3: unknown rule id"),
    ("version: 1\nrules:\n  birth:\n    window_days: 10\n    colour: red\n", "site.yaml:5: unknown parameter 'colour'"),
    ("version: 1\nrules:\n  birth:\n    window_days: soon\n", "site.yaml:4: rule birth parameter window_days"),
    ("version: 1\nrules:\n  birth:\n    priority: whenever\n", "site.yaml:4: rule birth parameter priority"),
])
def test_a_bad_overlay_stops_start_up_at_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(site)
    assert expected in info.value.message.replace(str(tmp_path) + "/", "")


def test_an_overlay_replaces_parameters_one_by_one(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("version: 1\nrules:\n  was-not-brought-pattern:\n    count: 3\n")
    rules = load_rules(site)
    assert rules["was-not-brought-pattern"]["count"] == 3 and rules["was-not-brought-pattern"]["window_days"] == 90


# --- rule 1: continuity past 16 and adult-setting presentation ------------------------------------------------

def test_seventeen_with_a_child_flag_in_adult_a_and_e_notifies_the_safeguarding_team(env: Env) -> None:
    env.hl7(adt("A04", pid(NHS[0], "M1", "Amber", "20090115"), pv1("420", "20260101080000", visit="V0"),
                obx(CPP, "20220101")),
            adt("A01", pid(NHS[0], "M1", "Amber", "20090115"), pv1("180", "20260520080000", visit="V1",
                                                                     location="AE")))
    assert env.recipients("adult-setting-presentation") == {"ZSG001"}
    [comm] = env.comms("adult-setting-presentation")
    assert comm["priority"] == "urgent" and comm["payload"][0]["contentReference"]["reference"].startswith("Flag/")
    assert comm["subject"]["reference"].startswith("Patient/")
    recorded = env.search("Provenance", [("target", f"Communication/{comm['id']}")])
    assert recorded and recorded[0]["policy"] == [RULE_URL + "adult-setting-presentation"]


def test_the_child_flag_arriving_after_the_adult_setting_encounter_still_notifies(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[0], "M1", "Amber", "20090115"), pv1("180", "20260520080000", visit="V1")))
    assert env.comms("adult-setting-presentation") == []
    env.hl7(adt("A08", pid(NHS[0], "M1", "Amber", "20090115"), obx(CPP, "20220101"), ts="20260521090000"))
    assert env.recipients("adult-setting-presentation") == {"ZSG001"}


@pytest.mark.parametrize(("dob", "service", "alert"), [
    ("20110115", "180", True),    # 15: a child's setting anyway
    ("20090115", "420", True),    # paediatrics: not an adult setting
    ("20090115", "180", False),   # no child flag
])
def test_no_adult_setting_notification_otherwise(env: Env, dob: str, service: str, alert: bool) -> None:
    extra = [obx(CPP, "20220101")] if alert else []
    env.hl7(adt("A01", pid(NHS[0], "M1", "Amber", dob), pv1(service, "20260520080000", visit="V1", location="WARD"),
                *extra))
    assert env.comms("adult-setting-presentation") == []


def test_a_child_flag_the_source_ends_keeps_the_person_flagged_until_18(env: Env) -> None:
    env.hv(people=f"P1,{NHS[1]},01,2010-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
           concerns="C1,P1,342191000000101,2020-01-01,2026-01-31,Someone\n")
    [flag] = env.derived_flags("continuity-past-16")
    [source] = [f for f in env.search("Flag") if "rule" not in f["meta"]["source"]]
    assert flag["status"] == "active" and flag["code"]["coding"][0]["code"] == CPP
    assert detail(flag) == [f"Flag/{source['id']}"]
    assert flag["meta"]["profile"] == ["https://fhir.carethread.org/StructureDefinition/CarethreadFlag"]
    master = env.search("Patient", [("_tag", "https://fhir.carethread.org/CodeSystem/record-type|master")])[0]
    assert flag["subject"]["reference"] == f"Patient/{master['id']}"
    prov = provenance_of(env, flag)
    assert prov["policy"] == [RULE_URL + "continuity-past-16"]
    assert prov["reason"][0]["coding"][0]["code"] == "continuity-past-16"
    whats = [e["what"] for e in prov["entity"]]
    assert {"reference": f"Flag/{source['id']}"} in whats
    assert any(w.get("identifier", {}).get("system", "").endswith("/source/health-visiting") for w in whats)


def test_a_plan_end_flag_past_its_retention_window_is_not_continued(env: Env) -> None:
    env.hv(people=f"P1,{NHS[1]},01,2010-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
           concerns=f"C1,P1,{CONCERN},2020-01-01,2025-01-31,Someone\n")
    assert env.derived_flags("continuity-past-16") == []


def test_a_plan_end_flag_within_its_retention_window_is_continued_then_ended(env: Env) -> None:
    env.hv(people=f"P1,{NHS[1]},01,2012-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
           concerns=f"C1,P1,{CONCERN},2020-01-01,2026-01-31,Someone\n")
    [flag] = env.derived_flags("continuity-past-16")
    assert flag["status"] == "active"
    env.at(datetime(2027, 2, 2, 9, tzinfo=UTC))
    assert run_daily(env.store, env.pipeline.rules, env.pipeline.clock()) >= 1
    [flag] = env.derived_flags("continuity-past-16")
    assert flag["status"] == "inactive" and flag["period"]["end"] == "2027-01-31"


# --- rule 2: at 18 -----------------------------------------------------------------------------------------

def test_at_18_continuity_ends_on_the_birthday_and_a_history_flag_starts(env: Env) -> None:
    env.hv(people=f"P1,{NHS[1]},01,2008-06-10,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
           concerns=f"C1,P1,{CPP},2020-01-01,2026-01-31,Someone\nC2,P1,{CONCERN},2021-01-01,2026-03-01,Someone\n")
    assert len(env.derived_flags("continuity-past-16")) == 2
    assert env.derived_flags("at-18") == []
    env.at(datetime(2026, 6, 10, 1, tzinfo=UTC))
    run_daily(env.store, env.pipeline.rules, env.pipeline.clock())
    assert {(f["status"], f["period"].get("end")) for f in env.derived_flags("continuity-past-16")} == \
        {("inactive", "2026-06-10")}
    [history] = env.derived_flags("at-18")  # for the plan only: CONCERN is not a history code
    assert history["code"]["coding"][0]["code"] == "history-of-child-safeguarding"
    assert history["period"]["start"] == "2026-06-10" and history["status"] == "active"


# --- rule 3: pregnancy ------------------------------------------------------------------------------------

def test_a_pregnancy_under_18_creates_an_unborn_child_concern_and_notifies(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[2], "M2", "Amber", "20090912"), pv1("501", "20260301080000", visit="V2",
                                                                     location="EPU")))
    [flag] = env.derived_flags("pregnancy-under-18-or-history")
    assert flag["code"]["coding"][0]["code"] == UNBORN and flag["period"]["start"] == "2026-03-01"
    assert env.recipients("pregnancy-under-18-or-history") == {"ZMS001", "ZHV001", "ZCS001"}
    assert detail(flag)[0].startswith("Encounter/")


def test_a_pregnancy_over_18_without_history_creates_nothing(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[2], "M2", "Amber", "19990912"), pv1("501", "20260301080000", visit="V2")))
    assert env.derived_flags("pregnancy-under-18-or-history") == []


def test_a_pregnancy_over_18_with_safeguarding_history_creates_a_concern(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[2], "M2", "Amber", "19990912"), pv1("501", "20260301080000", visit="V2"),
                obx(CSE, "20130101")))
    [flag] = env.derived_flags("pregnancy-under-18-or-history")
    refs = detail(flag)  # the encounter and the safeguarding history behind the concern
    assert refs[0].startswith("Encounter/") and len(refs) >= 2 and all(r.startswith("Flag/") for r in refs[1:])


# --- rule 4: birth -----------------------------------------------------------------------------------------

def _mother_pregnant() -> bytes:
    return adt("A01", pid(NHS[2], "M2", "Amber", "20090912"), pv1("501", "20260110080000", visit="V2"),
               ts="20260110090000")


def _baby() -> bytes:
    return adt("A01", pid(NHS[3], "B1", "", "20260501", "M", mother=NHS[2]), pv1("501", "20260501080000", visit="V3"))


def test_a_newborn_of_a_mother_with_an_unborn_concern_gets_its_own_flag(env: Env) -> None:
    env.hl7(_mother_pregnant(), _baby())
    [mother_flag] = env.derived_flags("pregnancy-under-18-or-history")
    [baby_flag] = env.derived_flags("birth")
    assert baby_flag["code"]["coding"][0]["code"] == CONCERN
    assert detail(baby_flag) == [f"Flag/{mother_flag['id']}"]
    assert baby_flag["subject"] != mother_flag["subject"]
    assert env.recipients("birth") == {"ZHV001", "Y12345"}


def test_the_birth_before_the_mothers_concern_still_flags_the_baby_once_it_arrives(env: Env) -> None:
    env.hl7(adt("A04", pid(NHS[2], "M2", "Amber", "20090912")), _baby())
    assert env.derived_flags("birth") == []
    env.hl7(_mother_pregnant())
    assert len(env.derived_flags("birth")) == 1


def test_a_newborn_of_an_unflagged_mother_gets_nothing(env: Env) -> None:
    env.hl7(adt("A04", pid(NHS[2], "M2", "Amber", "19990912")), _baby())
    assert env.derived_flags("birth") == []


# --- rule 5: was not brought -------------------------------------------------------------------------------

def test_two_was_not_brought_within_90_days_across_sources_make_a_pattern(env: Env) -> None:
    baby = pid(NHS[4], "B2", "Robin", "20250101", "M")
    env.hl7(adt("A04", baby), noshow("A1", "20260210103000", baby))
    assert env.derived_flags("was-not-brought-pattern") == []
    env.hv(people=f"P2,{NHS[4]},01,2025-01-01,1,ZZ99 1AA,Y12345,SYNTHETIC,Robin\n",
           contacts="K1,P2,2026-04-01,10:30,30,CLINIC,3,HV ONE,Team A,CLINIC\n")
    [flag] = env.derived_flags("was-not-brought-pattern")
    assert flag["code"]["coding"][0]["code"] == "repeated-was-not-brought"
    assert len(detail(flag)) == 2
    assert env.recipients("was-not-brought-pattern") == {"Y12345", "ZHV001"}


def test_one_was_not_brought_for_an_unflagged_child_is_not_a_pattern(env: Env) -> None:
    baby = pid(NHS[4], "B2", "Robin", "20250101", "M")
    env.hl7(adt("A04", baby), noshow("A1", "20260210103000", baby), noshow("A2", "20260601103000", baby))
    assert env.derived_flags("was-not-brought-pattern") == []  # 111 days apart


def test_one_was_not_brought_is_enough_when_the_mother_is_flagged(env: Env) -> None:
    env.hl7(adt("A04", pid(NHS[2], "M2", "Amber", "19990912"), obx(CPP, "20250101")))
    baby = pid(NHS[4], "B2", "Robin", "20250101", "M", mother=NHS[2])
    env.hl7(adt("A04", baby), noshow("A1", "20260210103000", baby))
    assert len(env.derived_flags("was-not-brought-pattern")) == 1


# --- rule 6: fathers and partners ---------------------------------------------------------------------------

def test_a_father_under_18_gets_a_young_parent_flag_on_a_derived_record(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[3], "B1", "", "20260501", "M"), father("Jordan", "20090703"),
                pv1("501", "20260501080000", visit="V3")))
    [flag] = env.derived_flags("young-father")
    assert flag["code"]["coding"][0]["code"] == "young-parent"
    [dad] = [p for p in env.search("Patient", [("_tag", "https://fhir.carethread.org/CodeSystem/record-type|derived")])]
    assert dad["identifier"][0]["system"] == "https://fhir.carethread.org/Id/derived"
    masters = env.search("Patient", [("link", f"Patient/{dad['id']}")])
    assert flag["subject"]["reference"] in {f"Patient/{m['id']}" for m in masters} | {f"Patient/{dad['id']}"}
    prov = env.search("Provenance", [("target", f"Patient/{dad['id']}")])
    assert any(p.get("policy") == [RULE_URL + "young-father"] for p in prov)
    assert env.recipients("young-father") == {"ZCS001", "ZHV001"}


def test_an_adult_father_gets_no_young_parent_flag(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[3], "B1", "", "20260501", "M"), father("Jordan", "19990703"),
                pv1("501", "20260501080000", visit="V3")))
    assert env.derived_flags("young-father") == []


def test_a_partner_in_the_household_of_a_flagged_child_is_a_change_in_household(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[0], "M1", "Amber", "20090115"), obx(CPP, "20220101"),
                father("Lee", "19990703", code="FTH")))
    assert env.recipients("change-in-household") == {"ZCS001", "ZHV001"}


def test_the_same_partner_in_another_record_is_not_a_second_change_in_household(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[0], "M1", "Amber", "20090115"), obx(CPP, "20220101"),
                father("Lee", "19990703", code="FTH")))
    first = len(env.comms("change-in-household"))
    env.hl7(adt("A01", pid(NHS[0], "M2", "Amber", "20090115"), father("Lee", "19990703", code="FTH"),
                ts="20260502090000"))  # another record of her (MRN M2) naming the same man
    assert len(env.comms("change-in-household")) == first == 2
    env.hl7(adt("A01", pid(NHS[0], "M2", "Amber", "20090115"), father("Sam", "20000101", code="FTH"),
                ts="20260503090000"))  # someone new
    assert len(env.comms("change-in-household")) == 4


def test_a_partner_of_an_unflagged_person_is_not_notified(env: Env) -> None:
    env.hl7(adt("A01", pid(NHS[0], "M1", "Amber", "20090115"), father("Lee", "19990703")))
    assert env.comms("change-in-household") == []


# --- rule 7: closure and handover ---------------------------------------------------------------------------

def test_a_flag_ending_notifies_every_organisation_with_recent_contact(env: Env) -> None:
    env.hv(people=f"P1,{NHS[1]},01,2020-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
           contacts="K1,P1,2026-02-01,10:30,30,CLINIC,5,HV ONE,Team A,CLINIC\n",
           concerns=f"C1,P1,{CONCERN},2024-01-01,2026-05-20,Someone\n")
    assert env.recipients("flag-closure") == {"ZHV001"}


def test_a_long_ago_closure_notifies_nobody(env: Env) -> None:
    env.hv(people=f"P1,{NHS[1]},01,2000-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
           contacts="K1,P1,2026-02-01,10:30,30,CLINIC,5,HV ONE,Team A,CLINIC\n",
           concerns=f"C1,P1,{CONCERN},2014-01-01,2016-05-20,Someone\n")
    assert env.comms("flag-closure") == []


def _discharge(days_hv: int | None) -> tuple[bytes, ...]:
    mother = adt("A04", pid(NHS[2], "M2", "Amber", "19990912"), obx(CPP, "20250101"))
    baby = pid(NHS[3], "B1", "", "20260501", "M", mother=NHS[2])
    out = (mother, adt("A03", baby, pv1("501", "20260501080000", visit="V3", discharge="20260503120000")))
    return out


def test_no_health_visiting_contact_within_14_days_of_discharge_is_a_handover_gap(env: Env) -> None:
    env.at(datetime(2026, 5, 4, 9, tzinfo=UTC))
    env.hl7(*_discharge(None))
    assert env.comms("handover-gap") == []  # the clock is still running
    env.at(datetime(2026, 5, 18, 9, tzinfo=UTC))
    run_daily(env.store, env.pipeline.rules, env.pipeline.clock())
    assert env.recipients("handover-gap") == {"ZHV001", "Y12345"}


def test_a_health_visiting_contact_in_time_stops_the_clock(env: Env) -> None:
    env.at(datetime(2026, 5, 4, 9, tzinfo=UTC))
    env.hl7(*_discharge(None))
    env.hv(people=f"P3,{NHS[3]},01,2026-05-01,1,ZZ99 1AA,Y12345,SYNTHETIC,\n",
           contacts="K1,P3,2026-05-10,10:30,60,NEW_BIRTH_VISIT,5,HV ONE,Team A,HOME\n")
    env.at(datetime(2026, 5, 20, 9, tzinfo=UTC))
    run_daily(env.store, env.pipeline.rules, env.pipeline.clock())
    assert env.comms("handover-gap") == []


# --- idempotency ---------------------------------------------------------------------------------------------

def test_the_same_inputs_again_create_nothing_new(env: Env) -> None:
    def inputs() -> None:
        env.hl7(_mother_pregnant(), _baby(),
                adt("A01", pid(NHS[3], "B1", "", "20260501", "M", mother=NHS[2]), father("Jordan", "20090703"),
                    pv1("501", "20260501080000", visit="V3")),
                noshow("A9", "20260520103000", pid(NHS[3], "B1", "", "20260501", "M", mother=NHS[2])))
        env.hv(people=f"P1,{NHS[1]},01,2010-03-01,2,ZZ99 1AA,Y12345,SYNTHETIC,Sky\n",
               concerns=f"C1,P1,{CPP},2020-01-01,2026-01-31,Someone\n")
    inputs()
    before = env.versions()
    assert env.derived_flags() and env.comms()
    inputs()
    run_daily(env.store, env.pipeline.rules, env.pipeline.clock())
    assert env.versions() == before
