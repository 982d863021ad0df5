"""The safeguarding rules engine: evaluates the rules of ``mappings/rules/safeguarding.yaml`` on one reconciled
identity (the master Patient and every source record of it), inside the pipeline's transaction.

Design (issue 6):

* **Whole state, not the event.** ``evaluate(tx, identity_id, now)`` reads the identity's records (its master,
  its members, and their Flags, Encounters, Appointments, RelatedPersons, Conditions, Observations through
  ``tx.resources_of_patients``: the search index, never a scan) and decides every rule from that state. So a
  re-run changes nothing, and events arriving late or out of order give the same result once all are in.
  Family rules also read the mother's identity (found through the identity tables' ``nhs:`` / ``mother:``
  blocking keys) and, when a mother's identity is evaluated, re-evaluate her children's (birth, was not
  brought, handover), so a concern arriving after the birth still reaches the baby.
* **Derived flags** have the master Patient as subject, a deterministic id
  ``resource_id("rules", "Flag", rule id, identity id, evidence key)``, meta.profile CarethreadFlag,
  meta.source ``https://fhir.carethread.org/source/rule/<rule id>``, meta.tag record-type#derived, the
  categories the profile requires, ``flag-detail`` to the evidence, the evidence's confidentiality labels,
  and a Provenance (``policy`` the rule url, ``reason`` the rule code, ``entity`` the evidence and the inbound
  message each came from: meta.source ``…/source/<source>#<control id>``). A derived flag is written once and
  only ever ended (status inactive + period.end, a second Provenance): never edited otherwise.
* **Continuity.** A source child flag is the source's: rules never edit it. When a source ends one (inactive,
  or period.end in the past) while its continuity end is still ahead (per flag code: the 18th birthday, or
  the plan end + retention months), a derived continuity flag (same code, subject the master, flag-detail to
  the source flag) keeps the person flagged; it ends at the continuity end (at-18 / the daily run). At 18
  every derived child flag ends on the birthday and, for the configured codes, a *history of child
  safeguarding* flag starts.
* **Notifications** go through ``notify()`` (idempotent per rule, dedup key and recipient): ``gp-practice``
  becomes the person's own practice when its ODS code is a configured organisation.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from adapter.fhir import CT, NHS_NUMBER_SYSTEM
from adapter.identity import MASTER_TAG, RECORD_TYPE_CS, is_master, record_of
from adapter.mapping.ids import resource_id
from adapter.notify.communications import RULE_SYSTEM, SubscriptionCache, notify, rule_codes
from adapter.notify.organisations import ODS_SYSTEM, ROLES, UnknownRecipient, organization_id, resolve_recipients
from adapter.rules.config import RuleSet, load_rules
from adapter.store.base import Store, Transaction

__all__ = ["RulesEngine", "DERIVED_TAG", "RULE_SOURCE", "RULE_POLICY", "FLAG_PROFILE", "run_daily",
           "daily_identities"]

_log = logging.getLogger("carethread.rules")

FLAG_PROFILE = f"{CT}/StructureDefinition/CarethreadFlag"
PATIENT_PROFILE = f"{CT}/StructureDefinition/CarethreadPatient"
DERIVED_TAG = {"system": RECORD_TYPE_CS, "code": "derived", "display": "Derived by Carethread"}
RULE_SOURCE = f"{CT}/source/rule/"
RULE_POLICY = f"{CT}/safeguarding-rule/"
SAFEGUARDING_CS = f"{CT}/CodeSystem/safeguarding"
SNOMED = "http://snomed.info/sct"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
ATTENDANCE_EXT = f"{CT}/StructureDefinition/Extension-Carethread-AttendanceOutcome"
DERIVED_ID_SYSTEM = f"{CT}/Id/derived"
_CATEGORIES = [
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety",
                 "display": "Safety"}]},
    {"coding": [{"system": f"{CT}/CodeSystem/flag-category", "code": "safeguarding", "display": "Safeguarding"}]},
]
_AGENT = [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "author", "display": "Author"}]},
           "who": {"display": "Carethread safeguarding rules"}}]
_TYPES = ["Flag", "Encounter", "Appointment", "RelatedPerson", "Condition", "Observation"]
_MOTHER_CODES = {"MTH", "NMTH"}
_PARENT_CODES = {"MTH", "NMTH", "FTH", "NFTH", "NFTHF", "PRN", "NPRN"}
_PROFILES = Path(__file__).resolve().parents[2] / "profiles" / "codesystems"
_CODES = Path(__file__).resolve().parents[2] / "mappings" / "codes" / "safeguarding_codes.yaml"


@cache
def _displays() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    data = yaml.safe_load(_CODES.read_text(encoding="utf-8"))
    for code, entry in data["map"].items():
        out[(SNOMED, str(code))] = entry["display"]
    for concept in json.loads((_PROFILES / "CodeSystem-safeguarding.json").read_text(encoding="utf-8"))["concept"]:
        out[(SAFEGUARDING_CS, concept["code"])] = concept["display"]
    return out


def coding_of(code: str) -> dict[str, str]:
    """Our convention: digits are SNOMED CT, anything else a code of CodeSystem/safeguarding."""
    system = SNOMED if code.isdigit() else SAFEGUARDING_CS
    coding = {"system": system, "code": code}
    display = _displays().get((system, code))
    if display:
        coding["display"] = display
    return coding


# --- small readers ------------------------------------------------------------------------------------------

def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February: the birthday is 1 March in a common year
        return date(day.year + years, 3, 1)


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _codes(concept: Any) -> set[str]:
    concepts = concept if isinstance(concept, list) else [concept]
    return {str(c.get("code")) for cc in concepts if isinstance(cc, dict) for c in cc.get("coding", ())
            if isinstance(c, dict) and c.get("code")}


def _flag_code(flag: dict[str, Any]) -> str | None:
    for coding in (flag.get("code") or {}).get("coding", ()):
        if coding.get("code"):
            return str(coding["code"])
    return None


def _rule_of(resource: dict[str, Any]) -> str | None:
    source = (resource.get("meta") or {}).get("source") or ""
    return source[len(RULE_SOURCE):].split("#")[0] if source.startswith(RULE_SOURCE) else None


def _source_of(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """(source name, message control id) from meta.source ``…/source/<name>#<control id>``."""
    source = (resource.get("meta") or {}).get("source") or ""
    if not source.startswith(f"{CT}/source/"):
        return None, None
    name, _, control = source[len(f"{CT}/source/"):].partition("#")
    return name, control or None


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _is_safeguarding(flag: dict[str, Any]) -> bool:
    return flag.get("status") != "entered-in-error" and any(
        c.get("code") == "safeguarding" for cat in flag.get("category", ()) for c in cat.get("coding", ()))


