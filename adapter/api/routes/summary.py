"""``GET /fhir/Patient/{id}/$safeguarding-summary``: what a clinician seeing this person needs, for the whole
identity (the master and every source record), whichever record's id is given.

The answer is a ``collection`` Bundle whose first entry is a ``Composition`` (LOINC 60591-5 patient summary,
plus ``CodeSystem/document-type#safeguarding-summary``; subject the master Patient) with one section per
topic, each ``section.entry`` referencing resources included later in the Bundle:

    Safeguarding flags (active)         Flags, newest first; per flag a sub-section "Why: ..." with its
    Safeguarding flag history             Provenance(s) and the evidence they name (entity.what) and the
                                          flag-detail target; the text names the rule or the source
    Was not brought (last 12 months) -  one section per source (maternity, health-visiting, gp): the noshow
      <source>                            Appointments with attendance outcome was-not-brought, a count in
                                          the text
    Related persons                     RelatedPersons of any record (fathers and partners first), each entry
                                          with its age today (extension ``Extension-Carethread-AgeAtSummary``,
                                          valueAge) and in the text; for a parent, the fathers and partners
                                          recorded on their children's records too
    Organisations involved              Organizations named by the records (GP practice, managing
                                          organisation, encounter service providers, flag authors,
                                          notification recipients): a literal reference when held, else a
                                          logical one (ODS identifier); a sub-section lists the source systems
    Pending notifications               Communications in progress or in preparation

Then the Patients (master first), and every resource referenced above, each once. Every query is a store
search over the identity (``identity`` parameter) or a batch ``_id`` / ``identifier`` lookup: a fixed number
of queries whatever the size of the record. Narrative holds codes, dates, counts and ages, never names or
identifiers. ``now`` is the pipeline's clock when it has one (the sandbox may move it), else real time.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request

from adapter.api.outcomes import ApiError, FhirJSONResponse
from adapter.api.routes.fhir import check_id, fhir_base, negotiate
from adapter.fhir import CT
from adapter.identity import is_master
from adapter.store.base import Store
from adapter.store.query import MAX_COUNT
from adapter.store.search import parse_reference

__all__ = ["summary_router", "safeguarding_summary", "OPERATION", "AGE_EXT", "SOURCES"]

OPERATION = "$safeguarding-summary"
OPERATION_URL = f"{CT}/OperationDefinition/Patient-safeguarding-summary"
AGE_EXT = f"{CT}/StructureDefinition/Extension-Carethread-AgeAtSummary"
DOC_TYPE_CS = f"{CT}/CodeSystem/document-type"
ATTENDANCE_EXT = f"{CT}/StructureDefinition/Extension-Carethread-AttendanceOutcome"
FLAG_DETAIL_EXT = "http://hl7.org/fhir/StructureDefinition/flag-detail"
RULE_POLICY = f"{CT}/safeguarding-rule/"
SOURCE_PREFIX = f"{CT}/source/"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ROLE_CS = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
SOURCES = ("maternity", "health-visiting", "gp")
SOURCE_TITLES = {"maternity": "maternity", "health-visiting": "health visiting", "gp": "GP"}
# fathers and partners first (DOMAIN.md §1: neither father appeared in any agency's records)
FATHERS_AND_PARTNERS = ("FTH", "NFTH", "NFTHF", "STPFTH", "ADOPTF", "FTHFOST", "SIGOTHR", "DOMPART", "HUSB",
                        "BOYFR")
_PARENT_CODES = {"MTH", "NMTH", "FTH", "NFTH", "STPFTH", "STPMTH", "ADOPTF", "ADOPTM", "PRN", "NPRN"}
_EMPTY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nilknown",
                      "display": "Nil Known"}]}
_WINDOW = timedelta(days=365)
_OWN_SOURCES = {"identity", "rule", "rules", "organisations"}

Clock = Callable[[], datetime]


# --- small helpers ------------------------------------------------------------------------------------------

def _narrative(lines: Iterable[str], heading: str | None = None) -> dict[str, str]:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    head = f"<p>{html.escape(heading)}</p>" if heading else ""
    body = f"{head}<ul>{items}</ul>" if items else head or "<p>None recorded.</p>"
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _key(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["resourceType"], resource["id"]


def _ref(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _source_of(resource: dict[str, Any]) -> str | None:
    source = (resource.get("meta") or {}).get("source") or ""
    if not source.startswith(SOURCE_PREFIX):
        return None
    return source[len(SOURCE_PREFIX):].split("#", 1)[0] or None


def _codes(concept: Any) -> list[tuple[str | None, str | None, str | None]]:
    concepts = concept if isinstance(concept, list) else [concept]
    return [(c.get("system"), c.get("code"), c.get("display")) for cc in concepts if isinstance(cc, dict)
            for c in cc.get("coding", []) if isinstance(c, dict)]


def _display(concept: Any) -> str:
    for _, code, display in _codes(concept):
        if display or code:
            return str(display or code)
    return (concept or {}).get("text", "unspecified") if isinstance(concept, dict) else "unspecified"


def _age(birth: str | None, today: date) -> int | None:
    try:
        born = date.fromisoformat(birth) if birth and len(birth) == 10 else None
    except ValueError:
        return None
    if born is None or born > today:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value if len(value) > 10 else f"{value}T00:00:00+00:00")
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _reference_key(ref: Any) -> tuple[str, str] | None:
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    parsed = parse_reference(ref["reference"])
    if parsed is None or parsed[0] is None:
        return None
    return parsed[0], parsed[1]


# --- gathering ----------------------------------------------------------------------------------------------

class _Gather:
    """Store reads for one summary; every resource is kept once (``known``) for the Bundle."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.known: dict[tuple[str, str], dict[str, Any]] = {}

    def search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            result = self.store.search(rtype, params, count=MAX_COUNT, offset=offset)
            out += [m.resource for m in result.matches]
            offset += len(result.matches)
            if not result.matches or offset >= result.total:
                break
        for r in out:
            self.known.setdefault(_key(r), r)
        return out

    def each(self, rtype: str, param: str, values: Iterable[str],
             also: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """One search per value: the store answers a comma list of references or system|code tokens by
        scanning the parameter's rows (an OR the index cannot serve), a single value by an index lookup."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for value in dict.fromkeys(values):
            for r in self.search(rtype, [(param, value.replace(",", "\\,")), *(also or [])]):
                out.setdefault(_key(r), r)
        return list(out.values())

    def fetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read the resources not yet known, one ``_id`` search per type."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            if (rtype, rid) not in self.known and rid not in by_type.get(rtype, ()):
                by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            try:
                for i in range(0, len(ids), MAX_COUNT):
                    chunk = ids[i:i + MAX_COUNT]
                    self.search(rtype, [("_id", ",".join(x.replace(",", "\\,") for x in chunk))])
            except KeyError:  # a type the store does not index: nothing of it can be held
                continue


def _resolve(store: Store, patient_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the given Patient, its master); ApiError 404 if the Patient is unknown."""
    stored = store.read("Patient", patient_id)
    if stored is None:
        raise ApiError(404, "not-found", "Patient not found")
    given = stored.resource
    master = given
    if not is_master(given):
        refer = next((link for link in given.get("link", []) if link.get("type") == "refer"), None)
        key = _reference_key((refer or {}).get("other"))
        if key is not None and key[0] == "Patient":
            found = store.read("Patient", key[1])
            master = found.resource if found is not None else given
    for _ in range(8):  # a retired master points at the one that replaced it
        nxt = next((link for link in master.get("link", []) if link.get("type") == "replaced-by"), None)
        key = _reference_key((nxt or {}).get("other"))
        found = store.read("Patient", key[1]) if key is not None and key[0] == "Patient" else None
        if found is None:
            break
        master = found.resource
    return given, master


def safeguarding_summary(store: Store, patient_id: str, *, now: datetime, base: str) -> dict[str, Any]:
    """The summary Bundle for the identity of Patient ``patient_id`` (raises ApiError 404 if unknown)."""
    _, master = _resolve(store, patient_id)
    today = now.date()
    g = _Gather(store)
    g.known[_key(master)] = master
    identity = f"Patient/{master['id']}"
    patients = g.search("Patient", [("identity", identity)])
    if not any(p["id"] == master["id"] for p in patients):
        patients.insert(0, master)
    patients.sort(key=lambda p: (p["id"] != master["id"], _source_of(p) or "", p["id"]))

    # flags, their provenance and evidence
    flags = [f for f in g.search("Flag", [("identity", identity)]) if f.get("status") != "entered-in-error"]
    flags.sort(key=lambda f: ((f.get("period") or {}).get("start") or "", f["id"]), reverse=True)
    active = [f for f in flags if f.get("status") == "active"]
    history = [f for f in flags if f.get("status") != "active"]
    provenance: dict[str, list[dict[str, Any]]] = {f["id"]: [] for f in flags}
    if flags:
        for p in g.each("Provenance", "target", (f"Flag/{f['id']}" for f in flags)):
            for t in p.get("target", []):
                key = _reference_key(t)
                if key is not None and key[0] == "Flag" and key[1] in provenance:
                    provenance[key[1]].append(p)
    evidence: dict[str, list[tuple[str, str]]] = {}
    for f in flags:
        keys: list[tuple[str, str]] = []
        for ext in f.get("extension", []):
            if ext.get("url") == FLAG_DETAIL_EXT:
                keys.append(_reference_key(ext.get("valueReference")))  # type: ignore[arg-type]
        for p in provenance[f["id"]]:
            for entity in p.get("entity", []):
                keys.append(_reference_key(entity.get("what")))  # type: ignore[arg-type]
        evidence[f["id"]] = list(dict.fromkeys(k for k in keys if k is not None and k != _key(f)))
    g.fetch(k for keys in evidence.values() for k in keys)

    # was not brought, last 12 months, by source
    since = (now - _WINDOW).date().isoformat()
    # status and date are checked here, not in the query: as store criteria they would each list every
    # noshow / recent Appointment in the store before meeting the identity's few
    noshows = [a for a in g.search("Appointment", [("identity", identity)])
               if a.get("status") == "noshow" and (a.get("start") or "")[:10] >= since]
    wnb: dict[str, list[dict[str, Any]]] = {s: [] for s in SOURCES}
    for a in sorted(noshows, key=lambda a: (a.get("start") or "", a["id"]), reverse=True):
        start = _instant(a.get("start"))
        if start is None or not (now - _WINDOW <= start <= now):
            continue
        outcome = {c[1] for ext in a.get("extension", []) if ext.get("url") == ATTENDANCE_EXT
                   for c in _codes(ext.get("valueCodeableConcept"))}
        if "was-not-brought" in outcome:
            wnb.setdefault(_source_of(a) or "other", []).append(a)

    # related persons: of any record; for a parent, the fathers and partners on the children's records
    own = g.search("RelatedPerson", [("identity", identity)])
    record_ids = {p["id"] for p in patients}
    nhs = [i["value"] for p in patients for i in p.get("identifier", [])
           if i.get("system") == NHS and i.get("value")]
    via_children: list[dict[str, Any]] = []
    if nhs:
        as_parent = g.each("RelatedPerson", "identifier", (f"{NHS}|{n}" for n in nhs))
        children = {k[1] for rp in as_parent
                    if {c[1] for c in _codes(rp.get("relationship", []))} & _PARENT_CODES
                    and (k := _reference_key(rp.get("patient"))) is not None and k[1] not in record_ids}
        if children:
            mine = set(nhs)
            of_children = ",".join(f"Patient/{c}" for c in sorted(children))  # identity: a UNION, indexed
            for rp in g.search("RelatedPerson", [("identity", of_children)]):
                codes = {c[1] for c in _codes(rp.get("relationship", [])) if c[0] == ROLE_CS}
                is_self = any(i.get("system") == NHS and i.get("value") in mine
                              for i in rp.get("identifier", []))
                if codes & set(FATHERS_AND_PARTNERS) and not is_self:
                    via_children.append(rp)

    # pending notifications
    pending = [c for c in g.search("Communication", [("identity", identity)])
               if c.get("status") in ("in-progress", "preparation")]
    pending.sort(key=lambda c: (c.get("sent") or "", c["id"]), reverse=True)

    # organisations
    encounters = g.search("Encounter", [("identity", identity)])
    org_refs: list[dict[str, Any]] = []
    for p in patients:
        org_refs += p.get("generalPractitioner", []) + [p.get("managingOrganization")]
    org_refs += [e.get("serviceProvider") for e in encounters]
    org_refs += [f.get("author") for f in flags]
    org_refs += [r for c in pending for r in c.get("recipient", [])]
    organisations = _organisations(g, [r for r in org_refs if isinstance(r, dict)])
    # the systems the records came from (not Carethread's own: identity, rules, configured organisations)
    sources = sorted({s for r in [*patients, *flags, *noshows, *own, *encounters] if (s := _source_of(r))
                      and s.split("/", 1)[0] not in _OWN_SOURCES})

    return _bundle(base, now, master, patients, g, active, history, provenance, evidence, wnb, own,
                   via_children, organisations, sources, pending, today)


def _organisations(g: _Gather, refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Section entries for the organisations named: held Organizations (the configured one first for an ODS
    code) as literal references, the rest as logical references by identifier."""
    literal: list[tuple[str, str]] = []
    ods: list[str] = []
    for ref in refs:
        key = _reference_key(ref)
        if key is not None and key[0] == "Organization":
            literal.append(key)
        ident = ref.get("identifier") if isinstance(ref.get("identifier"), dict) else None
        is_org = ref.get("type", "Organization") == "Organization"
        if ident and ident.get("system") == ODS and ident.get("value") and is_org:
            ods.append(ident["value"])
    g.fetch(literal)
    held = [g.known[k] for k in dict.fromkeys(literal) if k in g.known]
    for r in held:
        ods += [i["value"] for i in r.get("identifier", []) if i.get("system") == ODS and i.get("value")]
    ods = list(dict.fromkeys(ods))
    by_ods: dict[str, dict[str, Any]] = {}
    if ods:
        found = g.each("Organization", "identifier", (f"{ODS}|{v}" for v in ods))
        for org in sorted(found, key=lambda o: (_source_of(o) != "organisations", o["id"])):
            for i in org.get("identifier", []):
                if i.get("system") == ODS and i.get("value") in ods:
                    by_ods.setdefault(i["value"], org)
    for r in held:  # held by reference but not by ODS code
        codes = [i.get("value") for i in r.get("identifier", []) if i.get("system") == ODS]
        if not any(c in by_ods for c in codes):
            by_ods[f"#{r['id']}"] = r
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for code in [*ods, *(k for k in by_ods if k.startswith("#"))]:
        org = by_ods.get(code)
        if org is not None:
            if _key(org) not in seen:
                seen.add(_key(org))
                out.append(org)
        else:
            out.append({"identifier": {"system": ODS, "value": code}})
    return out


# --- the Bundle ---------------------------------------------------------------------------------------------

def _period(flag: dict[str, Any]) -> str:
    period = flag.get("period") or {}
    start, end = period.get("start"), period.get("end")
    return f"from {start or 'unknown'}" + (f" to {end}" if end else "")


def _why(flag: dict[str, Any], provenance: list[dict[str, Any]]) -> str:
    rules = [p[len(RULE_POLICY):] for prov in provenance for p in prov.get("policy", [])
             if p.startswith(RULE_POLICY)]
    if rules:
        return "rule " + ", ".join(dict.fromkeys(rules))
    return f"source {_source_of(flag) or 'unknown'}"


def _section(title: str, text: dict[str, str], entries: list[dict[str, Any]],
             sections: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    section: dict[str, Any] = {"title": title, "text": text}
    if entries:
        section["entry"] = entries
    elif not sections:
        section["emptyReason"] = _EMPTY
    if sections:
        section["section"] = sections
    return section


def _bundle(base: str, now: datetime, master: dict[str, Any], patients: list[dict[str, Any]], g: _Gather,
            active: list[dict[str, Any]], history: list[dict[str, Any]],
            provenance: dict[str, list[dict[str, Any]]], evidence: dict[str, list[tuple[str, str]]],
            wnb: dict[str, list[dict[str, Any]]], own: list[dict[str, Any]],
            via_children: list[dict[str, Any]],
            organisations: list[dict[str, Any]], sources: list[str], pending: list[dict[str, Any]],
            today: date) -> dict[str, Any]:
    included: dict[tuple[str, str], dict[str, Any]] = {}

    def include(resource: dict[str, Any]) -> dict[str, str]:
        included.setdefault(_key(resource), resource)
        return _ref(resource)

    for r in [*patients, *active, *history]:  # the Patients, then the flags, then what explains them
        include(r)

    def flag_section(title: str, flags: list[dict[str, Any]]) -> dict[str, Any]:
        lines, subsections = [], []
        entries = [include(f) for f in flags]
        for f in flags:
            why = _why(f, provenance[f["id"]])
            label = f"{_display(f.get('code'))}: {f.get('status')}, {_period(f)}; {why}"
            lines.append(label)
            refs = [include(p) for p in provenance[f["id"]]]
            refs += [include(g.known[k]) for k in evidence[f["id"]] if k in g.known]
            if refs:
                subsections.append({"title": f"Why: {_display(f.get('code'))}",
                                    "text": _narrative([f"{why}; {len(refs)} provenance and evidence "
                                                        "item(s)"]),
                                    "entry": refs})
        return _section(title, _narrative(lines), entries, subsections)

    sections = [flag_section("Safeguarding flags (active)", active),
                flag_section("Safeguarding flag history", history)]

    for source in [*SOURCES, *(s for s in wnb if s not in SOURCES)]:
        appts = wnb.get(source, [])
        lines = [f"{(a.get('start') or '')[:10]}: "
                 f"{_display(a['appointmentType']) if a.get('appointmentType') else 'appointment'}"
                 for a in appts]
        sections.append(_section(f"Was not brought (last 12 months) - {SOURCE_TITLES.get(source, source)}",
                                 _narrative(lines, f"{len(appts)} was-not-brought event(s)"),
                                 [include(a) for a in appts]))

    def relationship(rp: dict[str, Any]) -> tuple[int, str]:
        codes = [c[1] for c in _codes(rp.get("relationship", [])) if c[0] == ROLE_CS]
        rank = min((FATHERS_AND_PARTNERS.index(c) for c in codes if c in FATHERS_AND_PARTNERS), default=99)
        return rank, _display(rp.get("relationship", [{}])[0]) if rp.get("relationship") else "related person"

    related_entries, related_lines = [], []
    people = [(rp, False) for rp in own] + [(rp, True) for rp in via_children]
    people.sort(key=lambda x: (relationship(x[0])[0], x[1], _source_of(x[0]) or "", x[0]["id"]))
    for rp, of_child in people:
        age = _age(rp.get("birthDate"), today)
        ref = include(rp)
        if age is not None:
            ref = {**ref, "extension": [{"url": AGE_EXT, "valueAge": {
                "value": age, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}}]}
        related_entries.append(ref)
        who = relationship(rp)[1] + (" (of the person's child)" if of_child else "")
        related_lines.append(f"{who}, age {age if age is not None else 'unknown'}"
                             f"{' (under 18)' if age is not None and age < 18 else ''}; "
                             f"source {_source_of(rp) or 'unknown'}")
    sections.append(_section("Related persons", _narrative(related_lines), related_entries))

    org_entries, org_lines = [], []
    for org in organisations:
        if "resourceType" in org:
            org_entries.append(include(org))
            org_lines.append(str(org.get("name") or "organisation"))
        else:
            org_entries.append({"type": "Organization", "identifier": org["identifier"]})
            org_lines.append(f"organisation with ODS code {org['identifier']['value']} (not held)")
    source_section = {"title": "Source systems", "text": _narrative(sources, "Records come from")}
    if sources:
        source_section["entry"] = [{"display": s} for s in sources]
    else:
        source_section["emptyReason"] = _EMPTY
    sections.append(_section("Organisations involved", _narrative(org_lines), org_entries, [source_section]))

    lines = [f"{_display(c.get('reasonCode', [{}])[0]) if c.get('reasonCode') else 'notification'}: "
             f"{c.get('status')}, {c.get('priority', 'routine')}" for c in pending]
    sections.append(_section("Pending notifications", _narrative(lines), [include(c) for c in pending]))

    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    composition_id = str(uuid.uuid4())
    composition = {
        "resourceType": "Composition", "id": composition_id, "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5",
                             "display": "Patient summary Document"},
                            {"system": DOC_TYPE_CS, "code": "safeguarding-summary",
                             "display": "Safeguarding summary"}]},
        "subject": _ref(master), "date": stamp, "author": [{"display": "Carethread"}],
        "title": "Safeguarding summary",
        "confidentiality": "R",
        "section": sections,
    }
    entries = [{"fullUrl": f"urn:uuid:{composition_id}", "resource": composition}]
    entries += [{"fullUrl": f"{base}/{rtype}/{rid}", "resource": r} for (rtype, rid), r in included.items()]
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "timestamp": stamp,
            "entry": entries}


# --- the route ----------------------------------------------------------------------------------------------

def summary_router(pipeline: Any) -> APIRouter:
    router = APIRouter(tags=["fhir"], dependencies=[Depends(negotiate)])

    @router.get(f"/fhir/Patient/{{patient_id}}/{OPERATION}",
                summary="Patient $safeguarding-summary: flags, was-not-brought, related persons, "
                        "organisations, pending notifications for the whole identity")
    def patient_summary(patient_id: str, request: Request) -> FhirJSONResponse:
        check_id(patient_id)
        clock: Clock | None = getattr(pipeline, "clock", None)
        now = clock() if callable(clock) else datetime.now(UTC)
        bundle = safeguarding_summary(pipeline.store, patient_id, now=now, base=fhir_base(request))
        return FhirJSONResponse(bundle)

    return router
