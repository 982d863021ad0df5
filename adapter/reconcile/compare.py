"""Per-field comparison levels, Fellegi-Sunter match weights and per-field evidence.

The comparisons and their ordered levels are fixed here (``COMPARISONS``); the m/u probabilities, and so
the weights, come from the versioned model file (:mod:`adapter.reconcile.model`), which must name exactly
these comparisons and levels.  A missing value on either side is the implicit ``null`` level, weight 0.

:func:`levels` is the hot path: plain Python on two :class:`PersonRecord`, with string similarity cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from adapter.reconcile.standardise import PersonRecord

if TYPE_CHECKING:
    from adapter.reconcile.model import Model

__all__ = [
    "COMPARISONS",
    "NULL",
    "Evidence",
    "levels",
    "score",
    "evidence",
    "probability",
    "person_weight",
    "PERSON_FIELDS",
    "jaro_winkler",
    "osa_distance",
    "dob_swapped",
]

NULL = -1

# name -> level labels, best first.  The order is the contract with the model file.
COMPARISONS: dict[str, tuple[str, ...]] = {
    "nhs_number": ("agree-verified", "agree", "disagree"),
    "birth_date": ("exact", "day-month-swap", "one-part-differs", "within-a-year", "other"),
    "given_name": ("exact", "nickname", "jaro-winkler-0.92", "jaro-winkler-0.80-or-initial", "other"),
    "family_name": ("exact", "part-or-jaro-winkler-0.92", "jaro-winkler-0.80", "other"),
    "sex": ("agree", "disagree"),
    "postcode": ("exact", "sector", "district", "other"),
    "gp_practice": ("agree", "disagree"),
    "birth_order": ("agree", "disagree"),
    "mother": ("agree", "disagree"),
}
FIELDS = tuple(COMPARISONS)
# Comparisons about the person rather than the household (siblings share surname, postcode, GP, mother).
PERSON_FIELDS = (0, 1, 2, 4, 7)
# Comparisons whose exact level is term-frequency adjusted (the value compared is given_raw / family).
TF_COMPARISONS = ("given_name", "family_name")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One comparison's contribution: its level label and the match weight (bits) it added."""

    field: str
    level: str
    weight: float


# --- string similarity ------------------------------------------------------------------------------------

@lru_cache(maxsize=262144)
def jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler similarity (prefix scale 0.1, at most 4 characters)."""
    if a == b:
        return 1.0
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    window = max(la, lb) // 2 - 1
    if window < 0:
        window = 0
    a_flags = [False] * la
    b_flags = [False] * lb
    matches = 0
    for i, ch in enumerate(a):
        lo = i - window if i > window else 0
        hi = i + window + 1 if i + window + 1 < lb else lb
        for j in range(lo, hi):
            if not b_flags[j] and b[j] == ch:
                a_flags[i] = b_flags[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    k = transpositions = 0
    for i in range(la):
        if a_flags[i]:
            while not b_flags[k]:
                k += 1
            if a[i] != b[k]:
                transpositions += 1
            k += 1
    m = float(matches)
    jaro = (m / la + m / lb + (m - transpositions / 2) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4]):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


@lru_cache(maxsize=262144)
def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Damerau-Levenshtein without repeated edits of a substring)."""
    la, lb = len(a), len(b)
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        prev2, prev = prev, cur
    return prev[lb]


def dob_swapped(a: PersonRecord, b: PersonRecord) -> bool:
    da, db = a.birth_date, b.birth_date
    return (da is not None and db is not None and da != db and da.year == db.year
            and da.day == db.month and da.month == db.day)


# --- levels ---------------------------------------------------------------------------------------------------

def _given_level(a: PersonRecord, b: PersonRecord) -> int:
    ga, gb = a.given_raw, b.given_raw
    if ga is None or gb is None:
        return NULL
    if ga == gb:
        return 0
    ka, kb = a.given_keys, b.given_keys
    if ka == kb or not set(ka).isdisjoint(kb):
        return 1
    if len(ga) == 1 or len(gb) == 1:
        return 3 if ga[0] == gb[0] else 4
    s = jaro_winkler(ga, gb)
    if s >= 0.92:
        return 2
    return 3 if s >= 0.80 else 4


def _family_level(a: PersonRecord, b: PersonRecord) -> int:
    fa, fb = a.family, b.family
    if fa is None or fb is None:
        return NULL
    if fa == fb:
        return 0
    pa, pb = a.family_parts, b.family_parts
    if (len(pa) > 1 or len(pb) > 1) and not set(pa).isdisjoint(pb):
        return 1
    s = jaro_winkler(fa, fb)
    if s >= 0.92:
        return 1
    return 2 if s >= 0.80 else 3