def _flag_active(flag: dict[str, Any], today: date) -> bool:
    if flag.get("status") != "active":
        return False
    end = _day((flag.get("period") or {}).get("end"))
    return end is None or end > today


def _ods(reference: Any) -> str | None:
    ident = (reference or {}).get("identifier") if isinstance(reference, dict) else None
    if isinstance(ident, dict) and ident.get("system") == ODS_SYSTEM and ident.get("value"):
        return str(ident["value"]).upper()
    return None


def _related_key(rp: dict[str, Any], born: date | None) -> str:
    """Who a RelatedPerson is, across the records that name them: their NHS number, else birth date and name."""
    for ident in rp.get("identifier", ()):
        if ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
            return f"nhs|{ident['value']}"
    name = (rp.get("name") or [{}])[0]
    given = " ".join(name.get("given", ())).strip().upper()
    return f"name|{born.isoformat() if born else ''}|{given}|{str(name.get('family', '')).strip().upper()}"


def _rel_codes(rp: dict[str, Any]) -> set[str]:
    return _codes(rp.get("relationship", []))


_WORD = re.compile(r"[^A-Z0-9&]+")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.split(text.upper()) if w}


# --- the person --------------------------------------------------------------------------------------------

@dataclass
class Person:
    """One identity's state: the master, its members' records and the resources about any of them."""

    iid: str
    master: dict[str, Any]
    pids: list[str]
    members: list[tuple[str, str]]
    birth: date | None
    gender: str | None
    flags: list[dict[str, Any]] = field(default_factory=list)
    encounters: list[dict[str, Any]] = field(default_factory=list)
    appointments: list[dict[str, Any]] = field(default_factory=list)
    related: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    gp_ods: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"Patient/{self.iid}"

    def age(self, day: date) -> int | None:
        return None if self.birth is None else age_on(self.birth, day)

    def safeguarding_flags(self, *, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
        skip = set(exclude)
        return [f for f in self.flags if _is_safeguarding(f) and _rule_of(f) not in skip]


Put = Callable[[Transaction, dict[str, Any]], None]
Check = Callable[[dict[str, Any]], None]
ReconcileDerived = Callable[[Transaction, dict[str, Any]], None]


class RulesEngine:
    """``put(tx, resource)`` validates and writes a derived resource (the pipeline's ``_put_derived``);
    ``check`` validates a Communication; ``reconcile_derived(tx, patient)`` puts a derived Patient into
    identity reconciliation."""

    def __init__(self, rules: RuleSet | None = None, *, put: Put, check: Check | None = None,
                 reconcile_derived: ReconcileDerived | None = None) -> None:
        self.rules = rules or load_rules()
        self.put = put
        self.check = check
        self.reconcile_derived = reconcile_derived
        self._history_codes = set(self.rules["at-18"]["history_codes"])
        self._child_flags: dict[str, str] = self.rules["continuity-past-16"]["child_flags"]
        self._child_codes = set(self._child_flags) | {"history-of-child-safeguarding"}
        # role -> the ODS codes of the configured organisations that have it, and the Organizations' versions
        # it was read from (_by_role): notify() would list every Organization for each notification
        self._roles: tuple[dict[str, tuple[int, str]], dict[str, list[str] | None]] | None = None
        self._subscriptions = SubscriptionCache()  # the Subscriptions notify() matches, parsed once per version

    # --- entry points ------------------------------------------------------------------------------------

    def identities_of_patients(self, tx: Transaction, patient_ids: Iterable[str]) -> list[str]:
        """The identities (masters) of these Patients, in first-seen order; a Patient with none is skipped."""
        out: dict[str, None] = {}
        for pid in patient_ids:
            found = tx.identity_of(pid)
            if found is not None:
                out.setdefault(found[0], None)
        return list(out)

    def evaluate(self, tx: Transaction, identity_id: str, now: datetime, *, family: bool = True) -> None:
        """Every rule on one identity's whole state (and, for a mother, her children's family rules)."""
        person = self._person(tx, identity_id)
        if person is None:
            return
        today = now.astimezone(UTC).date()
        sent = now.astimezone(UTC).isoformat(timespec="seconds")
        ctx = _Ctx(tx, now, today, sent)
        self._continuity(ctx, person)
        self._at_18(ctx, person)
        self._adult_setting(ctx, person)
        self._pregnancy(ctx, person)
        mothers = self._mothers(tx, person)
        self._birth(ctx, person, mothers)
        self._was_not_brought(ctx, person, mothers)
        self._young_father(ctx, person)
        self._household(ctx, person, mothers)
        self._closure(ctx, person)
        self._handover(ctx, person, mothers)
        if family:
            for child in self._children(tx, person):
                self.evaluate(tx, child, now, family=False)

    # --- reading the identity ----------------------------------------------------------------------------

    def _person(self, tx: Transaction, identity_id: str) -> Person | None:
        stored = tx.read("Patient", identity_id)
        if stored is None:
            return None
        master = stored.resource
        members = tx.identity_members(identity_id)
        pids = [identity_id, *(pid for pid, _ in members if pid != identity_id)]
        sources = [master]
        for pid in pids[1:]:
            member = tx.read("Patient", pid)
            if member is not None:
                sources.append(member.resource)
        birth = next((_day(p.get("birthDate")) for p in sources if _day(p.get("birthDate"))), None)
        gender = next((p.get("gender") for p in sources if p.get("gender") in ("male", "female")), None)
        gp: list[str] = []
        for patient in sources:
            for ref in patient.get("generalPractitioner", ()):
                ods = _ods(ref)
                if ods and ods not in gp:
                    gp.append(ods)
        person = Person(identity_id, master, pids, members, birth, gender, gp_ods=gp)
        for res in tx.resources_of_patients(_TYPES, pids):
            r = res.resource
            {"Flag": person.flags, "Encounter": person.encounters, "Appointment": person.appointments,
             "RelatedPerson": person.related}.get(r["resourceType"], person.conditions).append(r)
        return person

    def _person_ref(self, tx: Transaction, identity_id: str) -> Person | None:
        """A Person that only names the identity (its master exists): for rules that write about a person
        without reading their state."""
        if not tx.exists("Patient", identity_id):
            return None
        return Person(identity_id, {}, [identity_id], [], None, None)

    def _identity_by_nhs(self, tx: Transaction, nhs: str) -> str | None:
        for _pid, iid, text in tx.identity_candidates([f"nhs:{nhs}"]):
            if record_of(text).nhs_number == nhs:
                return iid
        return None

    def _mothers(self, tx: Transaction, person: Person) -> list[Person]:
        """The mother's identity: from the members' matching records (PID-21) and MTH RelatedPersons."""
        found: dict[str, None] = {}
        for _pid, text in person.members:
            rec = record_of(text)
            if rec.mother_nhs_number:
                iid = self._identity_by_nhs(tx, rec.mother_nhs_number)
                if iid:
                    found.setdefault(iid, None)
            if rec.mother_local_id:
                for _p, iid, _t in tx.identity_candidates([f"local:{rec.source}|{rec.mother_local_id}"]):
                    found.setdefault(iid, None)
        for rp in person.related:
            if _rel_codes(rp) & _MOTHER_CODES:
                for ident in rp.get("identifier", ()):
                    if ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
                        iid = self._identity_by_nhs(tx, str(ident["value"]))
                        if iid:
                            found.setdefault(iid, None)
        found.pop(person.iid, None)
        out = []
        for iid in found:
            mother = self._person(tx, iid)
            if mother is not None:
                out.append(mother)
        return out

    def _children(self, tx: Transaction, person: Person) -> list[str]:
        keys = []
        for _pid, text in person.members:
            rec = record_of(text)
            if rec.nhs_number:
                keys.append(f"mother:nhs|{rec.nhs_number}")
            if rec.local_id:
                keys.append(f"mother:local|{rec.local_id}")
        if not keys:
            return []
        out: dict[str, None] = {}
        for _pid, iid, _text in tx.identity_candidates(keys):
            if iid != person.iid:
                out.setdefault(iid, None)
        return list(out)

    def _siblings_flagged(self, tx: Transaction, person: Person, mothers: list[Person], today: date) -> bool:
        for mother in mothers:
            for child in self._children(tx, mother):
                if child == person.iid:
                    continue
                sibling = self._person(tx, child)
                if sibling and any(_flag_active(f, today) for f in sibling.safeguarding_flags()):
                    return True
        return False

    # --- writing ------------------------------------------------------------------------------------------

    def _recipients(self, tx: Transaction, person: Person, roles: Iterable[str]) -> list[str]:
        out: list[str] = []
        for role in roles:
            if role == "gp-practice":
                own = [ods for ods in person.gp_ods if tx.exists("Organization", f"ods-{ods}")]
                out += own or [role]
            else:
                out.append(role)
        return list(dict.fromkeys(out))

    def _by_role(self, tx: Transaction, recipients: list[str], *, checked: bool = False) -> list[str]:
        """``recipients`` with each role replaced by the ODS codes of the configured organisations that have
        it, in the order notify() would find them (so it reads those Organizations by id instead of listing
        them all); unchanged when the store cannot tell whether the Organizations changed, and a role nobody
        has, or one of an organisation whose id is not its ODS code's, is left for notify() to judge."""
        versions_of = getattr(tx, "versions_of", None)
        if versions_of is None or not any(r in ROLES for r in recipients):
            return recipients
        if not checked or self._roles is None:  # (the rules write no Organization: once per evaluation will do)
            versions = versions_of("Organization")
            if self._roles is None or self._roles[0] != versions:
                self._roles = (versions, {})
        cache = self._roles[1]
        out: list[str] = []
        for recipient in recipients:
            if recipient not in ROLES:
                out.append(recipient)
                continue
            if recipient not in cache:
                try:
                    found = resolve_recipients(tx, [recipient])
                except UnknownRecipient:
                    found = []
                exact = bool(found) and all(org_id == organization_id(ods) for ods, org_id, _ in found)
                cache[recipient] = [ods for ods, _, _ in found] if exact else None
            codes = cache[recipient]
            out += [recipient] if codes is None else codes
        return list(dict.fromkeys(out))

    def _notify(self, ctx: _Ctx, rule_id: str, recipients: list[str], subject: str, payload: list[str],
                reason: str, dedup: str, priority: str) -> list[dict[str, Any]]:
        recipients = self._by_role(ctx.tx, recipients, checked=ctx.roles_checked)
        ctx.roles_checked = True
        try:
            with ctx.tx.savepoint():
                return notify(ctx.tx, rule_id=rule_id, recipients=recipients, subject_ref=subject,
                              payload_refs=payload, priority=priority, reason_display=reason, sent=ctx.sent,
                              dedup_key=dedup, check=self.check, now=ctx.now, subscriptions=self._subscriptions)
        except ValueError as exc:  # a recipient nobody is configured for: the flag still stands
            _log.warning("notification not sent rule=%s (%s)", rule_id, type(exc).__name__)
            return []

    def _provenance(self, ctx: _Ctx, rule_id: str, target: list[str], evidence: list[dict[str, Any]],
                    what: str, activity: str = "CREATE") -> None:
        pid = resource_id("rules", "Provenance", rule_id, *target, what)
        if ctx.tx.exists("Provenance", pid):
            return
        entities: list[dict[str, Any]] = []
        messages: dict[tuple[str, str], None] = {}
        for res in evidence:
            entities.append({"role": "source", "what": {"reference": _ref(res)}})
            name, control = _source_of(res)
            if name and control and name not in ("rule", "identity"):
                messages.setdefault((name, control), None)
        for name, control in messages:
            entities.append({"role": "source", "what": {
                "identifier": {"system": f"{CT}/source/{name}", "value": control},
                "display": f"inbound {name} message"}})
        provenance: dict[str, Any] = {
            "resourceType": "Provenance", "id": pid,
            "meta": {"source": f"{RULE_SOURCE}{rule_id}"},
            "target": [{"reference": t} for t in target],
            "recorded": ctx.sent,
            "policy": [RULE_POLICY + rule_id],
            "reason": [{"coding": [{"system": RULE_SYSTEM, "code": rule_id, "display": rule_codes()[rule_id]}]}],
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                     "code": activity, "display": "create" if activity == "CREATE" else "revise"}]},
            "agent": _AGENT,
        }
        if entities:
            provenance["entity"] = entities
        self.put(ctx.tx, provenance)

    def _derive_flag(self, ctx: _Ctx, person: Person, rule_id: str, key: str, code: str, start: str | None,
                     evidence: list[dict[str, Any]], *, subject: str | None = None,
                     end: str | None = None) -> tuple[dict[str, Any], bool]:
        """The derived flag of (rule, identity, evidence key): created once with its Provenance."""
        subject_id = subject or person.iid
        fid = resource_id("rules", "Flag", rule_id, subject_id, key)
        existing = ctx.tx.read("Flag", fid)
        if existing is not None:
            return existing.resource, False
        security: list[dict[str, Any]] = []
        for res in evidence:
            for label in (res.get("meta") or {}).get("security", ()):
                if label not in security:
                    security.append(label)
        meta: dict[str, Any] = {"profile": [FLAG_PROFILE], "source": f"{RULE_SOURCE}{rule_id}", "tag": [DERIVED_TAG]}
        if security:
            meta["security"] = security
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        flag: dict[str, Any] = {
            "resourceType": "Flag", "id": fid, "meta": meta,
            "extension": [{"url": FLAG_DETAIL, "valueReference": {"reference": _ref(r)}} for r in evidence],
            "status": "inactive" if end and (_day(end) or ctx.today) <= ctx.today else "active",
            "category": _CATEGORIES,
            "code": {"coding": [coding_of(code)]},
            "subject": {"reference": f"Patient/{subject_id}"},
        }
        if not flag["extension"]:
            del flag["extension"]
        if period:
            flag["period"] = period
        self.put(ctx.tx, flag)
        self._provenance(ctx, rule_id, [f"Flag/{fid}"], evidence, "created")
        if subject_id == person.iid:
            person.flags.append(flag)
        _log.info("derived flag %s rule=%s code=%s", fid, rule_id, code)
        return flag, True

    def _end_flag(self, ctx: _Ctx, flag: dict[str, Any], end: date, rule_id: str) -> None:
        if flag.get("status") != "active":
            return
        ended = {k: v for k, v in flag.items() if k != "meta"}
        ended["meta"] = {k: v for k, v in flag["meta"].items() if k not in ("versionId", "lastUpdated")}
        ended["status"] = "inactive"
        ended["period"] = {**(flag.get("period") or {}), "end": end.isoformat()}
        self.put(ctx.tx, ended)
        self._provenance(ctx, rule_id, [f"Flag/{flag['id']}"], [flag], "ended", "UPDATE")
        flag.clear()
        flag.update(ended)
        _log.info("derived flag %s ended rule=%s", ended["id"], rule_id)

    # --- rule 1: continuity past 16, and rule 2: at 18 ------------------------------------------------------

    def _continuity_end(self, person: Person, flag: dict[str, Any]) -> date | None:
        """When a child flag stops flagging the person: per code, the 18th birthday or plan end + retention
        (never after the 18th birthday). None: not a child flag, or no way to tell."""
        code = _flag_code(flag)
        ends = self._child_flags.get(code or "")
        if ends is None:
            return None
        adult = add_years(person.birth, self.rules["continuity-past-16"]["adult_age"]) if person.birth else None
        if ends == "at-18":
            return adult
        plan_end = _day((flag.get("period") or {}).get("end"))
        if plan_end is None:
            return adult
        end = add_months(plan_end, self.rules["continuity-past-16"]["retention_months"])
        return min(end, adult) if adult else end

    def _continuity(self, ctx: _Ctx, person: Person) -> None:
        rule = "continuity-past-16"
        for flag in list(person.flags):
            if _rule_of(flag) is not None or flag.get("status") == "entered-in-error" or not _is_safeguarding(flag):
                continue
            if _flag_active(flag, ctx.today):
                continue  # the source's own flag still says it
            until = self._continuity_end(person, flag)
            if until is None or until <= ctx.today:
                continue
            start = (flag.get("period") or {}).get("start")
            self._derive_flag(ctx, person, rule, flag["id"], _flag_code(flag) or "", start, [flag])
        for flag in person.flags:  # end the continuity flags whose end has come
            if _rule_of(flag) != rule or flag.get("status") != "active":
                continue
            source = self._source_flag(ctx, flag)
            until = self._continuity_end(person, source) if source is not None else None
            if until is not None and until <= ctx.today:
                self._end_flag(ctx, flag, until, rule)

    def _at_18(self, ctx: _Ctx, person: Person) -> None:
        if person.birth is None:
            return
        birthday = add_years(person.birth, self.rules["continuity-past-16"]["adult_age"])
        if ctx.today < birthday:
            return
        for flag in person.flags:  # derived child flags end on the birthday
            if _rule_of(flag) in ("continuity-past-16", "birth", "was-not-brought-pattern") and \
                    flag.get("status") == "active":
                self._end_flag(ctx, flag, birthday, "at-18")
        for flag in list(person.flags):
            if flag.get("status") == "entered-in-error" or _rule_of(flag) not in (None, "continuity-past-16"):
                continue
            if _flag_code(flag) not in self._history_codes:
                continue
            start = _day((flag.get("period") or {}).get("start"))
            if start is not None and start >= birthday:
                continue  # not a childhood flag
            source = flag
            if _rule_of(flag) == "continuity-past-16":  # the history is keyed on the source flag
                src = self._source_flag(ctx, flag)
                if src is not None:
                    source = src
            self._derive_flag(ctx, person, "at-18", f"history|{source['id']}", "history-of-child-safeguarding",
                              birthday.isoformat(), [source])

    def _source_flag(self, ctx: _Ctx, derived: dict[str, Any]) -> dict[str, Any] | None:
        for ref in _detail_refs(derived):
            if ref.startswith("Flag/"):
                stored = ctx.tx.read("Flag", ref[5:])
                if stored is not None:
                    return stored.resource
        return None

    def _child_flags_of(self, person: Person) -> list[dict[str, Any]]:
        return [f for f in person.flags if f.get("status") != "entered-in-error" and _flag_code(f) in self._child_codes]

    def _is_adult_setting(self, encounter: dict[str, Any]) -> bool:
        p = self.rules["adult-setting-presentation"]
        if _codes(encounter.get("serviceType") or {}) & set(p["adult_services"]):
            return True
        locations = {w.upper() for w in p["adult_locations"]}
        for loc in encounter.get("location", ()):
            if _words(str((loc.get("location") or {}).get("display", ""))) & locations:
                return True
        sources = set(p["adult_sources"])
        provider = _ods(encounter.get("serviceProvider"))
        return bool(sources) and (provider in sources or _source_of(encounter)[0] in sources)

    def _adult_setting(self, ctx: _Ctx, person: Person) -> None:
        rule = "adult-setting-presentation"
        p = self.rules[rule]
        if person.birth is None or not person.encounters:
            return
        child_flags = self._child_flags_of(person)
        if not child_flags:
            return
        for enc in person.encounters:
            if enc.get("status") == "entered-in-error":
                continue
            day = _day((enc.get("period") or {}).get("start")) or ctx.today
            age = age_on(person.birth, day)
            if not p["min_age"] <= age <= p["max_age"] or not self._is_adult_setting(enc):
                continue
            flag = next((f for f in child_flags if _flag_active(f, ctx.today)), child_flags[0])
            sent = self._notify(ctx, rule, self._recipients(ctx.tx, person, p["recipients"]), person.ref,
                                [_ref(flag), _ref(enc)],
                                f"{age} year old with child safeguarding flags seen in an adult setting",
                                f"{person.iid}|{enc['id']}", p["priority"])
            if sent:  # the presentation, recorded
                self._provenance(ctx, rule, [f"Communication/{c['id']}" for c in sent], [enc, *child_flags],
                                 f"presentation|{enc['id']}")

    # --- rule 3: pregnancy -------------------------------------------------------------------------------

    def _pregnancy_events(self, person: Person) -> list[tuple[date, dict[str, Any]]]:
        p = self.rules["pregnancy-under-18-or-history"]
        services, codes, types = set(p["services"]), set(p["codes"]), set(p["appointment_types"])
        locations = {w.upper() for w in p["locations"]}
        events: list[tuple[date, dict[str, Any]]] = []
        for enc in person.encounters:
            if enc.get("status") in ("entered-in-error", "cancelled"):
                continue
            hit = bool(_codes(enc.get("serviceType") or {}) & services) or bool(_codes(enc.get("type", [])) & types)
            hit = hit or any(_words(str((loc.get("location") or {}).get("display", ""))) & locations
                             for loc in enc.get("location", ()))
            day = _day((enc.get("period") or {}).get("start"))
            if hit and day:
                events.append((day, enc))
        for appt in person.appointments:
            day = _day(appt.get("start"))
            if day and appt.get("status") not in ("cancelled", "entered-in-error") and \
                    _codes(appt.get("appointmentType") or {}) & types:
                events.append((day, appt))
        for res in person.conditions + [f for f in person.flags if _rule_of(f) is None]:
            code_hit = _codes(res.get("code") or {}) & codes or _codes(res.get("valueCodeableConcept") or {}) & codes
            if not code_hit or res.get("status") == "entered-in-error":
                continue
            day = _day(res.get("onsetDateTime") or res.get("effectiveDateTime") or res.get("recordedDate")
                       or (res.get("period") or {}).get("start"))
            if day:
                events.append((day, res))
        return sorted(events, key=lambda e: (e[0], e[1]["id"]))

    def _pregnancy(self, ctx: _Ctx, person: Person) -> None:
        rule = "pregnancy-under-18-or-history"
        p = self.rules[rule]
        if person.gender == "male":
            return
        events = self._pregnancy_events(person)
        if not events:
            return
        history = [f for f in person.safeguarding_flags(exclude=[rule])]
        window = timedelta(days=p["episode_days"])
        own = [f for f in person.flags if _rule_of(f) == rule]
        for day, event in events:
            age = person.age(day)
            if age is not None and age < p["min_age"]:
                continue
            under = age is not None and age <= p["max_age"]
            if not under and not history:
                continue
            if any(abs(((_day((f.get("period") or {}).get("start")) or day) - day).days) <= window.days for f in own):
                continue  # this pregnancy episode has its concern already
            evidence = [event, *([] if under else history[:5])]
            flag, created = self._derive_flag(ctx, person, rule, f"{event['resourceType']}/{event['id']}",
                                              p["flag_code"], day.isoformat(), evidence)
            own.append(flag)
            why = "under 18" if under else "with safeguarding history"
            self._notify(ctx, rule, self._recipients(ctx.tx, person, p["recipients"]), person.ref,
                         [_ref(flag), _ref(event)], f"Pregnancy of a person {why}: unborn child safeguarding concern",
                         flag["id"], p["priority"])

    # --- rule 4: birth -----------------------------------------------------------------------------------

    def _birth(self, ctx: _Ctx, person: Person, mothers: list[Person]) -> None:
        rule = "birth"
        p = self.rules[rule]
        if person.birth is None or not mothers:
            return
        carry: dict[str, str] = p["carry"]
        for mother in mothers:
            for flag in mother.flags:
                code = _flag_code(flag)
                if code not in carry or flag.get("status") == "entered-in-error":
                    continue
                start = _day((flag.get("period") or {}).get("start"))
                end = _day((flag.get("period") or {}).get("end"))
                if start is not None and not (person.birth - timedelta(days=p["window_days"]) <= start <= person.birth):
                    continue
                if end is not None and end < person.birth:
                    continue
                if flag.get("status") != "active" and end is None:
                    continue
                baby_flag, _ = self._derive_flag(ctx, person, rule, f"Flag/{flag['id']}", carry[code],
                                                 person.birth.isoformat(), [flag])
                self._notify(ctx, rule, self._recipients(ctx.tx, person, p["recipients"]), person.ref,
                             [_ref(baby_flag), _ref(flag)],
                             "Newborn of a mother with an unborn child safeguarding plan or concern",
                             baby_flag["id"], p["priority"])

    # --- rule 5: was not brought ------------------------------------------------------------------------

    def _was_not_brought(self, ctx: _Ctx, person: Person, mothers: list[Person]) -> None:
        rule = "was-not-brought-pattern"
        p = self.rules[rule]
        wnb: list[tuple[date, dict[str, Any]]] = []
        for appt in person.appointments:
            if appt.get("status") != "noshow":
                continue
            day = _day(appt.get("start"))
            if day is None:
                continue
            outcome = {c.get("code") for e in appt.get("extension", ()) if e.get("url") == ATTENDANCE_EXT
                       for c in (e.get("valueCodeableConcept") or {}).get("coding", ())}
            age = person.age(day)
            if "was-not-brought" in outcome or (age is not None and age < p["adult_age"]):
                wnb.append((day, appt))
        if not wnb:
            return
        wnb.sort(key=lambda w: (w[0], w[1]["id"]))
        flagged = any(_flag_active(f, ctx.today) for f in person.safeguarding_flags(exclude=[rule])) or any(
            _flag_active(f, ctx.today) for m in mothers for f in m.safeguarding_flags())
        if not flagged and p["flagged_count"] < p["count"] and len(wnb) >= p["flagged_count"]:
            flagged = self._siblings_flagged(ctx.tx, person, mothers, ctx.today)
        threshold = p["flagged_count"] if flagged else p["count"]
        if len(wnb) < max(threshold, 1):
            return
        window = p["window_days"]
        own = [f for f in person.flags if _rule_of(f) == rule]
        for i, (day, appt) in enumerate(wnb):
            in_window = [a for d, a in wnb[: i + 1] if (day - d).days <= window]
            if len(in_window) < max(threshold, 1):
                continue
            if any(abs(((_day((f.get("period") or {}).get("start")) or day) - day).days) <= window for f in own):
                continue
            flag, _ = self._derive_flag(ctx, person, rule, f"Appointment/{appt['id']}", "repeated-was-not-brought",
                                        day.isoformat(), in_window)
            own.append(flag)
            self._notify(ctx, rule, self._recipients(ctx.tx, person, p["recipients"]), person.ref,
                         [_ref(flag), *(_ref(a) for a in in_window)],
                         f"{len(in_window)} was-not-brought appointment(s) within {window} days",
                         flag["id"], p["priority"])

    # --- rule 6: fathers and partners -------------------------------------------------------------------

    def _young_father(self, ctx: _Ctx, person: Person) -> None:
        rule = "young-father"
        p = self.rules[rule]
        codes = set(p["relationships"])
        for rp in person.related:
            if not _rel_codes(rp) & codes:
                continue
            born = _day(rp.get("birthDate"))
            if born is None:
                continue
            at = person.birth or ctx.today
            if age_on(born, at) > p["max_age"]:
                continue
            key = self._father_key(person, rp, born)
            father_iid = self._father_identity(ctx, person, rp, born, key)
            if father_iid is None:
                continue
            # only his id (and, for a gp-practice recipient, his practices) is used: no need to load his records
            father = self._person(ctx.tx, father_iid) if "gp-practice" in p["recipients"] \
                else self._person_ref(ctx.tx, father_iid)
            if father is None:
                continue
            flag, _ = self._derive_flag(ctx, father, rule, f"{person.iid}|{key}", "young-parent",
                                        (person.birth or ctx.today).isoformat(), [rp])
            self._notify(ctx, rule, self._recipients(ctx.tx, father, p["recipients"]), father.ref,
                         [_ref(flag), _ref(rp)], "Father under 18: a young parent", flag["id"], p["priority"])

    def _father_key(self, person: Person, rp: dict[str, Any], born: date) -> str:
        return _related_key(rp, born)

    def _father_identity(self, ctx: _Ctx, person: Person, rp: dict[str, Any], born: date, key: str) -> str | None:
        """His own record's identity (by NHS number), else a derived Patient from the RelatedPerson."""
        if key.startswith("nhs|"):
            iid = self._identity_by_nhs(ctx.tx, key[4:])
            if iid:
                return iid
        pid = resource_id("rules", "Patient", "father", person.iid, key)
        existing = ctx.tx.exists("Patient", pid)
        if not existing:
            patient: dict[str, Any] = {
                "resourceType": "Patient", "id": pid,
                "meta": {"profile": [PATIENT_PROFILE], "tag": [DERIVED_TAG], "source": f"{RULE_SOURCE}young-father"},
                "identifier": [{"system": DERIVED_ID_SYSTEM, "value": pid}],
                "active": True,
            }
            nhs = [i for i in rp.get("identifier", ()) if i.get("system") == NHS_NUMBER_SYSTEM and i.get("value")]
            if nhs:
                patient["identifier"].insert(0, {"system": NHS_NUMBER_SYSTEM, "value": nhs[0]["value"]})
            for element in ("name", "gender", "telecom", "address"):
                if rp.get(element):
                    patient[element] = rp[element]
            patient["birthDate"] = born.isoformat()
            self.put(ctx.tx, patient)
            self._provenance(ctx, "young-father", [f"Patient/{pid}"], [rp], "derived-patient")
            _log.info("derived patient %s rule=young-father", pid)
        found = ctx.tx.identity_of(pid)
        # a derived father already in identity reconciliation stays there: his record does not change, and a
        # record of him arriving later is matched against it then
        if self.reconcile_derived is not None and (not existing or found is None):
            stored = ctx.tx.read("Patient", pid)
            if stored is not None:
                self.reconcile_derived(ctx.tx, stored.resource)
            found = ctx.tx.identity_of(pid)
        return found[0] if found else pid

    def _household(self, ctx: _Ctx, person: Person, mothers: list[Person]) -> None:
        rule = "change-in-household"
        p = self.rules[rule]
        codes = set(p["relationships"])
        candidates = [rp for rp in person.related if _rel_codes(rp) & codes and rp.get("active", True) is not False]
        if not candidates:
            return
        flags = [f for f in person.safeguarding_flags() if _flag_active(f, ctx.today)]
        flags += [f for m in mothers for f in m.safeguarding_flags() if _flag_active(f, ctx.today)]
        if not flags:
            return
        # once per person in the household, not per record of them: the same partner recorded again by
        # another source (or a later message's NK1) is not a change in the household
        people: dict[str, dict[str, Any]] = {}
        for rp in candidates:
            people.setdefault(_related_key(rp, _day(rp.get("birthDate"))), rp)
        for key, rp in people.items():
            self._notify(ctx, rule, self._recipients(ctx.tx, person, p["recipients"]), person.ref,
                         [_ref(flags[0]), _ref(rp)],
                         "A partner or adult in the household of a flagged child or mother",
                         f"{person.iid}|{key}", p["priority"])

    # --- rule 7: closure and handover -------------------------------------------------------------------

    def _closure(self, ctx: _Ctx, person: Person) -> None:
        rule = "flag-closure"
        p = self.rules[rule]
        for flag in person.safeguarding_flags(exclude=p["exclude_rules"]):
            end = _day((flag.get("period") or {}).get("end"))
            if flag.get("status") != "inactive" or end is None or end > ctx.today:
                continue
            if (ctx.today - end).days > p["ended_within_days"]:
                continue
            since = add_months(end, -p["contact_months"])
            recipients: list[str] = []
            for res in person.encounters + person.appointments:
                day = _day((res.get("period") or {}).get("start") or res.get("start"))
                if day is None or not since <= day <= end:
                    continue
                provider = _ods(res.get("serviceProvider"))
                if provider and ctx.tx.exists("Organization", f"ods-{provider}"):
                    recipients.append(provider)
                role = p["source_roles"].get(_source_of(res)[0] or "")
                if role:
                    recipients += self._recipients(ctx.tx, person, [role])
            author = _ods(flag.get("author"))
            if author and ctx.tx.exists("Organization", f"ods-{author}"):
                recipients.append(author)
            recipients = list(dict.fromkeys(recipients))
            if not recipients:
                continue
            self._notify(ctx, rule, recipients, person.ref, [_ref(flag)],
                         "A safeguarding flag has ended (plan closed)", f"{flag['id']}|{end.isoformat()}",
                         p["priority"])

    def _handover(self, ctx: _Ctx, person: Person, mothers: list[Person]) -> None:
        rule = "handover-gap"
        p = self.rules[rule]
        if person.birth is None:
            return
        discharges = []
        for enc in person.encounters:
            end = _day((enc.get("period") or {}).get("end"))
            start = _day((enc.get("period") or {}).get("start")) or end
            if end is None or start is None or _source_of(enc)[0] not in p["discharge_sources"]:
                continue
            if (start - person.birth).days > p["newborn_days"] or ctx.today < end + timedelta(days=p["days"]):
                continue
            discharges.append((end, enc))
        if not discharges:
            return
        flags = [f for m in mothers for f in m.safeguarding_flags() if _flag_active(f, ctx.today)]
        flags += [f for f in person.safeguarding_flags() if _flag_active(f, ctx.today)]
        if not flags:
            return
        hv_sources, hv_services = set(p["health_visiting_sources"]), set(p["health_visiting_services"])
        for end, enc in discharges:
            deadline = end + timedelta(days=p["days"])
            seen = False
            for contact in person.encounters:
                if contact is enc or contact.get("status") in ("cancelled", "entered-in-error"):
                    continue
                is_hv = _source_of(contact)[0] in hv_sources or bool(_codes(contact.get("serviceType") or {}) & hv_services)
                day = _day((contact.get("period") or {}).get("start"))
                if is_hv and day is not None and end <= day <= deadline:
                    seen = True
                    break
            if seen:
                continue
            self._notify(ctx, rule, self._recipients(ctx.tx, person, p["recipients"]), person.ref,
                         [_ref(flags[0]), _ref(enc)],
                         f"No health visiting contact within {p['days']} days of a maternity discharge",
                         f"{person.iid}|{enc['id']}", p["priority"])


