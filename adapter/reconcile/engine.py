"""The matching decision for one incoming record against the identities already held (LINKAGE.md §1).

Order of the layers, each over the candidate identities that blocking finds (every member of each
candidate identity is compared; one cannot-link rule against any member forbids joining that identity):

1. deterministic: a valid NHS number with the same date of birth and no forename conflict -> link;
2. an NHS number shared with an identity a cannot-link rule forbids (the mother's or the co-twin's number,
   a date of birth over a year out) -> review, never a link;
3. probabilistic: the best joinable identity at or above the auto-link threshold -> link, unless
   - a second joinable identity within ``ambiguity_bits`` cannot be joined with it (the "Baby of Smith"
     record equidistant from both twins) -> review ``ambiguous``;
   - one side is a twin-marked record (birth order) and the other a nameless one without -> ``multiple-birth``;
   - a nameless side while the candidates show a multiple birth -> ``twins`` (also guards step 1 unless
     the incoming NHS number is verified, status 01);
   - a nameless side with neither surname, mother nor full postcode agreeing -> ``placeholder-weak-evidence``;
   - under ``min_person_evidence_bits`` from person-level fields -> ``household-evidence-only``;
   these reviews wait for step 4, which may still settle the record;
4. relational: a newborn's record and exactly one pre-birth identity of the same mother within the due
   window -> link; two or more (twins), or one already holding another baby -> review;
5. the best joinable identity in the review band -> review; otherwise a new identity.

A link by steps 1 or 3 also lists in ``Decision.merge`` the newborn's pre-birth identity when the
relational rule alone would have taken it (the GP record came first; the health visiting record names
the mother): the caller folds it into the identity joined, so an unborn-child plan follows the baby.

Pre-birth (unborn) records are never scored probabilistically: they have no date of birth, no NHS number
and usually no name, and everything they do have (surname, postcode, GP, mother) is shared with their
siblings.  They link only through rules 4 (and a second record of the same pregnancy: same mother, due
dates within 28 days, the same birth order -> link; otherwise review).

The store implements :class:`CandidateIndex` over blocking tables keyed by :func:`blocking_keys`;
:class:`InMemoryIndex` is the dict-backed one used by the evaluation and the tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, Protocol

from adapter.reconcile.compare import Evidence, evidence, person_weight, probability, score
from adapter.reconcile.model import Model
from adapter.reconcile.rules import (
    FORENAME_RULES,
    cannot_link,
    deterministic,
    forenames_conflict,
    relational,
    same_mother,
    same_pregnancy,
)
from adapter.reconcile.standardise import PersonRecord, soundex

__all__ = [
    "CandidateIndex",
    "MergingIndex",
    "InMemoryIndex",
    "Candidate",
    "Decision",
    "blocking_keys",
    "decide",
    "ingest",
]

Action = Literal["link", "new", "review"]
Grade = Literal["certain", "probable", "possible", "certainly-not"]
PROBABLE = 0.9                   # review-band candidates at or above this are "probable", else "possible"


# --- blocking ---------------------------------------------------------------------------------------------

def blocking_keys(rec: PersonRecord) -> list[str]:
    """Keys under which a record is stored and looked up; two records are compared only if they share
    one.  The date part is day/month-swap invariant (year + the smaller then the larger of month and
    day), so a swapped date still meets its original."""
    keys: list[str] = []
    if rec.local_id:
        keys.append(f"local:{rec.source}|{rec.local_id}")
    if rec.nhs_number:
        keys.append(f"nhs:{rec.nhs_number}")
    for mother in rec.mother_ids:
        keys.append(f"mother:{mother}")
    if rec.is_unborn:
        return keys
    fam_codes = sorted({soundex(p) for p in rec.family_parts})
    bd = rec.birth_date
    if bd is not None:
        lo, hi = (bd.month, bd.day) if bd.month <= bd.day else (bd.day, bd.month)
        d = f"{bd.year:04d}{lo:02d}{hi:02d}"
        keys.extend(f"dob-fam:{d}:{fc}" for fc in fam_codes)
        if rec.postcode_sector:
            keys.append(f"dob-pc:{d}:{rec.postcode_sector}")
        keys.extend(f"dob-given:{d}:{g}" for g in rec.given_keys)
    if rec.postcode_sector:                     # the household: catches a date and a forename both wrong
        keys.extend(f"fam-pc:{fc}:{rec.postcode}" for fc in fam_codes)
    if rec.given_keys and fam_codes:
        for g in rec.given_keys:
            for fc in fam_codes:
                if bd is not None:
                    keys.append(f"name-year:{g}:{fc}:{bd.year}")
                if rec.postcode_outward:
                    keys.append(f"name-district:{g}:{fc}:{rec.postcode_outward}")
    return keys


class CandidateIndex(Protocol):
    """Where identities and their member records live.  ``candidates`` returns (identity id, member)
    for every stored record sharing a blocking key with ``rec`` (duplicates allowed)."""

    def add(self, identity_id: str, rec: PersonRecord) -> None: ...
    def candidates(self, rec: PersonRecord) -> Iterable[tuple[str, PersonRecord]]: ...
    def members(self, identity_id: str) -> list[PersonRecord]: ...


class MergingIndex(CandidateIndex, Protocol):
    """An index that can also fold one identity into another (``Decision.merge``)."""

    def merge(self, into: str, other: str) -> None: ...


class InMemoryIndex:
    """CandidateIndex over dicts: blocking key -> [(identity id, record)], identity id -> [records]."""

    def __init__(self) -> None:
        self._blocks: dict[str, list[tuple[str, PersonRecord]]] = {}
        self._members: dict[str, list[PersonRecord]] = {}
        self._alias: dict[str, str] = {}        # merged identity -> the identity it was folded into

    def _resolve(self, identity_id: str) -> str:
        alias = self._alias
        while identity_id in alias:
            identity_id = alias[identity_id]
        return identity_id

    def merge(self, into: str, other: str) -> None:
        into, other = self._resolve(into), self._resolve(other)
        if into == other:
            return
        self._members.setdefault(into, []).extend(self._members.pop(other, []))
        self._alias[other] = into

    def add(self, identity_id: str, rec: PersonRecord) -> None:
        entry = (identity_id, rec)
        blocks = self._blocks
        for key in blocking_keys(rec):
            bucket = blocks.get(key)
            if bucket is None:
                blocks[key] = [entry]
            else:
                bucket.append(entry)
        self._members.setdefault(identity_id, []).append(rec)

    def candidates(self, rec: PersonRecord) -> Iterable[tuple[str, PersonRecord]]:
        blocks = self._blocks
        for key in blocking_keys(rec):
            bucket = blocks.get(key)
            if bucket:
                if self._alias:
                    resolve = self._resolve
                    for iid, rec_ in bucket:
                        yield resolve(iid), rec_
                else:
                    yield from bucket

    def members(self, identity_id: str) -> list[PersonRecord]:
        return self._members.get(self._resolve(identity_id), [])

    def identities(self) -> dict[str, list[PersonRecord]]:
        return self._members

    def __len__(self) -> int:
        return len(self._members)


# --- decision -----------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One candidate identity, scored against its best-matching member."""

    identity_id: str
    record_key: str | None                  # the member that scored best (None: only pre-birth members)
    match_weight: float                     # bits, prior included
    probability: float
    grade: Grade
    cannot_link: tuple[str, ...]            # rule ids firing against any member (empty: joinable)
    evidence: tuple[Evidence, ...]          # per field, against the best member
    deterministic: bool = False
    relational: bool = False
    nhs_agrees: bool = False                # some member holds the same valid NHS number

    @property
    def joinable(self) -> bool:
        return not self.cannot_link


