"""Cannot-link, deterministic and relational rules (LINKAGE.md §1 steps 2, 3 and 5; §5.1).

Each cannot-link rule has a stable id (``CANNOT_LINK``): decisions, review Tasks and audit records name
it.  A cannot-link rule firing between a new record and *any* member of an identity forbids joining that
identity; no score overrides it.
"""

from __future__ import annotations

from datetime import date

from adapter.reconcile.compare import jaro_winkler, osa_distance
from adapter.reconcile.standardise import PersonRecord

__all__ = [
    "CANNOT_LINK",
    "DUE_WINDOW",
    "FORENAME_RULES",
    "in_due_window",
    "cannot_link",
    "forenames_conflict",
    "deterministic",
    "is_mother_of",
    "same_mother",
    "relational",
    "same_pregnancy",
]

CANNOT_LINK: dict[str, str] = {
    "mother-and-child": "one record names the other as the mother (her NHS number or her record in the source)",
    "different-nhs-number": "two different valid NHS numbers",
    "different-birth-order": "two different birth orders (multiple birth)",
    "same-dob-forename-clash": "the same date of birth with incompatible forenames (the twin pattern)",
    "forename-and-dob-clash": "incompatible forenames and dates of birth that differ other than by a day/month "
                              "swap (the sibling pattern: same mother, surname, address)",
    "forename-clash-no-dob": "incompatible forenames and no date of birth on one side to outweigh them",
    "same-source-birth-siblings": "two records in one source, different local ids, the same mother and date of "
                                  "birth: the source holds two babies (twins)",
    "multiple-birth-placeholder": "a placeholder without birth order against a record of a multiple birth "
                                  "(birth order given) with the same date of birth: either twin",
    "dob-over-a-year": "dates of birth more than a year apart, and not a day/month swap",
    "under-5-sex-clash": "a child under 5 recorded as male on one record and female on the other (unless both "
                         "carry the same forename)",
    "unborn-outside-due-window": "a date of birth outside the pre-birth record's due date -42..+28 days",
    "different-pregnancy": "two pre-birth records of the same mother with due dates over 28 days apart",
}
FORENAME_RULES = frozenset({"same-dob-forename-clash", "forename-and-dob-clash", "forename-clash-no-dob"})
DUE_WINDOW = (-42, 28)           # date of birth - expected delivery date, days
_FIVE_YEARS = 5 * 365 + 1


def forenames_conflict(a: PersonRecord, b: PersonRecord) -> bool:
    """True when both forenames are present and cannot be the same person's: not equal, not nicknames
    of one canonical name, not an initial or a prefix, and more than one edit apart (two edits are a typo
    for names of eight letters or more, or of five or more with Jaro-Winkler >= 0.88: OLIVER/OLIVIA and
    HARRY/HARVEY still clash)."""
    ga, gb = a.given_raw, b.given_raw
    if not ga or not gb or ga == gb:
        return False
    if not set(a.given_keys).isdisjoint(b.given_keys):
        return False
    short, long_ = (ga, gb) if len(ga) <= len(gb) else (gb, ga)
    if len(short) == 1:
        return short != long_[0]
    if long_.startswith(short):
        return False
    if len(long_) >= 3:
        d = osa_distance(ga, gb)
        if d <= 1 or (d == 2 and (len(short) >= 8 or (len(short) >= 5 and jaro_winkler(ga, gb) >= 0.88))):
            return False
    return True


def _same_forename(a: PersonRecord, b: PersonRecord) -> bool:
    """Both forenames present and equal or nicknames of one name: then a sex mismatch is a recording
    error, not a co-twin."""
    return (a.given_raw is not None and b.given_raw is not None
            and (a.given_raw == b.given_raw or not set(a.given_keys).isdisjoint(b.given_keys)))


def _swap(da: date, db: date) -> bool:
    return da.year == db.year and da.day == db.month and da.month == db.day