def _detail_refs(flag: dict[str, Any]) -> list[str]:
    return [str((e.get("valueReference") or {}).get("reference", "")) for e in flag.get("extension", ())
            if e.get("url") == FLAG_DETAIL]


@dataclass
class _Ctx:
    tx: Transaction
    now: datetime
    today: date
    sent: str
    roles_checked: bool = False  # _by_role compared the Organizations' versions in this evaluation already


# --- the daily evaluation ------------------------------------------------------------------------------------

def _all(store: Store, rtype: str, params: list[tuple[str, str]]) -> Iterable[dict[str, Any]]:
    offset = 0
    while True:
        page = store.search(rtype, params, count=500, offset=offset)
        for match in page.matches:
            yield match.resource
        offset += len(page.matches)
        if not page.matches or offset >= page.total:
            return


def daily_identities(store: Store, engine: RulesEngine, today: date) -> list[str]:
    """The identities whose clocks may have run out today (committed data; index seeks, no scan): masters
    turning 18 (within the look-back), subjects of active derived flags (continuity ends), and babies discharged
    from maternity around the handover deadline."""
    adult_age = engine.rules["continuity-past-16"]["adult_age"]
    lookback = engine.rules["at-18"]["lookback_days"]
    hi = add_years(today, -adult_age)
    lo = hi - timedelta(days=lookback)
    h = engine.rules["handover-gap"]
    since = today - timedelta(days=h["days"] + lookback + h["newborn_days"])
    ids_matching = getattr(store, "ids_matching", None)  # SqliteStore: direct index lookups
    fields_matching = getattr(store, "fields_matching", None)
    out: dict[str, None] = {}
    master = f"{MASTER_TAG['system']}|{MASTER_TAG['code']}"
    derived = f"{DERIVED_TAG['system']}|{DERIVED_TAG['code']}"
    encounter_rows: list[tuple[Any, ...]] | None = None
    if ids_matching is not None and fields_matching is not None:
        patients: Iterable[str] = ids_matching(
            "Patient", date=("birthdate", lo.isoformat(), hi.isoformat()),
            tokens=[("_tag", MASTER_TAG["system"], MASTER_TAG["code"])])
        flags: Iterable[dict[str, Any]] = (
            {"subject": {"reference": ref or ""}} for _fid, ref in fields_matching(
                "Flag", ["$.subject.reference"],
                tokens=[("_tag", DERIVED_TAG["system"], DERIVED_TAG["code"]), ("status", None, "active")]))
        encounter_rows = fields_matching("Encounter", ["$.period.end", "$.subject.reference"],
                                         date=("date", since.isoformat(), None))
    else:
        patients = (p["id"] for p in _all(store, "Patient", [("birthdate", f"ge{lo.isoformat()}"),
                                                             ("birthdate", f"le{hi.isoformat()}"), ("_tag", master)]))
        flags = _all(store, "Flag", [("_tag", derived), ("status", "active")])
    for pid in patients:
        out.setdefault(pid, None)
    for flag in flags:
        ref = (flag.get("subject") or {}).get("reference", "")
        if ref.startswith("Patient/"):
            out.setdefault(ref[8:], None)
    with store.transaction() as tx:
        encounters: Iterable[tuple[Any, Any]] = (
            (((e.get("period") or {}).get("end"), (e.get("subject") or {}).get("reference", ""))
             for e in _all(store, "Encounter", [("date", f"ge{since.isoformat()}")]))
            if encounter_rows is None else ((end, ref) for _eid, end, ref in encounter_rows))
        for end_value, ref in encounters:
            end = _day(end_value)
            if end is None or not today - timedelta(days=h["days"] + lookback) <= end <= today - timedelta(days=h["days"]):
                continue
            if not isinstance(ref, str):
                continue
            found = tx.identity_of(ref[8:]) if ref.startswith("Patient/") else None
            if found is not None:
                out.setdefault(found[0], None)
    return list(out)


def run_daily(store: Store, engine: RulesEngine, now: datetime, *, batch: int = 500) -> int:
    """Evaluate the clock rules (at 18, continuity ends, handover gap) for today's identities; returns how
    many identities were evaluated. Each batch is one transaction."""
    identities = daily_identities(store, engine, now.astimezone(UTC).date())
    for i in range(0, len(identities), batch):
        with store.transaction() as tx:
            for iid in identities[i:i + batch]:
                stored = tx.read("Patient", iid)
                if stored is None or not is_master(stored.resource):
                    continue
                try:
                    with tx.savepoint():
                        engine.evaluate(tx, iid, now)
                except Exception as exc:  # noqa: BLE001 - one identity's failure must not stop the others
                    _log.exception("daily rules failed for identity %s (%s)", iid, type(exc).__name__)
    _log.info("daily rules: %d identities evaluated", len(identities))
    return len(identities)