@dataclass
class Decision:
    action: Action
    identity_id: str | None                 # link: the identity joined
    candidates: list[Candidate]             # best first
    rule: str                               # what decided it (see the module docstring)
    grade: Grade                            # FHIR match-grade of the decision
    probability: float
    model_version: str = ""
    also: list[str] = field(default_factory=list)  # review: the identities in question
    # link: other identities this record proves are the same person (today: the pre-birth identity of a
    # newborn whose record also matched a born identity).  The caller merges them into identity_id.
    merge: list[str] = field(default_factory=list)


def _grade(p: float, model: Model, joinable: bool) -> Grade:
    if not joinable:
        return "certainly-not"
    if p >= model.auto_link_probability:
        return "certain"
    if p >= PROBABLE:
        return "probable"
    return "possible"


@dataclass(slots=True)
class _Eval:
    identity_id: str
    members: list[PersonRecord]
    blocked: list[str]
    best_weight: float
    best_member: PersonRecord | None
    best_levels: tuple[int, ...] | None
    deterministic: bool
    det_member: PersonRecord | None
    relational: bool
    nhs_agrees: bool
    pregnancy: PersonRecord | None            # a pre-birth member of the same pregnancy (rec unborn)
    other_newborn: bool                       # holds a born record of the same mother in the due window


