"""GP Connect (FHIR STU3) -> FHIR R4, one entry at a time.

    read_bundle(payload, mset, tz=..., practice=..., birth_date_of=...) -> GpBundle

A payload is an Access Record Structured response (a ``collection`` Bundle: Patient, Organization,
Practitioner, Lists, Conditions...), an Appointment Management ``searchset`` (Appointments only: the
patient is whoever their participant names), or one bare Patient or Appointment.

    bytes -> JSON -> the patient (and the practice: its ODS code) -> each entry:
        stu3/<Type>.yaml diff (apply_stu3_diff; every reference re-pointed at the deterministic R4 id)
        -> json/feeds/gp_<type>.yaml if there is one (map_record: Flags for safeguarding codes, noshow
           Appointments for did-not-attend codes, a noshow's attendance outcome)
        -> R4 validation (and the profiles, when given)
    -> one Provenance (json/feeds/gp_bundle.yaml) naming everything produced.

Pure: no I/O; the clock only through ``now``; a stored birth date only through ``birth_date_of``.
Errors name where (``Bundle.entry[3].resource.clinicalStatus``), never a value.

Unreadable payload: ParseError (HTTP 400).  No patient (none in the bundle, none referenced) or a Patient
that cannot be converted: MappingError ``no-patient`` (HTTP 422).  Anything else wrong is one entry's
error, and the other entries still convert.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from adapter.errors import MappingError, ParseError
from adapter.fhir import CT, INVALID_NHS_NUMBER_SYSTEM, NHS_NUMBER_SYSTEM, validate_r4
from adapter.mapping.compiler import MappingSet
from adapter.mapping.engine import MappingContext, MappingTrace, apply_stu3_diff, map_record, stu3_diff_files
from adapter.mapping.ids import resource_id
from adapter.mapping.transforms import _fhir_instant, is_valid_nhs_number
from adapter.records import Issue

if TYPE_CHECKING:
    from adapter.conformance import ProfileSet

__all__ = ["GpEntry", "GpBundle", "read_bundle", "gp_resource_id", "SOURCE", "SUPPORTED", "BUNDLE_SYSTEM"]

SOURCE = "gp"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
BUNDLE_SYSTEM = f"{CT}/Id/gp/bundle"  # Provenance.entity: which bundle (its id, else the payload's SHA-256)
SUPPORTED = frozenset({"Patient", "Organization", "Practitioner", "PractitionerRole", "Location", "Condition",
                       "Observation", "Encounter", "List", "Immunization", "Appointment"})
BARE = frozenset({"Patient", "Appointment"})  # what may come alone, not in a Bundle
PROVENANCE_FEED = "gp_bundle"
UNKNOWN_PRACTICE = "unknown"

_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([^/\s]+)(?:/_history/[^/\s]+)?$")  # Type/id[/_history/v]
_ODS = re.compile(r"^[A-Z0-9]{3,6}$")


@dataclass
class GpEntry:
    index: int | None  # position in Bundle.entry (None: a bare resource, or the bundle's Provenance)
    resources: list[dict[str, Any]]  # R4: the converted resource first, then what it yields; deterministic ids
    issues: list[Issue]  # warnings, or the error (then resources == [])

    @property
    def ok(self) -> bool:
        return not any(i.severity == "E" for i in self.issues)


@dataclass
class GpBundle:
    control_id: str  # Bundle.id if present, else the SHA-256 hex of the payload
    practice: str | None  # ODS code of the practice (the Patient's managing / GP organisation, else given)
    patient_id: str | None  # R4 id of the Patient in the payload (None: only referenced)
    patient_ref: str | None  # "Patient/<R4 id>" the entries point at
    source_time: str | None  # Bundle.meta.lastUpdated / timestamp as a UTC instant (ordering of updates)
    entries: list[GpEntry]
    trace: MappingTrace = field(default_factory=lambda: MappingTrace((), None))  # mapping files run


def gp_resource_id(resource_type: str, practice: str, original_id: str) -> str:
    """The R4 id of a GP resource: uuid5 over ("gp", type, "practice|original id").  References use it too,
    so a Condition sent today points at the Patient sent last week."""
    return resource_id(SOURCE, resource_type, f"{practice}|{original_id}")


def read_bundle(payload: bytes, mset: MappingSet, *, tz: ZoneInfo, practice: str | None = None,
                birth_date_of: Callable[[str], str | None] = lambda _id: None, now: str | None = None,
                profiles: ProfileSet | None = None) -> GpBundle:
    """One GP Connect payload -> R4 resources per entry (see the module docstring).  ``practice``: the ODS
    code to use when the payload names none; ``profiles``: also check each produced resource against its
    profile (an entry error when it fails), as the pipeline does when storing."""
    data = _parse(payload)
    rtype = data.get("resourceType")
    if rtype == "Bundle":
        raw_entries = data.get("entry", [])
        if not isinstance(raw_entries, list):
            raise ParseError("Bundle.entry is not a list", code="not-a-bundle", location="Bundle.entry")
        items: list[tuple[int | None, Any]] = [(i, e) for i, e in enumerate(raw_entries)]
        control_id = data["id"] if isinstance(data.get("id"), str) and data["id"].strip() else \
            hashlib.sha256(payload).hexdigest()
        meta: dict[str, Any] = data["meta"] if isinstance(data.get("meta"), dict) else {}
        when = meta.get("lastUpdated") or data.get("timestamp")
        kind = data.get("type") if isinstance(data.get("type"), str) else "Bundle"
    elif rtype in BARE:
        items = [(None, {"resource": data})]
        control_id = hashlib.sha256(payload).hexdigest()
        meta = data["meta"] if isinstance(data.get("meta"), dict) else {}
        when = meta.get("lastUpdated")
        kind = str(rtype)
    else:
        raise ParseError("not a Bundle, Patient or Appointment", code="not-a-bundle", location="resourceType")
    return _Reader(mset, items, control_id, _utc(when, tz), str(kind), tz, practice, birth_date_of, now,
                   profiles).read()


def _parse(payload: bytes) -> dict[str, Any]:
    if not payload or not payload.strip():
        raise ParseError("empty payload", code="empty-message", location=None)
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 (byte {exc.start})", code="bad-encoding", location=None) from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not valid JSON (line {exc.lineno}, column {exc.colno})", code="invalid-json",
                         location=None) from None
    except RecursionError:
        raise ParseError("JSON nested too deeply", code="invalid-json", location=None) from None
    except ValueError:  # NaN / Infinity: not JSON
        raise ParseError("not valid JSON (a non-finite number)", code="invalid-json", location=None) from None
    if not isinstance(data, dict):
        raise ParseError("not a FHIR resource (a JSON object)", code="not-a-bundle", location=None)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError("non-finite number")


def _utc(value: Any, tz: ZoneInfo) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(_fhir_instant(value, tz)).astimezone(timezone.utc).isoformat(
            timespec="seconds")
    except (MappingError, ValueError):
        return None


def _ods_of(organization: Any) -> str | None:
    if not isinstance(organization, dict):
        return None
    for ident in organization.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == ODS_SYSTEM and isinstance(ident.get("value"), str):
            code = str(ident["value"]).strip().upper()
            if _ODS.match(code):
                return code
    return None


class _Reader:
    """The state of reading one payload."""

    def __init__(self, mset: MappingSet, items: list[tuple[int | None, Any]], control_id: str,
                 source_time: str | None, kind: str, tz: ZoneInfo, practice: str | None,
                 birth_date_of: Callable[[str], str | None], now: str | None, profiles: ProfileSet | None) -> None:
        self.mset, self.items, self.control_id, self.source_time = mset, items, control_id, source_time
        self.kind, self.tz, self.birth_date_of, self.now, self.profiles = kind, tz, birth_date_of, now, profiles
        self.given_practice = practice
        self.meta_source = f"https://fhir.carethread.org/source/{SOURCE}#{quote(control_id, safe='')}"
        self.files: dict[str, None] = {}
        self._refs: dict[str, str] = {}
        self.by_ref: dict[str, dict[str, Any]] = {}  # "Type/id" and fullUrl -> the STU3 resource
        self.full_urls: dict[str, tuple[str, str]] = {}  # fullUrl -> (type, source key), once the practice is known
        for _, entry in items:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                continue
            if isinstance(res.get("id"), str):
                self.by_ref.setdefault(f"{res['resourceType']}/{res['id']}", res)
            if isinstance(entry.get("fullUrl"), str):
                self.by_ref.setdefault(entry["fullUrl"], res)
        self.practice = UNKNOWN_PRACTICE  # set in read(), before any id is made

    # --- ids and references -------------------------------------------------------------------------------

    def source_key(self, resource: dict[str, Any]) -> str:
        """What makes a resource's id: its own id; else the diff's business key (List); else its first
        identifier; else its content (the same content, the same id)."""
        rid = resource.get("id")
        if isinstance(rid, str) and rid.strip():
            return rid
        diff = self.mset.stu3.get(str(resource.get("resourceType")))
        if diff is not None and diff.key:
            parts = ["|".join(str(v) for v in _values_at(resource, str(p).split("."))) for p in diff.key]
            if any(parts):
                return "key|" + "|".join(parts)
        for ident in resource.get("identifier") or ():
            if isinstance(ident, dict) and ident.get("value"):
                return f"identifier|{ident.get('system', '')}|{ident['value']}"
        return "content|" + hashlib.sha256(json.dumps(resource, sort_keys=True).encode()).hexdigest()

    def reference(self, ref: str) -> str:
        done = self._refs.get(ref)
        if done is not None:
            return done
        out = ref
        local = self.full_urls.get(ref)
        if local is not None:
            out = f"{local[0]}/{gp_resource_id(local[0], self.practice, local[1])}"
        elif not ref.startswith("#"):
            m = _RELATIVE.match(ref)
            if m is not None:
                out = f"{m.group(1)}/{gp_resource_id(m.group(1), self.practice, m.group(2))}"
        self._refs[ref] = out
        return out

    # --- the patient and the practice ---------------------------------------------------------------------

    def _find_practice(self, patient: dict[str, Any] | None) -> str:
        if patient is not None:
            candidates: list[Any] = [patient.get("managingOrganization")]
            gp = patient.get("generalPractitioner")
            candidates += gp if isinstance(gp, list) else [gp]
            for ref in candidates:
                if not isinstance(ref, dict):
                    continue
                code = _ods_of({"identifier": [ref["identifier"]]} if isinstance(ref.get("identifier"), dict) else None)
                target = ref.get("reference")
                if code is None and isinstance(target, str):
                    if target.startswith("#"):
                        target_res = next((c for c in patient.get("contained") or () if isinstance(c, dict)
                                           and c.get("id") == target[1:]), None)
                    else:
                        target_res = self.by_ref.get(target)
                    if isinstance(target_res, dict) and target_res.get("resourceType") == "Organization":
                        code = _ods_of(target_res)
                if code is not None:
                    return code
        given = (self.given_practice or "").strip().upper()
        return given if given else UNKNOWN_PRACTICE

    def _referenced_patient(self) -> str | None:
        """The first ``Patient/x`` the entries point at (an Appointment's participant, a subject)."""
        for _, entry in self.items:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            refs: list[Any] = [res.get("subject"), res.get("patient")]
            for participant in res.get("participant") or () if res.get("resourceType") == "Appointment" else ():
                if isinstance(participant, dict):
                    refs.append(participant.get("actor"))
            for r in refs:
                target = r.get("reference") if isinstance(r, dict) else None
                if isinstance(target, str) and not target.startswith("#"):
                    out = self.reference(target)
                    if out.startswith("Patient/"):
                        return out
        return None

    # --- the whole payload --------------------------------------------------------------------------------

    def read(self) -> GpBundle:
        patient_at = next((n for n, (_, e) in enumerate(self.items)
                           if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                           and e["resource"].get("resourceType") == "Patient"), None)
        patient_stu3 = self.items[patient_at][1]["resource"] if patient_at is not None else None
        self.practice = self._find_practice(patient_stu3)
        for _, entry in self.items:
            res = entry.get("resource") if isinstance(entry, dict) else None
            url = entry.get("fullUrl") if isinstance(entry, dict) else None
            if isinstance(url, str) and isinstance(res, dict) and isinstance(res.get("resourceType"), str):
                self.full_urls[url] = (res["resourceType"], self.source_key(res))

        patient_id: str | None = None
        birth: str | None = None
        done: dict[int, GpEntry] = {}
        if patient_stu3 is not None:
            assert patient_at is not None
            index = self.items[patient_at][0]
            patient_id = gp_resource_id("Patient", self.practice, self.source_key(patient_stu3))
            patient_ref = f"Patient/{patient_id}"
            converted = self.convert(index, patient_stu3, patient_ref, None)
            errors = [i for i in converted.issues if i.severity == "E"]
            if errors:
                raise MappingError(f"the Patient cannot be converted: {errors[0].message}", code="no-patient",
                                   location=errors[0].location)
            birth = converted.resources[0].get("birthDate")
            done[patient_at] = converted
        else:
            found = self._referenced_patient()
            if found is None:
                where = "Bundle" if self.items and self.items[0][0] is not None else "Appointment.participant"
                raise MappingError("no Patient in the payload and none referenced", code="no-patient",
                                   location=where)
            patient_ref = found
        info = {"id": patient_ref.removeprefix("Patient/"), "reference": patient_ref, "birthDate": birth}

        entries: list[GpEntry] = []
        for n, (index, entry) in enumerate(self.items):
            entries.append(done[n] if n in done else self.entry(index, entry, patient_ref, info))
        provenance = self.provenance(entries)
        if provenance is not None:
            entries.append(provenance)
        return GpBundle(self.control_id, self.practice, patient_id, patient_ref, self.source_time, entries,
                        MappingTrace(tuple(self.files), self.mset))

    # --- one entry ----------------------------------------------------------------------------------------

    def entry(self, index: int | None, entry: Any, patient_ref: str, patient: dict[str, Any]) -> GpEntry:
        at = f"Bundle.entry[{index}]" if index is not None else None
        if not isinstance(entry, dict) or "resource" not in entry:
            return GpEntry(index, [], [Issue("missing-resource", at, "the entry has no resource")])
        resource = entry["resource"]
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str) or not _TYPE.match(rtype):
            return GpEntry(index, [], [Issue("invalid-resource", f"{at}.resource" if at else None,
                                             "the entry's resource has no resourceType")])
        if rtype not in SUPPORTED:
            return GpEntry(index, [], [Issue("unsupported-resource", f"{at}.resource" if at else rtype,
                                             f"{rtype} resources are not kept", "W")])
        return self.convert(index, resource, patient_ref, patient)

    def convert(self, index: int | None, stu3: dict[str, Any], patient_ref: str,
                patient: dict[str, Any] | None) -> GpEntry:
        """One STU3 resource -> [its R4 conversion, what the gp_<type> feed yields from it] (or an error)."""
        rtype = str(stu3["resourceType"])
        base = f"Bundle.entry[{index}].resource" if index is not None else rtype
        issues: list[Issue] = []
        for kind in (rtype, *(c.get("resourceType") for c in stu3.get("contained") or () if isinstance(c, dict))):
            for name in stu3_diff_files(self.mset, str(kind)):
                self.files[name] = None
        try:
            r4 = apply_stu3_diff(self.mset, stu3, references=self.reference, warnings=issues, location=base)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError):
            return GpEntry(index, [], [Issue("invalid-resource", base, f"{rtype} cannot be converted to R4")])
        r4["id"] = gp_resource_id(rtype, self.practice, self.source_key(stu3))
        self._meta(r4, rtype)
        if rtype == "Patient":
            _check_nhs_numbers(r4, issues, base)
        problem = self.check(r4, base, stu3, profile=False)  # structure first: the feed reads it
        if problem is not None:
            return GpEntry(index, [], [*issues, problem])
        produced = [r4]
        merged = False
        feed = f"gp_{rtype.lower()}"
        if patient is not None and feed in self.mset.feeds:
            ctx = MappingContext(SOURCE, self.practice, self.control_id, self.tz, self.mset.codes, self.birth_date_of,
                                 mappings=self.mset, now=self.now)
            record = {"resource": r4, "patient": patient, "bundle": self.bundle_info()}
            try:
                mapped = map_record(self.mset, feed, record, ctx)
            except MappingError as exc:
                return GpEntry(index, [], [*issues, Issue(exc.code, _where(base, exc.location), exc.message)])
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:  # a mapping bug: reported
                return GpEntry(index, [], [*issues, Issue("internal-error", base,
                                                          f"the {feed} mapping failed ({type(exc).__name__})")])
            for name in mapped.trace.files:
                self.files[name] = None
            issues += [Issue(w.code, _where(base, w.location), w.message, w.severity) for w in mapped.warnings]
            for res in mapped.resources:
                if res["resourceType"] == rtype and res["id"] == r4["id"]:  # what the conversion could not say
                    r4.update({k: v for k, v in res.items() if k not in ("resourceType", "id", "meta")})
                    merged = True
                else:
                    produced.append(res)
        for n, res in enumerate(produced):
            problem = self.check(res, base, stu3 if n == 0 else None, structure=n > 0 or merged)
            if problem is not None:
                return GpEntry(index, [], [*issues, problem])
        return GpEntry(index, produced, issues)

    def _meta(self, r4: dict[str, Any], rtype: str) -> None:
        old = r4.get("meta")
        meta: dict[str, Any] = {"source": self.meta_source}
        diff = self.mset.stu3.get(rtype)
        if diff is not None and diff.profile:
            meta["profile"] = [diff.profile]
        if isinstance(old, dict) and old.get("security"):
            meta["security"] = old["security"]
        r4["meta"] = meta
        for c in r4.get("contained") or ():
            if isinstance(c, dict) and isinstance(c.get("meta"), dict):
                kept = {k: v for k, v in c["meta"].items() if k == "security"}
                if kept:
                    c["meta"] = kept
                else:
                    del c["meta"]

    def check(self, resource: dict[str, Any], base: str, stu3: dict[str, Any] | None, *, structure: bool = True,
              profile: bool = True) -> Issue | None:
        """R4 structure, then the profile (when profiles were given): the first error, located in the STU3
        entry when the resource is its conversion."""
        rtype = str(resource["resourceType"])
        derived = "" if stu3 is not None else f" (the {rtype} it yields)"
        if structure:
            try:
                validate_r4(resource)
            except MappingError as exc:
                return Issue("invalid-resource", self._located(base, exc.location, rtype, stu3),
                             f"{rtype} fails FHIR R4 validation{derived}")
        if profile and self.profiles is not None:
            for issue in self.profiles.validate(resource, self.profiles.default_profile(rtype)):
                if issue.severity == "error":
                    return Issue("invalid-resource", self._located(base, issue.expression, rtype, stu3),
                                 f"{rtype} does not conform to its profile ({issue.code}){derived}")
        return None

    def _located(self, base: str, path: str | None, rtype: str, stu3: dict[str, Any] | None) -> str:
        """An R4 FHIRPath (``Immunization.occurrenceDateTime``) -> where it came from in the entry, by the
        diff's renames read backwards (``Bundle.entry[7].resource.date``)."""
        if not path or stu3 is None or not path.startswith(rtype):
            return base
        rest = path[len(rtype):]
        diff = self.mset.stu3.get(rtype)
        if diff is not None and rest.startswith("."):
            head = re.split(r"[.\[]", rest[1:], maxsplit=1)[0]
            back = {str(new).split(".")[0]: str(old).split(".")[0] for old, new in diff.rename.items()}
            if head in back:
                rest = "." + back[head] + rest[1 + len(head):]
        return base + rest

    def bundle_info(self) -> dict[str, Any]:
        return {"control_id": self.control_id, "practice": self.practice, "type": self.kind,
                "source_time": self.source_time}

    # --- the Provenance -----------------------------------------------------------------------------------

    def provenance(self, entries: list[GpEntry]) -> GpEntry | None:
        if PROVENANCE_FEED not in self.mset.feeds:
            return None
        targets = [{"reference": f"{r['resourceType']}/{r['id']}"} for e in entries if e.ok for r in e.resources]
        if not targets:
            return None
        ctx = MappingContext(SOURCE, self.practice, self.control_id, self.tz, self.mset.codes, self.birth_date_of,
                             mappings=self.mset, now=self.now)
        try:
            mapped = map_record(self.mset, PROVENANCE_FEED, {"bundle": self.bundle_info(), "targets": targets}, ctx)
        except MappingError as exc:
            return GpEntry(None, [], [Issue(exc.code, _where("Bundle", exc.location), exc.message)])
        for name in mapped.trace.files:
            self.files[name] = None
        for res in mapped.resources:
            problem = self.check(res, "Bundle", None)
            if problem is not None:
                return GpEntry(None, [], [problem])
        return GpEntry(None, mapped.resources, list(mapped.warnings))


