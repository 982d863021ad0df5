"""Identity reconciliation in the pipeline's transaction: one master Patient per human.

Every source Patient the pipeline stores (maternity, health visiting, GP) is standardised and matched
(``adapter.reconcile``) against the identities already held, using the store's blocking tables, in the
same transaction as the message that brought it.  The decision is applied as FHIR resources:

    master Patient   id = the identity id (stable: derived from the first source record), tagged
                     record-type#master, best-known NHS number and demographics of its members,
                     ``link`` seealso -> each source Patient, with the match grade (LinkMatch extension)
    source Patient   ``link`` refer -> its master, with the match grade
    Provenance       per decision: the rule (``policy``), model version, probability, the records
    Task             identity-review (our profile) for the middle band: the candidate masters and the
                     per-field evidence; resolved by PUT with output ``decision`` = link | not-a-match
    Communication    a review-band candidate carrying a safeguarding flag: an alert to the safeguarding team

Merges (HL7 A40, a reviewer's ``link``, a newborn joining its pre-birth identity) fold one identity into
another: the retired master becomes inactive with ``link`` replaced-by the surviving master, history is
kept (every version stays readable).  A merge that would move a safeguarding flag between identities is
not applied: it becomes a review Task.  Masters are never matched themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from adapter.fhir import CT, NHS_NUMBER_SYSTEM, UKCORE_NHS_VERIFICATION_EXT
from adapter.mapping.ids import resource_id
from adapter.reconcile.engine import Candidate, Decision, blocking_keys, decide
from adapter.reconcile.model import Model, load_model
from adapter.reconcile.standardise import PersonRecord, from_patient
from adapter.store.base import Transaction

__all__ = ["IdentityService", "MASTER_TAG", "LINK_MATCH_EXT", "record_text", "record_of", "TxIndex",
           "is_master", "REVIEW_CODE"]

_log = logging.getLogger("carethread.identity")

RECORD_TYPE_CS = f"{CT}/CodeSystem/record-type"
MASTER_TAG = {"system": RECORD_TYPE_CS, "code": "master", "display": "Carethread master record"}
LINK_MATCH_EXT = f"{CT}/StructureDefinition/Extension-Carethread-LinkMatch"
PATIENT_PROFILE = f"{CT}/StructureDefinition/CarethreadPatient"
TASK_PROFILE = f"{CT}/StructureDefinition/CarethreadTask"
TASK_CODE_CS = f"{CT}/CodeSystem/task-code"
TASK_INPUT_CS = f"{CT}/CodeSystem/task-input-type"
REVIEW_CODE = {"system": TASK_CODE_CS, "code": "identity-review", "display": "Identity review"}
IDENTITY_SYSTEM = f"{CT}/Id/identity"
RULE_URL = f"{CT}/linkage-rule/"
MODEL_URL = f"{CT}/linkage-model/"
SOURCE = f"{CT}/source/identity"
_MOTHER_CODES = {"MTH", "NMTH"}
MAX_REVIEW_CANDIDATES = 5  # a review Task shows the best five candidate identities
_DATE_FIELDS = {"birth_date", "due_date"}
_TUPLE_FIELDS = {f.name for f in fields(PersonRecord) if str(f.type).startswith("tuple")}


# --- the record each member is matched on, as the store keeps it --------------------------------------------

def record_text(rec: PersonRecord, *, grade: str, rule: str) -> str:
    data: dict[str, Any] = {}
    for f in fields(rec):
        value = getattr(rec, f.name)
        data[f.name] = value.isoformat() if isinstance(value, date) else list(value) if isinstance(value, tuple) else value
    return json.dumps({"rec": data, "grade": grade, "rule": rule}, separators=(",", ":"), sort_keys=True)


@lru_cache(maxsize=65536)
def _parsed(text: str) -> tuple[PersonRecord, str, str]:
    data = json.loads(text)
    raw = data["rec"]
    values = {k: (date.fromisoformat(v) if k in _DATE_FIELDS and v else tuple(v) if k in _TUPLE_FIELDS else v)
              for k, v in raw.items()}
    return PersonRecord(**values), data.get("grade", "certain"), data.get("rule", "")


def record_of(text: str) -> PersonRecord:
    return _parsed(text)[0]


class TxIndex:
    """``CandidateIndex`` (and merge) over the store's identity tables, inside one transaction."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def add(self, identity_id: str, rec: PersonRecord, *, grade: str = "certain", rule: str = "") -> None:
        self.tx.set_identity_member(rec.key, identity_id, record_text(rec, grade=grade, rule=rule), blocking_keys(rec))

    def candidates(self, rec: PersonRecord) -> Iterable[tuple[str, PersonRecord]]:
        for _pid, iid, text in self.tx.identity_candidates(blocking_keys(rec)):
            yield iid, record_of(text)

    def members(self, identity_id: str) -> list[PersonRecord]:
        return [record_of(text) for _pid, text in self.tx.identity_members(identity_id)]

    def merge(self, into: str, other: str) -> None:
        for pid, text in self.tx.identity_members(other):
            self.tx.set_identity_member(pid, into, text, blocking_keys(record_of(text)))