def _dob_level(a: PersonRecord, b: PersonRecord) -> int:
    da, db = a.birth_date, b.birth_date
    if da is None or db is None:
        return NULL
    if da == db:
        return 0
    if da.year == db.year and da.day == db.month and da.month == db.day:
        return 1
    same = (da.year == db.year) + (da.month == db.month) + (da.day == db.day)
    if same == 2:
        return 2
    return 3 if abs(a.birth_ordinal - b.birth_ordinal) <= 366 else 4  # type: ignore[operator]


def levels(a: PersonRecord, b: PersonRecord) -> tuple[int, ...]:
    """The level index of each comparison in ``COMPARISONS`` order (``NULL`` when a side is missing)."""
    # nhs_number
    na, nb = a.nhs_number, b.nhs_number
    if na is None or nb is None:
        nhs = NULL
    elif na == nb:
        nhs = 0 if (a.nhs_status == "01" or b.nhs_status == "01") else 1
    else:
        nhs = 2
    # sex
    sa, sb = a.sex, b.sex
    sex = NULL if sa is None or sb is None else (0 if sa == sb else 1)
    # postcode
    if a.postcode_outward is None or b.postcode_outward is None:
        pc = NULL
    elif a.postcode is not None and a.postcode == b.postcode and a.postcode_sector is not None:
        pc = 0
    elif a.postcode_sector is not None and a.postcode_sector == b.postcode_sector:
        pc = 1
    elif a.postcode_outward == b.postcode_outward:
        pc = 2
    else:
        pc = 3
    # gp practice
    ga, gb = a.gp_practice, b.gp_practice
    gp = NULL if ga is None or gb is None else (0 if ga == gb else 1)
    # birth order
    oa, ob = a.birth_order, b.birth_order
    bo = NULL if oa is None or ob is None else (0 if oa == ob else 1)
    # mother: same mother's NHS number, or same mother's record in the same source
    mo = NULL
    if a.mother_nhs_number is not None and b.mother_nhs_number is not None:
        mo = 0 if a.mother_nhs_number == b.mother_nhs_number else 1
    if mo != 0 and a.mother_local_id is not None and a.mother_local_id == b.mother_local_id:
        mo = 0
    return (nhs, _dob_level(a, b), _given_level(a, b), _family_level(a, b), sex, pc, gp, bo, mo)


def score(a: PersonRecord, b: PersonRecord, model: Model) -> tuple[float, tuple[int, ...]]:
    """(total match weight in bits including the prior, levels)."""
    lv = levels(a, b)
    w = model.prior_weight
    tables = model.weight_tables
    for i, level in enumerate(lv):
        if level != NULL:
            w += tables[i][level]
    if lv[2] == 0:
        w += model.tf_bonus(2, a.given_raw)
    if lv[3] == 0:
        w += model.tf_bonus(3, a.family)
    return w, lv


def field_weights(a: PersonRecord, lv: tuple[int, ...], model: Model) -> tuple[float, ...]:
    """The weight each comparison contributed (term-frequency adjustment included)."""
    out = []
    for i, level in enumerate(lv):
        if level == NULL:
            out.append(0.0)
            continue
        w = model.weight_tables[i][level]
        if level == 0 and i == 2:
            w += model.tf_bonus(2, a.given_raw)
        elif level == 0 and i == 3:
            w += model.tf_bonus(3, a.family)
        out.append(w)
    return tuple(out)


def person_weight(a: PersonRecord, lv: tuple[int, ...], model: Model) -> float:
    """The part of the match weight from the person-level comparisons (``PERSON_FIELDS``)."""
    w = field_weights(a, lv, model)
    return sum(w[i] for i in PERSON_FIELDS)


def evidence(a: PersonRecord, lv: tuple[int, ...], model: Model) -> tuple[Evidence, ...]:
    """Per-field evidence for a review Task: (field, level label, weight in bits)."""
    weights = field_weights(a, lv, model)
    return tuple(
        Evidence(name, "null" if level == NULL else labels[level], round(w, 3))
        for (name, labels), level, w in zip(COMPARISONS.items(), lv, weights)
    )


def probability(weight: float) -> float:
    """Match probability from a match weight in bits (prior included)."""
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds = 2.0 ** weight
    return odds / (1.0 + odds)