def cannot_link(a: PersonRecord, b: PersonRecord, *, as_of: date, forenames: bool = True) -> str | None:
    """The id of the first cannot-link rule that fires between two records, or None.  With
    ``forenames=False`` the forename rules (``FORENAME_RULES``) are not checked: the engine uses that
    for a member whose forename clashes when another named member of the same identity agrees."""
    if (a.mother_ids or b.mother_ids) and (is_mother_of(a, b) or is_mother_of(b, a)):
        return "mother-and-child"
    na, nb = a.nhs_number, b.nhs_number
    if na is not None and nb is not None and na != nb:
        return "different-nhs-number"
    oa, ob = a.birth_order, b.birth_order
    if oa is not None and ob is not None and oa != ob:
        return "different-birth-order"
    da, db = a.birth_date, b.birth_date
    if da is not None and db is not None:
        if da == db:
            if forenames and forenames_conflict(a, b):
                return "same-dob-forename-clash"
            if (a.source == b.source and a.local_id != b.local_id and (a.mother_ids or b.mother_ids)
                    and same_mother(a, b)):
                return "same-source-birth-siblings"
            if (oa is None) != (ob is None) and (a.placeholder if oa is None else b.placeholder):
                return "multiple-birth-placeholder"
        elif not _swap(da, db):
            if abs(a.birth_ordinal - b.birth_ordinal) > 366:  # type: ignore[operator]
                return "dob-over-a-year"
            if forenames and forenames_conflict(a, b):
                return "forename-and-dob-clash"
        sa, sb = a.sex, b.sex
        if (sa is not None and sb is not None and sa != sb and not _same_forename(a, b)
                and as_of.toordinal() - max(a.birth_ordinal, b.birth_ordinal) < _FIVE_YEARS):  # type: ignore[type-var]
            return "under-5-sex-clash"
        return None
    if forenames and forenames_conflict(a, b):
        return "forename-clash-no-dob"
    ua, ub = a.is_unborn, b.is_unborn
    if ua and ub:
        if abs(a.due_date.toordinal() - b.due_date.toordinal()) > 28:  # type: ignore[union-attr]
            return "different-pregnancy"
    elif ua and db is not None or ub and da is not None:
        unborn, born = (a, b) if ua else (b, a)
        if not in_due_window(born.birth_date, unborn.due_date):  # type: ignore[arg-type]
            return "unborn-outside-due-window"
    return None


def is_mother_of(mother: PersonRecord, child: PersonRecord) -> bool:
    """``child`` names ``mother`` as its mother: her NHS number, or her record in the same source."""
    if child.mother_nhs_number is not None and child.mother_nhs_number == mother.nhs_number:
        return True
    return (child.mother_local_id is not None and mother.local_id is not None
            and child.mother_local_id == f"{mother.source}|{mother.local_id}")


def deterministic(a: PersonRecord, b: PersonRecord) -> bool:
    """Valid NHS number equal, the same date of birth, and no forename conflict (LINKAGE.md §1 step 2)."""
    return (a.nhs_number is not None and a.nhs_number == b.nhs_number
            and a.birth_date is not None and a.birth_date == b.birth_date
            and not forenames_conflict(a, b))


def same_mother(a: PersonRecord, b: PersonRecord) -> bool:
    """The same mother's NHS number, or the same mother's record in the same source."""
    return ((a.mother_nhs_number is not None and a.mother_nhs_number == b.mother_nhs_number)
            or (a.mother_local_id is not None and a.mother_local_id == b.mother_local_id))


def relational(born: PersonRecord, unborn: PersonRecord) -> bool:
    """A newborn's record and a pre-birth record of the same mother, the date of birth within the due
    date -42..+28 days, or its day/month swap within them (LINKAGE.md §1 step 3)."""
    if born.birth_date is None or not unborn.is_unborn or not same_mother(born, unborn):
        return False
    return in_due_window(born.birth_date, unborn.due_date)  # type: ignore[arg-type]


def in_due_window(birth: date, due: date) -> bool:
    """The date of birth (or, failing that, its day/month swap) within due -42..+28 days."""
    delta = birth.toordinal() - due.toordinal()
    if DUE_WINDOW[0] <= delta <= DUE_WINDOW[1]:
        return True
    if birth.day <= 12 and birth.day != birth.month:
        swapped = date(birth.year, birth.day, birth.month).toordinal() - due.toordinal()
        return DUE_WINDOW[0] <= swapped <= DUE_WINDOW[1]
    return False


def same_pregnancy(a: PersonRecord, b: PersonRecord) -> bool:
    """Two pre-birth records of the same mother with due dates at most 28 days apart."""
    return (a.is_unborn and b.is_unborn and same_mother(a, b)
            and abs(a.due_date.toordinal() - b.due_date.toordinal()) <= 28)  # type: ignore[union-attr]