def _evaluate(rec: PersonRecord, iid: str, members: list[PersonRecord], model: Model, as_of: date) -> _Eval:
    blocked: list[str] = []
    best_w = float("-inf")
    best_m: PersonRecord | None = None
    best_lv: tuple[int, ...] | None = None
    det = rel = nhs = False
    det_member: PersonRecord | None = None
    pregnancy: PersonRecord | None = None
    unborn_members: list[PersonRecord] = []
    born_members: list[PersonRecord] = []
    rec_unborn = rec.is_unborn
    # once an identity holds a born record, its date of birth is judged against that, not the due date
    any_born = not rec_unborn and any(not m.is_unborn for m in members)
    # a forename clash with one member does not count when another named member's forename agrees:
    # the identity's forenames are already variants (typos, nicknames) of one person's
    forename_ok = rec.given_raw is not None and any(
        m.given_raw is not None and not forenames_conflict(rec, m) for m in members)
    for m in members:
        rule = cannot_link(rec, m, as_of=as_of)
        if rule in FORENAME_RULES and forename_ok:
            rule = cannot_link(rec, m, as_of=as_of, forenames=False)
        if rule == "unborn-outside-due-window" and any_born:
            rule = None
        if rule is not None and rule not in blocked:
            blocked.append(rule)
        if rec.nhs_number is not None and m.nhs_number == rec.nhs_number:
            nhs = True
        if m.is_unborn:
            unborn_members.append(m)
            if rec_unborn:
                if same_pregnancy(rec, m):
                    pregnancy = m
            elif relational(rec, m):
                rel = True
            continue
        born_members.append(m)
        if rec_unborn:
            continue
        if rule is None and not det and deterministic(rec, m) and (forename_ok or rec.given_raw is None
                                                                   or m.given_raw is None):
            det, det_member = True, m
        w, lv = score(rec, m, model)
        if w > best_w:
            best_w, best_m, best_lv = w, m, lv
    other_newborn = False
    if rel and rec.birth_date is not None:
        # a pre-birth identity already holding a different baby of that pregnancy (twins)
        for m in born_members:
            if m.birth_date is not None and same_mother(rec, m) and cannot_link(rec, m, as_of=as_of):
                other_newborn = True
                break
    return _Eval(iid, members, blocked, best_w, best_m, best_lv, det, det_member, rel, nhs, pregnancy,
                 other_newborn)


def _candidate(rec: PersonRecord, ev: _Eval, model: Model) -> Candidate:
    if ev.best_levels is None:
        p = 0.0
        w = float("-inf")
        evid: tuple[Evidence, ...] = ()
    else:
        w = ev.best_weight
        p = probability(w)
        evid = evidence(rec, ev.best_levels, model)
    grade: Grade = _grade(p, model, not ev.blocked)
    if ev.deterministic and not ev.blocked:
        grade = "certain"
    return Candidate(ev.identity_id, ev.best_member.key if ev.best_member else None, w, p, grade,
                     tuple(ev.blocked), evid, ev.deterministic, ev.relational, ev.nhs_agrees)


