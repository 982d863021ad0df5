"""A synthetic health visiting export (the format of sandbox/health-visiting/README.md) for benchmarks and
load tests: families of a mother and one to three young children, their household (fathers, partners,
grandparents, siblings), 3-5 care contacts per person with a realistic mix of ATTENDED OR DID NOT ATTEND
codes, safeguarding concerns and service levels for a minority of families.

    python bench/hv_synthetic.py FOLDER [--people 10000] [--seed 0]

No real data: names come from a fixed list of invented words, NHS numbers from the 999 test range (every
one passing Modulus 11, a few deliberately failing). Dates are relative to a fixed reference day, so an export
depends only on its size and seed. Rows are written as they are made: memory stays flat as the export grows.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["REFERENCE", "COLUMNS", "write_export", "nhs_numbers"]

REFERENCE = date(2026, 6, 1)  # "today" of every export: contacts after it are booked (code 0)

COLUMNS: dict[str, list[str]] = {
    "people.csv": ["local_patient_id", "nhs_number", "nhs_number_status", "person_birth_date",
                   "person_stated_gender_code", "postcode", "gp_practice_code", "person_family_name",
                   "person_given_name"],
    "household_members.csv": ["household_member_id", "local_patient_id", "relationship", "member_family_name",
                              "member_given_name", "member_birth_date", "member_gender_code", "member_nhs_number",
                              "member_local_patient_id"],
    "safeguarding_concerns.csv": ["concern_id", "local_patient_id", "concern_snomed_code", "concern_start_date",
                                  "concern_end_date", "recorded_by"],
    "service_levels.csv": ["local_patient_id", "service_level", "service_level_start_date", "service_level_end_date"],
    "care_contacts.csv": ["care_contact_id", "local_patient_id", "care_contact_date", "care_contact_time",
                          "contact_duration_minutes", "contact_type", "attended_or_did_not_attend",
                          "care_professional_name", "care_professional_team", "contact_location_type"],
}

_FAMILY = ["SYNTHETIC", "EXAMPLE", "TESTER", "SAMPLE", "DUMMY", "FICTION", "MOCK", "PLACEHOLDER", "IMAGINARY",
           "PRETEND"]
_GIVEN_F = ["Amber", "Bea", "Cara", "Dee", "Eve", "Fay", "Gwen", "Hana", "Ivy", "Jo"]
_GIVEN_M = ["Alfie", "Ben", "Cal", "Dan", "Eli", "Finn", "Gus", "Hal", "Ike", "Jay"]
_PRACTICES = ["Y12345", "Y23456", "Y34567", "Y45678", "Y56789"]
_TEAMS = ["Example Locality Team A", "Example Locality Team B", "Example Locality Team C"]
_STAFF = ["HV Practitioner ONE", "HV Practitioner TWO", "HV Practitioner THREE", "HV Practitioner FOUR",
          "Nursery Nurse FIVE"]
# ATTENDED OR DID NOT ATTEND of a past contact: mostly attended, some missed or cancelled
_PAST_CODES = ["5"] * 74 + ["6"] * 6 + ["3"] * 8 + ["7"] * 1 + ["2"] * 6 + ["4"] * 5
# (SNOMED CT code, for a mother?, for a child?) from mappings/codes/safeguarding_codes.yaml
_CONCERNS_MOTHER = ["919461000000108", "342191000000101", "818901000000100", "878111000000109", "864491000000105"]
_CONCERNS_CHILD = ["836881000000105", "342191000000101", "1064961000000107", "375041000000100", "764841000000100"]
# Healthy Child Programme mandated contacts: (code, age in days at which it is due)
_MANDATED = [("NEW_BIRTH_VISIT", 12), ("6_8_WEEK_REVIEW", 49), ("1_YEAR_REVIEW", 330), ("2_YEAR_REVIEW", 820)]


def nhs_numbers(start: int = 0) -> Iterator[str]:
    """Distinct NHS numbers passing Modulus 11, in the 999 test range (never issued): 999 + 6 digits + check."""
    n = start
    while True:
        body = f"999{n % 1_000_000:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1)))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        n += 1
        if check != 10:
            yield body + str(check)


class _Export:
    """The open files of one export, each row written at once, and the counters of ids and rows."""

    def __init__(self, folder: Path, stack: ExitStack, rng: random.Random) -> None:
        self.rng = rng
        self.writers: dict[str, Any] = {}
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        for name, columns in COLUMNS.items():
            f = stack.enter_context((folder / name).open("w", encoding="utf-8", newline=""))
            self.writers[name] = csv.writer(f)
            self.writers[name].writerow(columns)
        self.ids: dict[str, int] = {"person": 0, "contact": 0, "concern": 0, "member": 0}
        self.numbers = nhs_numbers(rng.randrange(1_000_000))

    def write(self, name: str, row: dict[str, Any]) -> None:
        self.writers[name].writerow(["" if row.get(c) is None else row[c] for c in COLUMNS[name]])
        self.counts[name] += 1

    def next_id(self, kind: str, prefix: str, width: int) -> str:
        self.ids[kind] += 1
        return f"{prefix}{self.ids[kind]:0{width}d}"

    def nhs(self) -> str:
        return next(self.numbers)


def _day(d: date) -> str:
    return d.isoformat()


def _weekday(d: date) -> date:
    return d + timedelta(days=(7 - d.weekday()) % 7 if d.weekday() >= 5 else 0)


def _contacts(ex: _Export, person: str, birth: date, *, child: bool, first_birth: date | None,
              staff: str, team: str) -> None:
    """3-5 care contacts: a child's mandated reviews due so far (and the next one, booked), then clinics;
    a mother's antenatal contact before her youngest child's birth, then clinic or other contacts."""
    rng = ex.rng
    wanted = rng.randint(3, 5)
    planned: list[tuple[str, date]] = []
    if child:
        for code, days in _MANDATED:
            due = birth + timedelta(days=days + rng.randint(-3, 10))
            if due <= REFERENCE + timedelta(days=45):
                planned.append((code, due))
    elif first_birth is not None:
        planned.append(("ANTENATAL", first_birth - timedelta(days=rng.randint(35, 70))))
    start = max(birth + timedelta(days=14), REFERENCE - timedelta(days=720))
    while len(planned) < wanted:
        kind = "CLINIC" if child or rng.random() < 0.6 else "OTHER"
        planned.append((kind, start + timedelta(days=rng.randrange(max(1, (REFERENCE - start).days + 30)))))
    for kind, when in sorted(planned[:wanted], key=lambda p: p[1]):
        when = _weekday(when)
        code = "0" if when > REFERENCE else rng.choice(_PAST_CODES)
        home = kind in ("ANTENATAL", "NEW_BIRTH_VISIT") or rng.random() < 0.15
        untimed = code == "2" and rng.random() < 0.5  # a cancellation may carry no time
        ex.write("care_contacts.csv", {
            "care_contact_id": ex.next_id("contact", "CC", 9),
            "local_patient_id": person,
            "care_contact_date": _day(when),
            "care_contact_time": None if untimed else f"{rng.randint(9, 16):02d}:{rng.choice(('00', '15', '30', '45'))}",
            "contact_duration_minutes": None if untimed else rng.choice((30, 45, 60) if not home else (45, 60, 90)),
            "contact_type": kind,
            "attended_or_did_not_attend": code,
            "care_professional_name": None if untimed else staff,
            "care_professional_team": team,
            "contact_location_type": "HOME" if home else "CLINIC",
        })


def _person(ex: _Export, family: str, given: str, birth: date, female: bool, postcode: str, practice: str) -> tuple[
        str, str | None]:
    rng = ex.rng
    local_id = ex.next_id("person", "HV", 8)
    roll = rng.random()
    if roll < 0.02:
        number, status = None, "07" if rng.random() < 0.5 else None  # no NHS number (yet)
    elif roll < 0.03:
        valid = ex.nhs()  # mistyped: another check digit fails Modulus 11 (the number is kept apart)
        number, status = valid[:9] + str((int(valid[9]) + 1) % 10), "03"
    else:
        number = ex.nhs()
        status = "08" if (REFERENCE - birth).days < 42 else rng.choice(("01",) * 9 + ("02",))
    ex.write("people.csv", {
        "local_patient_id": local_id, "nhs_number": number, "nhs_number_status": status,
        "person_birth_date": _day(birth),
        "person_stated_gender_code": rng.choice(("2", "F")) if female else rng.choice(("1", "M")),
        "postcode": postcode, "gp_practice_code": practice, "person_family_name": family,
        "person_given_name": given,
    })
    return local_id, number


def _member(ex: _Export, person: str, relationship: str, family: str, given: str, birth: date, male: bool,
            nhs: str | None = None, local_id: str | None = None) -> None:
    ex.write("household_members.csv", {
        "household_member_id": ex.next_id("member", "HM", 9), "local_patient_id": person,
        "relationship": relationship, "member_family_name": family, "member_given_name": given,
        "member_birth_date": _day(birth), "member_gender_code": "1" if male else "2",
        "member_nhs_number": nhs, "member_local_patient_id": local_id,
    })


def _family(ex: _Export, budget: int) -> int:
    """One family of at most ``budget`` people; returns how many people rows it wrote."""
    rng = ex.rng
    family = rng.choice(_FAMILY)
    postcode = f"ZZ99 {rng.randint(1, 9)}{rng.choice('ABCDEFGHJ')}{rng.choice('ABCDEFGHJ')}"
    practice, team, staff = rng.choice(_PRACTICES), rng.choice(_TEAMS), rng.choice(_STAFF)
    young = rng.random() < 0.06  # a mother under 18 at the reference day
    mother_age_days = rng.randint(16 * 365 + 30, 17 * 365 + 300) if young else rng.randint(19 * 365, 41 * 365)
    mother_birth = REFERENCE - timedelta(days=mother_age_days)
    n_children = min(budget - 1, rng.choice((1, 1, 1, 2, 2, 3))) if budget > 1 else 0
    oldest = mother_age_days - 15 * 365 - 180  # the mother was at least 15 and a half at each birth
    ages = sorted((min(rng.randint(3, 4 * 365), oldest) for _ in range(n_children)), reverse=True)
    births = [REFERENCE - timedelta(days=a) for a in ages]
    mother_given = rng.choice(_GIVEN_F)
    mother, mother_nhs = _person(ex, family, mother_given, mother_birth, True, postcode, practice)
    children = []
    for birth in births:
        female = rng.random() < 0.5
        given = rng.choice(_GIVEN_F if female else _GIVEN_M)
        local_id, number = _person(ex, family, given, birth, female, postcode, practice)
        children.append((local_id, number, given, birth, female))
    # father or partner in the household (not on the caseload); a young mother's partner is often young too
    father = None
    if rng.random() < 0.55:
        father_birth = mother_birth + timedelta(days=rng.randint(-300, 200) if young else rng.randint(-3000, 700))
        father = (rng.choice(_FAMILY), rng.choice(_GIVEN_M), father_birth, ex.nhs() if rng.random() < 0.6 else None)
    grandmother = (family, rng.choice(_GIVEN_F), mother_birth - timedelta(days=rng.randint(17 * 365, 30 * 365))) \
        if young or rng.random() < 0.15 else None
    for local_id, _, _, birth, _ in children:
        _member(ex, local_id, "MOTHER", family, mother_given, mother_birth, False, mother_nhs, mother)
        if father is not None:
            relation = "FATHER" if birth == births[-1] or rng.random() < 0.7 else "STEP_FATHER"
            _member(ex, local_id, relation, father[0], father[1], father[2], True, father[3])
        if grandmother is not None:
            _member(ex, local_id, "GRANDMOTHER", *grandmother, False)
        for other_id, other_nhs, other_given, other_birth, other_female in children:
            if other_id != local_id:
                _member(ex, local_id, "SIBLING", family, other_given, other_birth, not other_female, other_nhs,
                        other_id)
    if father is not None:
        _member(ex, mother, "PARTNER", father[0], father[1], father[2], True, father[3])
    if grandmother is not None:
        _member(ex, mother, "MOTHER", *grandmother, False)
    # safeguarding: young mothers far more often; such families are on universal partnership plus
    flagged = rng.random() < (0.6 if young else 0.07)
    people = [(mother, mother_birth, False)] + [(c[0], c[3], True) for c in children]
    if flagged:
        start = max(mother_birth + timedelta(days=11 * 365), REFERENCE - timedelta(days=rng.randint(60, 900)))
        ended = rng.random() < 0.25
        ex.write("safeguarding_concerns.csv", {
            "concern_id": ex.next_id("concern", "SC", 8), "local_patient_id": mother,
            "concern_snomed_code": rng.choice(_CONCERNS_MOTHER), "concern_start_date": _day(start),
            "concern_end_date": _day(min(REFERENCE, start + timedelta(days=rng.randint(90, 500)))) if ended else None,
            "recorded_by": staff,
        })
        for local_id, _, _, birth, _ in children:
            if rng.random() < 0.7:
                ex.write("safeguarding_concerns.csv", {
                    "concern_id": ex.next_id("concern", "SC", 8), "local_patient_id": local_id,
                    "concern_snomed_code": rng.choice(_CONCERNS_CHILD),
                    "concern_start_date": _day(max(birth, start)), "concern_end_date": None, "recorded_by": staff,
                })
    for local_id, birth, _ in people:
        since = max(birth, REFERENCE - timedelta(days=rng.randint(30, 700)))
        if flagged:
            if since > birth:  # stepped up from universal
                ex.write("service_levels.csv", {"local_patient_id": local_id, "service_level": "UNIVERSAL",
                                                "service_level_start_date": _day(max(birth, since - timedelta(days=200))),
                                                "service_level_end_date": _day(since - timedelta(days=1))})
            ex.write("service_levels.csv", {"local_patient_id": local_id, "service_level": "PARTNERSHIP_PLUS",
                                            "service_level_start_date": _day(since)})
        else:
            level = "UNIVERSAL_PLUS" if rng.random() < 0.12 else "UNIVERSAL"
            ex.write("service_levels.csv", {"local_patient_id": local_id, "service_level": level,
                                            "service_level_start_date": _day(since)})
    youngest = births[-1] if births else None
    _contacts(ex, mother, mother_birth, child=False, first_birth=youngest, staff=staff, team=team)
    for local_id, _, _, birth, _ in children:
        _contacts(ex, local_id, birth, child=True, first_birth=None, staff=staff, team=team)
    return len(people)


def write_export(folder: Path, n_people: int, seed: int = 0) -> dict[str, int]:
    """Write an export of ``n_people`` people rows (and their other rows) into ``folder`` (created if
    needed), one CSV per kind; the number of rows written per file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with ExitStack() as stack:
        ex = _Export(folder, stack, rng)
        written = 0
        while written < n_people:
            written += _family(ex, n_people - written)
    return ex.counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a synthetic health visiting export")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--people", type=int, default=10_000, help="people rows (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(write_export(args.folder, args.people, args.seed)))


if __name__ == "__main__":
    main()
