from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from adapter.reconcile.standardise import (
    from_patient,
    given_keys,
    is_valid_nhs_number,
    normalise_postcode,
    parse_name,
    soundex,
)
from tests.reconcile.conftest import nhs, rec

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hl7v2"


@pytest.mark.parametrize(("given", "family", "expect_family", "order"), [
    ("BABY OF SMITH", "", "SMITH", None),
    ("", "BABY OF SMITH", "SMITH", None),
    ("", "SMITH BABY", "SMITH", None),
    ("Baby", "Smith", "SMITH", None),
    ("B/O", "Smith", "SMITH", None),
    ("TWIN 1", "SMITH", "SMITH", 1),
    ("Twin One", "Smith", "SMITH", 1),
    ("TWIN II", "SMITH", "SMITH", 2),
    ("TWIN I", "SMITH", "SMITH", 1),
    ("Baby 2 of", "Smith", "SMITH", 2),
    ("INFANT", "Smith-Jones", "SMITHJONES", None),
    ("NEWBORN", "SMITH", "SMITH", None),
    ("UNBORN TWIN 2", "SMITH", "SMITH", 2),
])
def test_placeholders_give_no_forename_and_a_birth_order(given: str, family: str, expect_family: str,
                                                          order: int | None) -> None:
    parsed = parse_name(given, family)
    assert parsed.placeholder and parsed.given is None
    assert parsed.family == expect_family and parsed.birth_order == order


def test_real_names_are_cleaned_not_placeholders() -> None:
    p = parse_name("Mrs Mary-Jane Ann", "O'Neil-Smith")
    assert not p.placeholder and p.given == "MARYJANE" and p.family == "ONEILSMITH"
    assert p.family_parts == ("ONEIL", "SMITH")


def test_nicknames_map_to_canonical_names() -> None:
    assert given_keys("JESS") == ("JESSICA",)
    assert set(given_keys("ALEX")) == {"ALEXANDER", "ALEXANDRA"}
    assert given_keys("ZEB") == ("ZEB",)
    r = rec(given_name="Jess", family_name="Example")
    assert r.given == "JESSICA" and r.given_raw == "JESS"
    assert rec(given_name="Alex").given == "ALEX"          # ambiguous: kept as written


def test_nhs_numbers_failing_modulus_11_are_nulled() -> None:
    good = nhs(1234)
    assert is_valid_nhs_number(good)
    bad = good[:9] + str((int(good[9]) + 1) % 10)
    assert rec(nhs_number=bad).nhs_number is None
    assert rec(nhs_number=f"{good[:3]} {good[3:6]} {good[6:]}", nhs_number_status="01").nhs_number == good
    assert rec(nhs_number=good, nhs_number_status="NSTS01").nhs_verified
    assert not rec(nhs_number=good, nhs_number_status="02").nhs_verified


def test_mothers_nhs_number_on_the_baby_is_nulled() -> None:
    mother = nhs(555)
    baby = rec(nhs_number=mother, mother_nhs_number=mother, given_name="BABY OF X", birth_date="2026-01-01")
    assert baby.nhs_number is None and baby.mother_nhs_number == mother


def test_postcodes_dates_sex() -> None:
    assert normalise_postcode("xa16 0qj") == ("XA16 0QJ", "XA16", "XA16 0")
    assert normalise_postcode("XA16") == ("XA16", "XA16", None)
    assert normalise_postcode("not a postcode") == (None, None, None)
    r = rec(birth_date="2024-02-30", sex="unknown", due_date="2026-05-01")
    assert r.birth_date is None and r.sex is None and r.due_date == date(2026, 5, 1) and r.is_unborn
    assert rec(sex="female").sex == "F" and rec(sex="male").sex == "M"
    assert soundex("ROBERT") == soundex("RUPERT") == "R163"


def _patients(path: Path) -> list[dict]:
    return [r for r in json.loads(path.read_text()) if r.get("resourceType") == "Patient"]


def test_from_patient_reads_carethread_patients() -> None:
    newborn = _patients(GOLDEN / "ADT_A01" / "001-newborn-with-mother-and-father.expected.json")[0]
    r = from_patient(newborn, source="maternity", mother_nhs="9990001006")
    assert r.nhs_number == "9990001014" and r.nhs_status == "08" and not r.nhs_verified
    assert r.given is None and r.family == "SYNTHETIC" and r.sex == "M"
    assert r.birth_date == date(2026, 9, 1) and r.postcode == "ZZ99 1AA"
    assert r.local_id == "https://fhir.carethread.org/Id/maternity/RX1|M100002"
    assert r.mother_nhs_number == "9990001006"
    twin = _patients(GOLDEN / "ADT_A04" / "027-multiple-birth-order.expected.json")[0]
    assert from_patient(twin, source="maternity").birth_order == 2
    gp = _patients(GOLDEN / "ADT_A04" / "016-gp-practice-ods.expected.json")[0]
    assert from_patient(gp, source="maternity").gp_practice == "Y12345"


def test_from_patient_minimal_and_bool_multiple_birth() -> None:
    r = from_patient({"resourceType": "Patient", "id": "x", "multipleBirthBoolean": True,
                      "multipleBirthInteger": True}, source="gp")
    assert r.key == "x" and r.birth_order is None and r.nhs_number is None and r.given is None