def _joinable_together(a: list[PersonRecord], b: list[PersonRecord], as_of: date) -> bool:
    for x in a:
        for y in b:
            if cannot_link(x, y, as_of=as_of) is not None:
                return False
    return True


def _multiple_birth_unsettled(rec: PersonRecord, member: PersonRecord) -> bool:
    """One side is a multiple-birth record (birth order given) and the other has no birth order, with a
    placeholder on either side: demographics cannot tell which twin it is."""
    return ((rec.birth_order is None) != (member.birth_order is None)
            and (rec.given is None or member.given is None))


def _twins_in_play(rec: PersonRecord, evals: list[_Eval], target: _Eval) -> bool:
    """The candidates show a multiple birth around ``rec``'s date of birth: two pre-birth identities it
    could continue, or two identities holding babies of the same mother born within two days that a
    cannot-link rule keeps apart (not the same baby split over two identities)."""
    if sum(1 for e in evals if e.relational) >= 2:
        return True
    if rec.birth_ordinal is None:
        return False
    day = rec.birth_ordinal
    babies = [(e.identity_id, m) for e in evals for m in e.members
              if m.birth_ordinal is not None and m.mother_ids and abs(m.birth_ordinal - day) <= 2]
    if rec.mother_ids:
        babies.append(("", rec))
    for i, (ia, a) in enumerate(babies):
        for ib, b in babies[i + 1:]:
            if ia != ib and not (ia == target.identity_id and ib == "" or ib == target.identity_id and ia == "") \
                    and same_mother(a, b) and cannot_link(a, b, as_of=date.min) is not None:
                return True
    return False


def _twins_around(member: PersonRecord, iid: str, index: CandidateIndex, as_of: date) -> bool:
    """Seen from the member's own blocking keys (its mother's ids may differ from the new record's):
    two pre-birth identities of its pregnancy, or a baby of the same mother born within two days in
    another identity that a cannot-link rule keeps apart from it."""
    if member.birth_ordinal is None or not member.mother_ids:
        return False
    unborn_ids: set[str] = set()
    for other_iid, m in index.candidates(member):
        if other_iid == iid or not same_mother(member, m):
            continue
        if m.is_unborn:
            if relational(member, m):
                unborn_ids.add(other_iid)
        elif (m.birth_ordinal is not None and abs(m.birth_ordinal - member.birth_ordinal) <= 2
              and cannot_link(member, m, as_of=as_of) is not None):
            return True
    return len(unborn_ids) >= 2


def _orders_agree(rec: PersonRecord, ev: _Eval) -> bool:
    """No birth order anywhere, or the newborn's equals that of each pre-birth member."""
    unborn_orders = {m.birth_order for m in ev.members if m.is_unborn}
    if rec.birth_order is None and unborn_orders == {None}:
        return True
    return _ordered(rec, ev)


def _ordered(rec: PersonRecord, ev: _Eval) -> bool:
    """A multiple birth settled by birth order: the newborn's equals every pre-birth member's."""
    return rec.birth_order is not None and {m.birth_order for m in ev.members if m.is_unborn} == {rec.birth_order}


def _twin_elsewhere(rec: PersonRecord, evals: list[_Eval], iid: str, also: str | None = None) -> bool:
    """Another identity (not ``iid`` nor ``also``) holds a born baby of the same mother born within two
    days of ``rec``."""
    assert rec.birth_ordinal is not None
    for e in evals:
        if e.identity_id == iid or e.identity_id == also:
            continue
        for m in e.members:
            if (m.birth_ordinal is not None and abs(m.birth_ordinal - rec.birth_ordinal) <= 2
                    and same_mother(rec, m)):
                return True
    return False


