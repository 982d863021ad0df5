from __future__ import annotations

from datetime import date

import pytest

from adapter.reconcile.rules import (
    CANNOT_LINK,
    cannot_link,
    deterministic,
    forenames_conflict,
    in_due_window,
    relational,
)
from tests.reconcile.conftest import AS_OF, nhs, rec


def cl(a, b) -> str | None:  # noqa: ANN001
    rule = cannot_link(a, b, as_of=AS_OF)
    assert rule == cannot_link(b, a, as_of=AS_OF), "cannot-link rules are symmetric"
    assert rule is None or rule in CANNOT_LINK
    return rule


@pytest.mark.parametrize(("a", "b", "conflict"), [
    ("OLIVER", "OLIVER", False),
    ("JESS", "JESSICA", False),        # nickname
    ("ALEX", "ALEXANDRA", False),
    ("J", "JAMES", False),             # initial
    ("AMELIA", "AMLEIA", False),       # one transposition
    ("MIA", "MIU", False),             # one edit
    ("CHRISTOPHER", "CHRISTPHOR", False),
    ("OLIVER", "OLIVIA", True),        # the twin pattern
    ("HARRY", "HARVEY", True),
    ("ALICE", "BOB", True),
    ("J", "OLIVER", True),
])
def test_forenames_conflict(a: str, b: str, conflict: bool) -> None:
    assert forenames_conflict(rec(given_name=a), rec(given_name=b)) is conflict


def test_different_valid_nhs_numbers_never_link() -> None:
    a = rec(nhs_number=nhs(1), given_name="Ava", family_name="Example", birth_date="2010-03-04")
    b = rec(nhs_number=nhs(2), given_name="Ava", family_name="Example", birth_date="2010-03-04")
    assert cl(a, b) == "different-nhs-number"


def test_dates_of_birth_over_a_year_apart_unless_swapped() -> None:
    a = rec(given_name="Ava", birth_date="2010-03-04")
    assert cl(a, rec(given_name="Ava", birth_date="2012-03-04")) == "dob-over-a-year"
    assert cl(a, rec(given_name="Ava", birth_date="2010-04-03")) is None      # day/month swap
    assert cl(a, rec(given_name="Ava", birth_date="2011-03-04")) is None      # a year-digit typo


def test_same_dob_with_clashing_forenames_and_the_sibling_pattern() -> None:
    a = rec(given_name="Alice", birth_date="2025-01-01", sex="female")
    assert cl(a, rec(given_name="Bella", birth_date="2025-01-01", sex="female")) == "same-dob-forename-clash"
    assert cl(a, rec(given_name="Bella", birth_date="2025-09-01", sex="female")) == "forename-and-dob-clash"
    assert cl(a, rec(given_name="Bella", sex="female")) == "forename-clash-no-dob"


def test_birth_orders_and_placeholders_of_a_multiple_birth() -> None:
    t1 = rec(given_name="TWIN 1", family_name="Example", birth_date="2025-01-01")
    t2 = rec(given_name="TWIN 2", family_name="Example", birth_date="2025-01-01")
    bo = rec(given_name="BABY OF EXAMPLE", birth_date="2025-01-01")
    assert cl(t1, t2) == "different-birth-order"
    assert cl(t1, bo) == "multiple-birth-placeholder"


def test_same_source_babies_of_one_mother_are_twins() -> None:
    m = nhs(77)
    a = rec(source="maternity", local_id="M1", given_name="BABY", birth_date="2025-01-01", mother_nhs_number=m)
    b = rec(source="maternity", local_id="M2", given_name="BABY", birth_date="2025-01-01", mother_nhs_number=m)
    assert cl(a, b) == "same-source-birth-siblings"


def test_under_5_sex_clash_unless_the_same_forename() -> None:
    a = rec(given_name="BABY", birth_date="2025-01-01", sex="male")
    assert cl(a, rec(given_name="Ava", birth_date="2025-01-01", sex="female")) == "under-5-sex-clash"
    named = rec(given_name="Ava", birth_date="2025-01-01", sex="male")
    assert cl(named, rec(given_name="Ava", birth_date="2025-01-01", sex="female")) is None
    adult = rec(given_name="Sam", birth_date="1990-01-01", sex="male")
    assert cl(adult, rec(given_name="Sam", birth_date="1990-01-01", sex="female")) is None


def test_mother_and_child() -> None:
    mother = rec(source="maternity", local_id="M9", nhs_number=nhs(9), given_name="Amber", birth_date="2008-01-01")
    baby = rec(source="maternity", local_id="M10", given_name="BABY", birth_date="2025-01-01", mother_local_id="M9")
    assert cl(mother, baby) == "mother-and-child"
    baby2 = rec(source="gp", given_name="Ava", mother_nhs_number=nhs(9))
    assert cl(mother, baby2) == "mother-and-child"


def test_unborn_rules() -> None:
    m = nhs(31)
    unborn = rec(source="maternity", given_name="UNBORN", due_date="2025-03-01", mother_nhs_number=m)
    born = rec(source="maternity", given_name="BABY", birth_date="2025-02-20", mother_nhs_number=m)
    late = rec(source="maternity", given_name="BABY", birth_date="2025-04-15", mother_nhs_number=m)
    assert relational(born, unborn) and cl(born, unborn) is None
    assert not relational(late, unborn) and cl(late, unborn) == "unborn-outside-due-window"
    other_pregnancy = rec(source="maternity", given_name="UNBORN", due_date="2026-05-01", mother_nhs_number=m)
    assert cl(unborn, other_pregnancy) == "different-pregnancy"
    assert in_due_window(date(2025, 2, 1), date(2025, 1, 20))
    assert in_due_window(date(2025, 12, 2), date(2025, 2, 10))     # 2 Dec read as 12 Feb
    assert not in_due_window(date(2025, 1, 1), date(2025, 6, 1))


def test_deterministic_needs_nhs_dob_and_no_forename_conflict() -> None:
    n = nhs(40)
    a = rec(nhs_number=n, given_name="Jessica", birth_date="2009-05-05")
    assert deterministic(a, rec(nhs_number=n, given_name="Jess", birth_date="2009-05-05"))
    assert deterministic(a, rec(nhs_number=n, given_name="", birth_date="2009-05-05"))
    assert not deterministic(a, rec(nhs_number=n, given_name="Bella", birth_date="2009-05-05"))
    assert not deterministic(a, rec(nhs_number=n, given_name="Jessica", birth_date="2009-05-06"))
    assert not deterministic(a, rec(given_name="Jessica", birth_date="2009-05-05"))
