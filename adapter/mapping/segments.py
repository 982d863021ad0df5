"""HL7 v2 segments -> FHIR R4 resources (UK Core aligned).  First version, in code; the declarative
mapping language replaces these functions one segment at a time, keeping their outputs (golden tests).

Every function is pure: segment(s) + context in, resource dict(s) out.  A value that cannot be
applied raises MappingError naming its location (``PID-7``, ``NK1-3.1``), never the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date
from typing import Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

from adapter.errors import MappingError
from adapter.fhir import (
    ATTENDANCE_OUTCOME_CS,
    ATTENDANCE_OUTCOME_EXT,
    CT,
    CT_FLAG_CATEGORY_CS,
    FLAG_CATEGORY_CS,
    INVALID_NHS_NUMBER_SYSTEM,
    NHS_DD_ATTENDANCE_CS,
    NHS_NUMBER_SYSTEM,
    ODS_ORG_SYSTEM,
    SNOMED,
    UKCORE_NHS_VERIFICATION_EXT,
    UKCORE_PROFILES,
    V2_0203,
)
from adapter.inbound.er7 import Segment
from adapter.mapping import datatypes as dt
from adapter.mapping.codes import CodeTables
from adapter.mapping.ids import resource_id
from adapter.records import Issue

__all__ = ["MappingContext", "map_patient", "patient_key", "patient_id_for", "cx_list", "map_related_persons",
           "org_reference", "identifier_from_cx"]

_ODS = re.compile(r"^[A-Z0-9]{3,6}$")


@dataclass
class MappingContext:
    """Everything a segment mapping may consult besides the segment itself."""

    source: str  # 'maternity'
    sending_facility: str  # MSH-4.1: the trust's ODS code by NHS convention
    control_id: str
    tz: ZoneInfo
    codes: CodeTables
    birth_date_of: Callable[[str], str | None]  # stored Patient.birthDate by id (no-show age decision)
    warnings: list[Issue] = field(default_factory=list)

    @cached_property
    def meta_source(self) -> str:
        return f"{CT}/source/{self.source}#{quote(self.control_id, safe='')}"

    def meta(self, resource_type: str, security: list[dict[str, str]] | None = None) -> dict[str, object]:
        meta: dict[str, object] = {"source": self.meta_source, "profile": [UKCORE_PROFILES[resource_type]]}
        if security:
            meta["security"] = security
        return meta

    def warn(self, code: str, location: str, message: str) -> None:
        self.warnings.append(Issue(code=code, location=location, message=message, severity="W"))  # type: ignore[arg-type]


def org_reference(code: str) -> dict[str, object] | None:
    if not code:
        return None
    if _ODS.match(code.upper()):
        return {"type": "Organization", "identifier": {"system": ODS_ORG_SYSTEM, "value": code.upper()}}
    return {"type": "Organization", "display": code}


# --- identifiers -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Cx:
    value: str
    authority: str
    id_type: str
    location: str

    @property
    def is_nhs(self) -> bool:
        auth, t = self.authority.upper(), self.id_type.upper()
        return (auth == "NHS" and t in ("NH", "HN", "", "NHS")) or (auth == "" and t == "NH")


def cx_list(seg: Segment, n: int) -> list[_Cx]:
    f = seg.field(n)
    out = []
    for rep in range(1, f.rep_count() + 1):
        value = f.value(rep, 1).strip()
        if value:
            out.append(_Cx(value, f.value(rep, 4, 1).strip(), f.value(rep, 5).strip(),
                           f"{seg.name}-{n}[{rep}]" if rep > 1 else f"{seg.name}-{n}"))
    return out


def identifier_from_cx(cx: _Cx, ctx: MappingContext) -> dict[str, object]:
    if cx.is_nhs:
        number = cx.value.replace(" ", "")
        if dt.is_valid_nhs_number(number):
            return {"system": NHS_NUMBER_SYSTEM, "value": number}
        # kept, but never as an NHS number: it must not be used for matching
        return {"system": INVALID_NHS_NUMBER_SYSTEM, "value": cx.value,
                "type": {"text": "NHS number failing the Modulus 11 check"}}
    authority = cx.authority or ctx.sending_facility or "unknown"
    ident: dict[str, object] = {"system": f"{CT}/Id/{ctx.source}/{quote(authority, safe='')}", "value": cx.value}
    if cx.id_type:
        ident["type"] = {"coding": [{"system": V2_0203, "code": cx.id_type}]}
    if _ODS.match(authority.upper()):
        ident["assigner"] = {"identifier": {"system": ODS_ORG_SYSTEM, "value": authority.upper()}}
    return ident


def patient_key(cxs: list[_Cx], ctx: MappingContext, location: str) -> str:
    """The business key of a source Patient: local record number first, else a valid NHS number."""
    for cx in cxs:
        if not cx.is_nhs:
            return f"local|{cx.authority or ctx.sending_facility}|{cx.value}"
    for cx in cxs:
        if cx.is_nhs and dt.is_valid_nhs_number(cx.value.replace(" ", "")):
            return f"nhs|{cx.value.replace(' ', '')}"
    if cxs:
        raise MappingError("the only patient identifier is an NHS number failing the Modulus 11 check",
                           code="invalid-nhs-number", location=cxs[0].location + ".1")
    raise MappingError("no patient identifier", code="missing-field", location=location)


def patient_id_for(key: str, ctx: MappingContext) -> str:
    return resource_id(ctx.source, "Patient", ctx.sending_facility, key)


# --- PID -> Patient ----------------------------------------------------------------------------------

def map_patient(pid: Segment, ctx: MappingContext, pd1: Segment | None = None) -> dict[str, object]:
    cxs = cx_list(pid, 3) or cx_list(pid, 2)  # PID-2 external id: v2.3 feeds still use it
    key = patient_key(cxs, ctx, "PID-3")
    patient: dict[str, object] = {"resourceType": "Patient", "id": patient_id_for(key, ctx), "meta": ctx.meta("Patient")}
    identifiers = [identifier_from_cx(cx, ctx) for cx in cxs]
    status = _verification_status(pid, ctx)
    if status:
        for ident in identifiers:
            if ident["system"] == NHS_NUMBER_SYSTEM:
                ident["extension"] = [{"url": UKCORE_NHS_VERIFICATION_EXT, "valueCodeableConcept": {"coding": [status]}}]
    patient["identifier"] = identifiers
    patient["active"] = True
    names = [n for rep in range(1, pid.field(5).rep_count() + 1) if (n := dt.human_name(pid.field(5).components(rep)))]
    if names:
        patient["name"] = names
    telecom = dt.contact_points([pid.field(13).components(r) for r in range(1, pid.field(13).rep_count() + 1)])
    work = dt.contact_points([pid.field(14).components(r) for r in range(1, pid.field(14).rep_count() + 1)])
    for cp in work:
        cp.setdefault("use", "work")
    if telecom or work:
        patient["telecom"] = telecom + work
    gender = pid.value(8).strip()
    if gender:
        coding = ctx.codes["v2_0001_gender"].lookup(gender)
        if coding:
            patient["gender"] = coding.code
        else:
            ctx.warn("unmapped-code", "PID-8", "administrative sex code not in table v2_0001_gender; left out")
    birth = dt.hl7_date(pid.value(7), "PID-7")
    if birth:
        patient["birthDate"] = birth
    addresses = [a for rep in range(1, pid.field(11).rep_count() + 1) if (a := dt.address(pid.field(11).components(rep)))]
    if addresses:
        patient["address"] = addresses
    deceased_date = dt.hl7_datetime(pid.value(29), "PID-29", ctx.tz)
    if deceased_date:
        patient["deceasedDateTime"] = deceased_date
    elif pid.value(30).upper() in ("Y", "N"):
        patient["deceasedBoolean"] = pid.value(30).upper() == "Y"
    multiple = pid.value(24).upper()
    order = pid.value(25).strip()
    if order.isdigit() and multiple != "N":
        patient["multipleBirthInteger"] = int(order)
    elif multiple in ("Y", "N"):
        patient["multipleBirthBoolean"] = multiple == "Y"
    gp = pd1.field(3) if pd1 is not None else None
    if gp:
        org_code = gp.value(1, 10) or gp.value(1, 3)
        ref = org_reference(org_code) if org_code else None
        if ref is not None:
            if gp.value(1, 1):
                ref["display"] = gp.value(1, 1)
            patient["generalPractitioner"] = [ref]
    managing = org_reference(ctx.sending_facility)
    if managing:
        patient["managingOrganization"] = managing
    return patient


def _verification_status(pid: Segment, ctx: MappingContext) -> dict[str, str] | None:
    f = pid.field(32)
    table = ctx.codes["nhs_number_verification"]
    for rep in range(1, f.rep_count() + 1):
        code = f.value(rep).strip().upper()
        if code.startswith("NSTS"):
            coding = table.lookup(code)
            if coding is None:
                ctx.warn("unmapped-code", "PID-32", "NHS number verification status not in table; left out")
                return None
            return coding.as_fhir()
    return None


# --- NK1 (+ PID-21) -> RelatedPerson -----------------------------------------------------------------

def _relationship(nk1: Segment, ctx: MappingContext) -> dict[str, object] | None:
    code = nk1.value(3, comp=1).strip()
    if code:
        coding = ctx.codes["v2_0063_relationship"].lookup(code)
        if coding is None:
            raise MappingError("relationship code not in table v2_0063_relationship", code="unmapped-code",
                               location="NK1-3.1")
        return {"coding": [coding.as_fhir()]}
    role = nk1.value(7, comp=1).strip()
    if role:
        coding = ctx.codes["v2_0131_contact_role"].lookup(role)
        if coding is None:
            raise MappingError("contact role code not in table v2_0131_contact_role", code="unmapped-code",
                               location="NK1-7.1")
        return {"coding": [coding.as_fhir()]}
    return None


_MOTHER = {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH", "display": "mother"}


def map_related_persons(pid: Segment, nk1s: list[Segment], patient_id: str,
                        ctx: MappingContext) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    mother: dict[str, object] | None = None
    for nk1 in nk1s:
        relationship = _relationship(nk1, ctx)
        cxs = cx_list(nk1, 33) + cx_list(nk1, 12)
        identifiers = [identifier_from_cx(cx, ctx) for cx in cxs]
        names = [n for r in range(1, nk1.field(2).rep_count() + 1) if (n := dt.human_name(nk1.field(2).components(r)))]
        nhs = next((i["value"] for i in identifiers if i["system"] == NHS_NUMBER_SYSTEM), None)
        rel_code = relationship["coding"][0]["code"] if relationship else ""  # type: ignore[index]
        if nhs:
            key = f"nhs|{nhs}"
        elif names:
            first = names[0]
            key = f"name|{rel_code}|{str(first.get('family', '')).lower()}|{' '.join(first.get('given', [])).lower()}"  # type: ignore[arg-type]
        else:
            key = f"set|{nk1.value(1) or nk1.line_no}"
        rp: dict[str, object] = {"resourceType": "RelatedPerson",
                                 "id": resource_id(ctx.source, "RelatedPerson", patient_id, key),
                                 "meta": ctx.meta("RelatedPerson"), "active": True,
                                 "patient": {"reference": f"Patient/{patient_id}"}}
        if identifiers:
            rp["identifier"] = identifiers
        if relationship:
            rp["relationship"] = [relationship]
        if names:
            rp["name"] = names
        phones = dt.contact_points([nk1.field(5).components(r) for r in range(1, nk1.field(5).rep_count() + 1)])
        if phones:
            rp["telecom"] = phones
        addresses = [a for r in range(1, nk1.field(4).rep_count() + 1) if (a := dt.address(nk1.field(4).components(r)))]
        if addresses:
            rp["address"] = addresses
        gender = nk1.value(15).strip()
        if gender:
            coding = ctx.codes["v2_0001_gender"].lookup(gender)
            if coding:
                rp["gender"] = coding.code
            else:
                ctx.warn("unmapped-code", "NK1-15", "administrative sex code not in table v2_0001_gender; left out")
        birth = dt.hl7_date(nk1.value(16), "NK1-16")
        if birth:
            rp["birthDate"] = birth
        start, end = dt.hl7_date(nk1.value(8), "NK1-8"), dt.hl7_date(nk1.value(9), "NK1-9")
        if start or end:
            rp["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
        out.append(rp)
        if rel_code in ("MTH", "NMTH") and mother is None:
            mother = rp
    mother_ids = [identifier_from_cx(cx, ctx) for cx in cx_list(pid, 21)]
    if mother_ids:
        if mother is None:
            mother = {"resourceType": "RelatedPerson",
                      "id": resource_id(ctx.source, "RelatedPerson", patient_id, "PID-21"),
                      "meta": ctx.meta("RelatedPerson"), "active": True,
                      "patient": {"reference": f"Patient/{patient_id}"},
                      "relationship": [{"coding": [_MOTHER]}]}
            out.insert(0, mother)
        existing = mother.setdefault("identifier", [])
        for ident in mother_ids:
            if ident not in existing:  # type: ignore[operator]
                existing.append(ident)  # type: ignore[union-attr]
    return out