def is_master(patient: dict[str, Any]) -> bool:
    return any(t.get("system") == RECORD_TYPE_CS and t.get("code") == "master"
               for t in (patient.get("meta") or {}).get("tag", []))


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _grade_ext(grade: str) -> list[dict[str, Any]]:
    return [{"url": LINK_MATCH_EXT, "valueCode": grade if grade in ("certain", "probable", "possible") else "possible"}]


@dataclass
class Applied:
    """What reconciling one source Patient did (for the Outcome, the tests and the rules)."""

    patient_id: str
    identity_id: str
    action: str  # link | new | review | merge | unchanged
    rule: str
    task_id: str | None = None


Put = Callable[[dict[str, Any]], None]  # validate and store one resource (the pipeline's)
Alert = Callable[[Transaction, str, list[str], str], None]  # (tx, subject ref, flag refs, dedup key)


class IdentityService:
    """Reconcile source Patients inside a store transaction.  ``put`` validates and writes a resource;
    ``alert`` raises the flagged-candidate notification (None: no notifications, e.g. an evaluation)."""

    def __init__(self, model: Model | None = None, *, alert: Alert | None = None,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        self.model = model or load_model()
        self.alert = alert
        self.today = today

    # --- entry points ---------------------------------------------------------------------------------

    def reconcile(self, tx: Transaction, patient: dict[str, Any], source: str, related: list[dict[str, Any]],
                  put: Put) -> Applied | None:
        """A source Patient just stored (``related``: the RelatedPersons its message produced, for the
        mother's identifiers).  Masters and Patients of unknown source are left alone."""
        if is_master(patient) or source not in ("maternity", "health-visiting", "gp", "derived"):
            return None
        pid = patient["id"]
        mother_nhs, mother_local = _mother_of(pid, related)
        rec = from_patient(patient, source=source, mother_nhs=mother_nhs, mother_local_id=mother_local)
        replaced_by = _replaced_by(patient)
        existing = tx.identity_of(pid)
        index = TxIndex(tx)
        if existing is not None:
            identity_id, text = existing
            old, grade, rule = _parsed(text)
            if old != rec:  # demographics changed: re-keyed, the identity kept (moves are merges or reviews)
                index.add(identity_id, rec, grade=grade, rule=rule)
                self._refresh_master(tx, identity_id, put)
            applied = Applied(pid, identity_id, "unchanged", rule)
        else:
            applied = self._decide_new(tx, index, rec, put)
        if replaced_by is not None:  # HL7 A40: this record is replaced by another: their identities merge
            survivor = tx.identity_of(replaced_by)
            if survivor is not None and survivor[0] != applied.identity_id:
                return self.merge(tx, survivor[0], applied.identity_id, put, rule="hl7-a40-merge",
                                  record=pid, reason="HL7 v2 A40 merge")
        return applied

    def merge(self, tx: Transaction, into: str, other: str, put: Put, *, rule: str, record: str,
              reason: str, reviewed: bool = False) -> Applied:
        """Fold identity ``other`` into ``into``.  Unless a reviewer decided it, a merge that moves a
        safeguarding flag is turned into a review Task instead."""
        if not reviewed and (self._flags_of(tx, other) or self._flags_of(tx, into)):
            task_id = self._review_task(tx, record, [into], put, reason=f"{reason}: would move a safeguarding flag",
                                        evidence=[], probability=None)
            return Applied(record, other, "review", rule, task_id)
        TxIndex(tx).merge(into, other)
        retired = tx.read("Patient", other)
        if retired is not None:
            master = {k: v for k, v in retired.resource.items() if k != "meta"}
            master["meta"] = {k: v for k, v in retired.resource["meta"].items() if k not in ("versionId", "lastUpdated")}
            master["active"] = False
            master["link"] = [{"other": _ref("Patient", into), "type": "replaced-by"}]
            put(master)
        self._refresh_master(tx, into, put)
        self._provenance(tx, record, into, rule, "certain", None, put, also=[other])
        return Applied(record, into, "merge", rule)

    # --- decisions ----------------------------------------------------------------------------------------

    def _decide_new(self, tx: Transaction, index: TxIndex, rec: PersonRecord, put: Put) -> Applied:
        decision = decide(rec, index, self.model, as_of=self.today())
        pid = rec.key
        if decision.action == "link" and decision.identity_id:
            identity_id = decision.identity_id
            index.add(identity_id, rec, grade=decision.grade, rule=decision.rule)
            self._refresh_master(tx, identity_id, put)
            self._provenance(tx, pid, identity_id, decision.rule, decision.grade, decision, put)
            applied = Applied(pid, identity_id, "link", decision.rule)
            for other in decision.merge:  # e.g. the pre-birth identity of this newborn
                if other != identity_id:
                    applied = self.merge(tx, identity_id, other, put, rule=f"{decision.rule}-merge", record=pid,
                                         reason="newborn and pre-birth record")
            return applied
        identity_id = resource_id("identity", "Patient", pid)
        grade = "certain" if decision.action == "new" else "possible"
        index.add(identity_id, rec, grade=grade, rule=decision.rule)
        self._refresh_master(tx, identity_id, put)
        self._provenance(tx, pid, identity_id, decision.rule, grade, decision, put)
        if decision.action != "review":
            return Applied(pid, identity_id, "new", decision.rule)
        candidates = [c for c in decision.candidates if c.identity_id != identity_id][:MAX_REVIEW_CANDIDATES]
        evidence = _evidence_lines(candidates)
        task_id = self._review_task(tx, pid, [c.identity_id for c in candidates] or list(decision.also), put,
                                    reason=f"identity review ({decision.rule})", evidence=evidence,
                                    probability=decision.probability)
        flags = [f for c in candidates for f in self._flags_of(tx, c.identity_id)]
        if flags and self.alert is not None:
            self.alert(tx, f"Patient/{identity_id}", flags, f"{pid}|{','.join(sorted(c.identity_id for c in candidates))}")
        return Applied(pid, identity_id, "review", decision.rule, task_id)

    def resolve_review(self, tx: Transaction, task: dict[str, Any], decision: str, put: Put) -> Applied | None:
        """A reviewer's decision on an identity-review Task: ``link`` merges the record's identity into the
        first candidate's; ``not-a-match`` changes nothing (the Task is kept, completed, as the record)."""
        record = (task.get("for") or {}).get("reference", "").removeprefix("Patient/")
        mine = tx.identity_of(record)
        candidates = [i["valueReference"]["reference"].removeprefix("Patient/") for i in task.get("input", [])
                      if _input_type(i) == "candidate" and "valueReference" in i]
        if decision != "link" or mine is None or not candidates:
            return None
        target = tx.identity_of(candidates[0])
        into = target[0] if target is not None else candidates[0]
        if into == mine[0]:
            return Applied(record, into, "unchanged", "review-decision")
        return self.merge(tx, into, mine[0], put, rule="review-decision", record=record,
                          reason="a reviewer's decision", reviewed=True)

    # --- resources ---------------------------------------------------------------------------------------

    def _refresh_master(self, tx: Transaction, identity_id: str, put: Put) -> None:
        members = tx.identity_members(identity_id)
        patients: list[tuple[dict[str, Any], str]] = []
        for pid, text in members:
            stored = tx.read("Patient", pid)
            if stored is not None:
                patients.append((stored.resource, _parsed(text)[1]))
        if not patients:
            return
        # verified NHS numbers first, then the most recently updated record
        ordered = sorted(patients, key=lambda p: (not _verified(p[0]), _neg_time(p[0])))
        master: dict[str, Any] = {
            "resourceType": "Patient", "id": identity_id,
            "meta": {"profile": [PATIENT_PROFILE], "tag": [MASTER_TAG], "source": f"{SOURCE}#{identity_id}"},
            "active": True,
        }
        nhs = next((i for p, _ in ordered for i in p.get("identifier", [])
                    if i.get("system") == NHS_NUMBER_SYSTEM and i.get("value")), None)
        master["identifier"] = [nhs] if nhs else [{"system": IDENTITY_SYSTEM, "value": identity_id}]
        for element in ("name", "gender", "birthDate", "address", "multipleBirthInteger", "multipleBirthBoolean",
                        "generalPractitioner"):
            value = next((p[element] for p, _ in ordered if p.get(element) not in (None, [], "")), None)
            if value is not None and not (element == "generalPractitioner" and any(
                    "reference" in r for r in value)):
                master[element] = value
        master["link"] = [{"extension": _grade_ext(grade), "other": _ref("Patient", p["id"]), "type": "seealso"}
                          for p, grade in sorted(patients, key=lambda x: x[0]["id"])]
        put(master)
        for patient, grade in patients:  # each source record points at its master
            links = [link for link in patient.get("link", []) if link.get("type") != "refer"]
            links.append({"extension": _grade_ext(grade), "other": _ref("Patient", identity_id), "type": "refer"})
            if links != patient.get("link"):
                updated = {k: v for k, v in patient.items() if k != "meta"}
                updated["meta"] = {k: v for k, v in patient["meta"].items() if k not in ("versionId", "lastUpdated")}
                updated["link"] = links
                put(updated)

    def _provenance(self, tx: Transaction, pid: str, identity_id: str, rule: str, grade: str,
                    decision: Decision | None, put: Put, also: list[str] | None = None) -> None:
        prob = f" p={decision.probability:.6f}" if decision is not None else ""
        put({
            "resourceType": "Provenance",
            "id": resource_id("identity", "Provenance", pid, identity_id, rule),
            "meta": {"source": f"{SOURCE}#{identity_id}"},
            "target": [_ref("Patient", pid), _ref("Patient", identity_id), *(_ref("Patient", o) for o in also or [])],
            "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            "policy": [RULE_URL + rule, MODEL_URL + (self.model.version or "unversioned")],
            "activity": {"text": f"identity {rule}: {grade}{prob}"},
            "agent": [{"who": {"display": "Carethread identity reconciliation"}}],
        })

    def _review_task(self, tx: Transaction, pid: str, candidate_identities: list[str], put: Put, *, reason: str,
                     evidence: list[str], probability: float | None) -> str:
        task_id = resource_id("identity", "Task", pid, *sorted(candidate_identities))
        existing = tx.read("Task", task_id)
        if existing is not None and existing.resource.get("status") != "requested":
            return task_id  # decided already: a decision is not re-asked
        inputs: list[dict[str, Any]] = [
            {"type": {"coding": [{"system": TASK_INPUT_CS, "code": "candidate"}]},
             "valueReference": _ref("Patient", iid)} for iid in candidate_identities]
        inputs += [{"type": {"coding": [{"system": TASK_INPUT_CS, "code": "evidence"}]}, "valueString": line}
                   for line in evidence]
        if probability is not None:
            inputs.append({"type": {"coding": [{"system": TASK_INPUT_CS, "code": "match-probability"}]},
                           "valueDecimal": round(probability, 6)})
        put({
            "resourceType": "Task", "id": task_id,
            "meta": {"profile": [TASK_PROFILE], "source": f"{SOURCE}#{pid}"},
            "status": "requested", "intent": "proposal", "priority": "urgent" if "flag" in reason else "routine",
            "code": {"coding": [REVIEW_CODE]}, "description": reason,
            "focus": _ref("Patient", pid), "for": _ref("Patient", pid),
            "authoredOn": datetime.now(UTC).isoformat(timespec="seconds"),
            "input": inputs or [{"type": {"coding": [{"system": TASK_INPUT_CS, "code": "candidate"}]},
                                 "valueReference": _ref("Patient", pid)}],
        })
        return task_id

    def _flags_of(self, tx: Transaction, identity_id: str) -> list[str]:
        """References of the safeguarding Flags on any Patient of an identity (the master included)."""
        patients = [identity_id, *(pid for pid, _ in tx.identity_members(identity_id))]
        return tx.flags_of_patients(patients)


def _input_type(item: dict[str, Any]) -> str | None:
    for coding in (item.get("type") or {}).get("coding", []):
        if coding.get("system") == TASK_INPUT_CS:
            return str(coding.get("code"))
    return None


def _evidence_lines(candidates: list[Candidate]) -> list[str]:
    lines = []
    for c in candidates:
        parts = ", ".join(f"{e.field} {e.level} {e.weight:+.1f}" for e in c.evidence)
        blocked = f"; cannot link: {', '.join(c.cannot_link)}" if c.cannot_link else ""
        lines.append(f"Patient/{c.identity_id}: p={c.probability:.4f} ({c.grade}){blocked}; {parts}")
    return lines


def _mother_of(pid: str, related: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    for rp in related:
        if rp.get("resourceType") != "RelatedPerson" or (rp.get("patient") or {}).get("reference") != f"Patient/{pid}":
            continue
        codes = {c.get("code") for r in rp.get("relationship", []) for c in r.get("coding", [])}
        if not codes & _MOTHER_CODES:
            continue
        nhs = local = None
        for ident in rp.get("identifier", []):
            if ident.get("system") == NHS_NUMBER_SYSTEM and nhs is None:
                nhs = ident.get("value")
            elif ident.get("value") and local is None:
                local = f"{ident.get('system')}|{ident['value']}"
        return nhs, local
    return None, None


def _replaced_by(patient: dict[str, Any]) -> str | None:
    for link in patient.get("link", []):
        if link.get("type") == "replaced-by":
            ref = (link.get("other") or {}).get("reference", "")
            if ref.startswith("Patient/"):
                return ref[8:]
    return None


def _verified(patient: dict[str, Any]) -> bool:
    for ident in patient.get("identifier", []):
        if ident.get("system") == NHS_NUMBER_SYSTEM:
            for ext in ident.get("extension", []):
                if ext.get("url") == UKCORE_NHS_VERIFICATION_EXT:
                    codes = [c.get("code") for c in ext.get("valueCodeableConcept", {}).get("coding", [])]
                    return "01" in codes
    return False


def _neg_time(patient: dict[str, Any]) -> str:
    stamp = (patient.get("meta") or {}).get("lastUpdated") or ""
    return "".join(chr(0x10FFFF - ord(c)) for c in stamp)  # newest first in an ascending sort
