from __future__ import annotations

import json
from itertools import count

import pytest

from adapter.reconcile.engine import Decision, InMemoryIndex, blocking_keys, decide, ingest
from adapter.reconcile.model import DEFAULT_MODEL, Model, ModelError, load_model
from adapter.reconcile.standardise import PersonRecord
from tests.reconcile.conftest import AS_OF, nhs, rec

HOME = {"family_name": "Example", "postcode": "XA1 2BC", "gp_practice": "Y01011"}


class World:
    """An in-memory store plus the shipped model: ingest records as the live path does."""

    def __init__(self, model: Model) -> None:
        self.index = InMemoryIndex()
        self.model = model
        self.ids = count(1)

    def add(self, r: PersonRecord) -> tuple[str, Decision]:
        return ingest(r, self.index, self.model, new_identity_id=lambda: f"I{next(self.ids)}", as_of=AS_OF)

    def decide(self, r: PersonRecord) -> Decision:
        return decide(r, self.index, self.model, as_of=AS_OF)


@pytest.fixture
def world(model: Model) -> World:
    return World(model)


def test_model_file_loads_and_is_checked() -> None:
    m = load_model()
    assert m.version and m.auto_link_probability > m.review_probability
    data = json.loads(DEFAULT_MODEL.read_text())
    data["comparisons"][1]["levels"][0]["label"] = "renamed"
    with pytest.raises(ModelError, match="birth_date levels"):
        Model.from_dict(data)
    data = json.loads(DEFAULT_MODEL.read_text())
    del data["version"]
    with pytest.raises(ModelError, match="version"):
        Model.from_dict(data)


def test_blocking_keys_are_day_month_swap_invariant() -> None:
    a = rec(given_name="Ava", birth_date="2010-03-04", **HOME)
    b = rec(given_name="Ava", birth_date="2010-04-03", **HOME)
    assert set(blocking_keys(a)) & set(blocking_keys(b))
    unborn = rec(given_name="UNBORN", due_date="2026-01-01", mother_nhs_number=nhs(3))
    assert all(k.startswith(("local:", "mother:")) for k in blocking_keys(unborn))


def test_new_then_deterministic_link(world: World) -> None:
    n = nhs(10)
    iid, d = world.add(rec(nhs_number=n, nhs_number_status="01", given_name="Ava", birth_date="2015-01-02", **HOME))
    assert d.action == "new" and d.grade == "certainly-not"
    d2 = world.decide(rec(source="health-visiting", nhs_number=n, given_name="AVA", birth_date="2015-01-02"))
    assert (d2.action, d2.identity_id, d2.rule, d2.grade) == ("link", iid, "deterministic-nhs-dob", "certain")
    assert d2.candidates[0].evidence and {e.field for e in d2.candidates[0].evidence} >= {"nhs_number", "birth_date"}


def test_twins_stay_apart(world: World) -> None:
    a, _ = world.add(rec(given_name="Alice", birth_date="2025-02-03", sex="female", **HOME))
    b, d = world.add(rec(given_name="Bella", birth_date="2025-02-03", sex="female", **HOME))
    assert d.action == "new" and a != b
    assert "same-dob-forename-clash" in d.candidates[0].cannot_link
    # each twin's next record finds its own identity
    assert world.decide(rec(source="health-visiting", given_name="ALICE", birth_date="2025-02-03", sex="female",
                            **HOME)).identity_id == a
    assert world.decide(rec(source="health-visiting", given_name="BELLA", birth_date="2025-02-03", sex="female",
                            **HOME)).identity_id == b


def test_baby_of_placeholder_goes_to_review_between_twins(world: World) -> None:
    world.add(rec(given_name="Alice", birth_date="2025-02-03", sex="female", **HOME))
    world.add(rec(given_name="Bella", birth_date="2025-02-03", sex="female", **HOME))
    d = world.decide(rec(source="maternity", given_name="BABY OF EXAMPLE", birth_date="2025-02-03", sex="female",
                         **HOME))
    assert d.action == "review" and d.rule == "ambiguous" and len(d.also) == 2


def test_baby_of_placeholder_links_the_right_twin_when_sex_decides(world: World) -> None:
    alice, _ = world.add(rec(given_name="Alice", birth_date="2025-02-03", sex="female", **HOME))
    world.add(rec(given_name="Bobby", birth_date="2025-02-03", sex="male", **HOME))
    d = world.decide(rec(source="maternity", given_name="BABY OF EXAMPLE", birth_date="2025-02-03", sex="female",
                         **HOME))
    assert d.action == "link" and d.identity_id == alice


def test_adolescent_adult_record_with_new_local_id_links_on_nhs(world: World) -> None:
    n = nhs(16)
    child, _ = world.add(rec(local_id="GP-1", nhs_number=n, nhs_number_status="01", given_name="Jessica",
                             birth_date="2009-11-20", sex="female", **HOME))
    d = world.decide(rec(source="maternity", local_id="RX1A-77", nhs_number=n, nhs_number_status="02",
                         given_name="Jess", family_name="Example", birth_date="2009-11-20", sex="female",
                         postcode="XB9 9ZZ"))
    assert d.action == "link" and d.identity_id == child and d.rule == "deterministic-nhs-dob"