def decide(rec: PersonRecord, index: CandidateIndex, model: Model, *, as_of: date | None = None) -> Decision:
    """Decide whether ``rec`` joins an identity held in ``index``, goes to review, or starts a new one.
    The index is not changed (see :func:`ingest`)."""
    as_of = as_of or date.today()
    seen: set[str] = set()
    for iid, _member in index.candidates(rec):
        seen.add(iid)
    evals = [_evaluate(rec, iid, index.members(iid), model, as_of) for iid in seen]
    evals.sort(key=lambda e: (not e.deterministic, -e.best_weight))
    cands = [_candidate(rec, e, model) for e in evals]
    version = model.version

    def out(action: Action, iid: str | None, rule: str, grade: Grade, p: float, also: list[str] | None = None
            ) -> Decision:
        return Decision(action, iid, cands, rule, grade, p, version, also or [])

    joinable = [e for e in evals if not e.blocked]

    def bridged(d: Decision) -> Decision:
        """Also take the newborn's pre-birth identity when the relational rule alone would have linked
        it, and the identity joined holds no record naming that mother (which would have had its own
        chance at the relational link and not taken it: twins, ambiguity)."""
        target = next(e for e in evals if e.identity_id == d.identity_id)
        rel = [e for e in evals if e.relational and e.identity_id != d.identity_id]
        if len(rel) == 1 and not target.relational and not any(same_mother(rec, m) for m in target.members):
            one = rel[0]
            if (not one.blocked and not one.other_newborn and _orders_agree(rec, one)
                    and not _twin_elsewhere(rec, evals, one.identity_id, also=d.identity_id)
                    and _joinable_together(target.members, one.members, as_of)):
                d.merge = [one.identity_id]
        return d

    def twins_unsettled(target: _Eval, member: PersonRecord | None) -> bool:
        """A forename missing on either side while the candidates show a multiple birth."""
        if member is None or (rec.given is not None and member.given is not None):
            return False
        return _twins_in_play(rec, evals, target) or _twins_around(member, target.identity_id, index, as_of)

    # 1. deterministic: NHS number + date of birth + no forename conflict
    det = [e for e in joinable if e.deterministic]
    if det:
        best = det[0]
        p = max(probability(best.best_weight), model.auto_link_probability)
        # the co-twin's NHS number on a nameless row; a verified (status 01, traced) number settles it
        if not rec.nhs_verified and twins_unsettled(best, best.det_member):
            return out("review", None, "twins", "probable", p, [e.identity_id for e in det])
        return bridged(out("link", best.identity_id, "deterministic-nhs-dob", "certain", p))

    # 2. the same NHS number on an identity a cannot-link rule forbids: never a link, never silently new
    clash = [e for e in evals if e.blocked and e.nhs_agrees]
    if clash:
        p = probability(clash[0].best_weight) if clash[0].best_levels else 0.0
        return out("review", None, f"cannot-link:{clash[0].blocked[0]}", "possible", p,
                   [e.identity_id for e in clash])

    # pre-birth record: only the same pregnancy can take it
    if rec.is_unborn:
        preg = [e for e in evals if e.pregnancy is not None]
        if not preg:
            return out("new", None, "no-candidate", "certainly-not", 0.0)
        if len(preg) == 1 and not preg[0].blocked and rec.birth_order is not None \
                and preg[0].pregnancy.birth_order == rec.birth_order:  # type: ignore[union-attr]
            return out("link", preg[0].identity_id, "relational-same-pregnancy", "certain", 1.0)
        if all(e.blocked for e in preg):
            return out("new", None, f"cannot-link:{preg[0].blocked[0]}", "certainly-not", 0.0)
        return out("review", None, "relational-pregnancy-ambiguous", "possible", 0.5,
                   [e.identity_id for e in preg])

    # 3. probabilistic, with the ambiguity guard; a score that cannot settle it waits for step 4
    scored = [e for e in joinable if e.best_levels is not None]
    scored.sort(key=lambda e: -e.best_weight)
    best = scored[0] if scored else None
    pending: Decision | None = None
    if best is not None and best.best_weight >= model.auto_link_weight:
        p = probability(best.best_weight)
        floor = max(best.best_weight - model.ambiguity_bits, model.review_weight)
        rivals = [e for e in scored[1:] if e.best_weight >= floor
                  and not _joinable_together(best.members, e.members, as_of)]
        assert best.best_member is not None and best.best_levels is not None
        if rivals:
            pending = out("review", None, "ambiguous", "probable", p,
                          [best.identity_id] + [e.identity_id for e in rivals])
        elif _multiple_birth_unsettled(rec, best.best_member):
            pending = out("review", None, "multiple-birth", "probable", p, [best.identity_id])
        elif twins_unsettled(best, best.best_member):
            pending = out("review", None, "twins", "probable", p, [best.identity_id])
        elif (rec.given is None or best.best_member.given is None) and best.best_levels[3] not in (0, 1) \
                and best.best_levels[8] != 0 and best.best_levels[5] != 0:
            # a nameless (placeholder) record: date of birth, sex, postcode area and GP are shared by
            # babies of other families; it needs the surname, the mother or the household postcode too
            pending = out("review", None, "placeholder-weak-evidence", "probable", p, [best.identity_id])
        elif person_weight(rec, best.best_levels, model) < model.min_person_bits:
            pending = out("review", None, "household-evidence-only", "probable", p, [best.identity_id])
        else:
            return bridged(out("link", best.identity_id, "probabilistic", "certain", p))

    # 4. relational: newborn <- pre-birth record of the same mother within the due window.  A multiple
    # birth (a birth order on either side) links only on equal birth orders; a pre-birth identity
    # already holding another baby, two pre-birth identities, or another baby of the same mother born
    # within days in another identity (a twin) -> review.
    rel = [e for e in evals if e.relational]
    if rel:
        one = rel[0]
        if len(rel) == 1 and not one.blocked and not one.other_newborn and _orders_agree(rec, one) \
                and not _twin_elsewhere(rec, evals, one.identity_id) \
                and (pending is None or pending.also == [one.identity_id]):
            return out("link", one.identity_id, "relational-unborn", "certain", 1.0)
        # twins with birth orders on both sides: the order is a deterministic key (LINKAGE.md §5.1)
        ordered = [e for e in rel if not e.blocked and not e.other_newborn and _ordered(rec, e)]
        if len(ordered) == 1 and pending is None:
            return out("link", ordered[0].identity_id, "relational-unborn-birth-order", "certain", 1.0)
        rule = "twins" if len(rel) > 1 or one.other_newborn or one.blocked else "relational-ambiguous"
        return out("review", None, rule, "possible", 0.5,
                   [e.identity_id for e in rel] + (pending.also if pending else []))
    if pending is not None:
        return pending

    # 5. review band, else new
    if best is not None and best.best_weight >= model.review_weight:
        p = probability(best.best_weight)
        return out("review", None, "review-band", _grade(p, model, True), p, [best.identity_id])
    if not evals:
        return out("new", None, "no-candidate", "certainly-not", 0.0)
    blocked_best = next((e for e in evals if e.blocked and e.best_levels is not None
                         and e.best_weight >= model.auto_link_weight), None)
    if blocked_best is not None:
        return out("new", None, f"cannot-link:{blocked_best.blocked[0]}", "certainly-not", 0.0)
    return out("new", None, "below-threshold", "certainly-not", probability(best.best_weight) if best else 0.0)


def ingest(rec: PersonRecord, index: CandidateIndex, model: Model, *,
           new_identity_id: Callable[[], str] = lambda: str(uuid.uuid4()),
           as_of: date | None = None) -> tuple[str, Decision]:
    """Decide, then store the record: a link joins the identity (and folds in ``decision.merge`` when
    the index can merge); new and review start a new identity (a review Task then proposes the merge
    to a practitioner).  Returns (identity id, decision)."""
    decision = decide(rec, index, model, as_of=as_of)
    iid = decision.identity_id if decision.action == "link" and decision.identity_id else new_identity_id()
    index.add(iid, rec)
    merge = getattr(index, "merge", None)
    if merge is not None:
        for other in decision.merge:
            merge(iid, other)
    return iid, decision