def _values_at(value: Any, path: list[str]) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not path:
        return [v for v in items if v not in (None, "", [], {})]
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and path[0] in item:
            out += _values_at(item[path[0]], path[1:])
    return out


def _where(base: str, location: str | None) -> str:
    """A mapping location -> where in the payload: a JSON pointer into the converted resource becomes an
    element path of the entry; a resource path (``Patient.birthDate``) stays as it is."""
    if not location:
        return base
    if location.startswith("/resource/"):
        parts = location[len("/resource/"):].split("/")
        out = ""
        for p in parts:
            out += f"[{p}]" if p.isdigit() else f".{p}"
        return base + out
    if location.startswith("/"):
        return base
    if location[:1].isupper():
        return location
    return f"{base}.{location}"


def _check_nhs_numbers(patient: dict[str, Any], issues: list[Issue], base: str) -> None:
    """An NHS number failing Modulus 11 is kept apart, never matched on (as the HL7 v2 mapping keeps it):
    system ``…/Id/nhs-number-failing-check``, its verification status dropped, a warning at its location."""
    for n, ident in enumerate(patient.get("identifier") or ()):
        if not isinstance(ident, dict) or ident.get("system") != NHS_NUMBER_SYSTEM:
            continue
        value = ident.get("value")
        if isinstance(value, str) and is_valid_nhs_number(value.replace(" ", "")):
            if " " in value:
                ident["value"] = value.replace(" ", "")
            continue
        ident.pop("extension", None)
        ident["system"] = INVALID_NHS_NUMBER_SYSTEM
        ident["type"] = {"text": "NHS number failing the Modulus 11 check"}
        issues.append(Issue("invalid-nhs-number", f"{base}.identifier[{n}].value",
                            "NHS number fails the Modulus 11 check: kept apart", "W"))