def test_mothers_nhs_number_on_baby_does_not_join_the_mother(world: World) -> None:
    m = nhs(20)
    mother, _ = world.add(rec(source="maternity", local_id="M1", nhs_number=m, nhs_number_status="01",
                              given_name="Amber", birth_date="2008-04-04", sex="female", **HOME))
    # caught by standardisation: the number equals the mother's on the same row
    baby = rec(source="maternity", local_id="M2", nhs_number=m, mother_nhs_number=m, given_name="BABY OF EXAMPLE",
               birth_date="2025-06-01", sex="male", **HOME)
    assert baby.nhs_number is None
    assert world.decide(baby).identity_id != mother
    # not caught (no mother's number on the row): the date of birth guard sends it to review
    d = world.decide(rec(source="health-visiting", nhs_number=m, given_name="Oscar", birth_date="2025-06-01",
                         sex="male", **HOME))
    assert d.action == "review" and d.rule == "cannot-link:dob-over-a-year"


def test_dates_of_birth_over_a_year_apart_cannot_link(world: World) -> None:
    iid, _ = world.add(rec(given_name="Ava", birth_date="2001-07-08", sex="female", **HOME))
    d = world.decide(rec(given_name="Ava", birth_date="2004-07-08", sex="female", **HOME))
    assert d.action != "link" and "dob-over-a-year" in d.candidates[0].cannot_link


def test_day_month_swap_can_link(world: World) -> None:
    iid, _ = world.add(rec(given_name="Ava", birth_date="2001-07-08", sex="female", **HOME))
    d = world.decide(rec(source="health-visiting", given_name="Ava", birth_date="2001-08-07", sex="female", **HOME))
    assert d.action == "link" and d.identity_id == iid and d.rule == "probabilistic"
    levels = {e.field: e.level for e in d.candidates[0].evidence}
    assert levels["birth_date"] == "day-month-swap"


def test_different_valid_nhs_numbers_never_link(world: World) -> None:
    world.add(rec(nhs_number=nhs(30), given_name="Ava", birth_date="2001-07-08", sex="female", **HOME))
    d = world.decide(rec(nhs_number=nhs(31), given_name="Ava", birth_date="2001-07-08", sex="female", **HOME))
    assert d.action != "link"
    assert d.candidates[0].cannot_link == ("different-nhs-number",) and d.candidates[0].grade == "certainly-not"


def test_unborn_record_follows_the_newborn_and_twins_go_to_review(world: World) -> None:
    m = nhs(50)
    mother_ids = {"source": "maternity", "mother_nhs_number": m, "mother_local_id": "M50"}
    unborn, _ = world.add(rec(given_name="UNBORN", due_date="2025-03-10", sex="unknown", **mother_ids, **HOME))
    d = world.decide(rec(given_name="BABY OF EXAMPLE", birth_date="2025-03-01", sex="male", **mother_ids, **HOME))
    assert (d.action, d.identity_id, d.rule) == ("link", unborn, "relational-unborn")
    # a twin pregnancy: two pre-birth records -> the newborn goes to review
    m2 = nhs(60)
    twin_ids = {"source": "maternity", "mother_nhs_number": m2, "mother_local_id": "M60"}
    home2 = {**HOME, "postcode": "XC3 4DE"}
    world.add(rec(given_name="UNBORN", due_date="2025-05-10", **twin_ids, **home2))
    second = world.add(rec(given_name="UNBORN", due_date="2025-05-10", **twin_ids, **home2))[1]
    assert second.action == "review" and second.rule == "relational-pregnancy-ambiguous"
    d = world.decide(rec(given_name="BABY OF EXAMPLE", birth_date="2025-05-01", **twin_ids, **home2))
    assert d.action == "review" and d.rule == "twins"


def test_unborn_twins_with_birth_orders_link_by_order(world: World) -> None:
    m = nhs(70)
    ids = {"source": "maternity", "mother_nhs_number": m, "mother_local_id": "M70"}
    one, _ = world.add(rec(given_name="UNBORN TWIN 1", due_date="2025-05-10", **ids, **HOME))
    two, d = world.add(rec(given_name="UNBORN TWIN 2", due_date="2025-05-10", **ids, **HOME))
    assert d.action == "new" and one != two
    d = world.decide(rec(given_name="TWIN 2", birth_date="2025-05-01", **ids, **HOME))
    assert (d.action, d.identity_id, d.rule) == ("link", two, "relational-unborn-birth-order")


def test_newborn_record_bridges_its_pre_birth_identity(world: World) -> None:
    m = nhs(80)
    unborn, _ = world.add(rec(source="maternity", given_name="UNBORN", due_date="2025-03-10", mother_nhs_number=m,
                              **HOME))
    n = nhs(81)
    gp, _ = world.add(rec(source="gp", nhs_number=n, nhs_number_status="01", given_name="Leo",
                          birth_date="2025-03-05", sex="male", **HOME))
    iid, d = world.add(rec(source="health-visiting", nhs_number=n, given_name="Leo", birth_date="2025-03-05",
                           sex="male", mother_nhs_number=m, **HOME))
    assert d.action == "link" and iid == gp and d.merge == [unborn]
    assert len(world.index.members(unborn)) == 3      # folded into the GP identity
