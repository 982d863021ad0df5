"""PV1/PV2 -> Encounter, SCH/TQ1/AIS/AIL/AIP -> Appointment, coded OBX -> safeguarding Flag."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from adapter.errors import MappingError
from adapter.fhir import (
    ATTENDANCE_OUTCOME_CS,
    ATTENDANCE_OUTCOME_EXT,
    CT,
    CT_FLAG_CATEGORY_CS,
    FLAG_CATEGORY_CS,
    NHS_DD_ATTENDANCE_CS,
    SNOMED,
)
from adapter.inbound.er7 import Segment
from adapter.mapping import datatypes as dt
from adapter.mapping.ids import resource_id
from adapter.mapping.segments import MappingContext, org_reference

__all__ = ["map_encounter", "map_appointment", "map_flags", "ENCOUNTER_STATUS_BY_TRIGGER"]

ENCOUNTER_STATUS_BY_TRIGGER = {
    "A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "arrived", "A05": "planned",
    "A08": "in-progress", "A11": "cancelled", "A13": "in-progress",
}
V2_0069 = "http://terminology.hl7.org/CodeSystem/v2-0069"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
_V2_0276_CODES = {"CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"}


def _location_display(seg: Segment, n: int) -> str:
    f = seg.field(n)
    parts = [f.value(1, 1), f.value(1, 2), f.value(1, 3)]
    return " / ".join(p for p in parts if p)


def map_encounter(pv1: Segment, pv2: Segment | None, trigger: str, patient_id: str,
                  ctx: MappingContext) -> dict[str, object]:
    klass_code = pv1.value(2).strip()
    if not klass_code:
        raise MappingError("patient class is required for an encounter", code="missing-field", location="PV1-2")
    klass = ctx.codes["v2_0004_patient_class"].lookup(klass_code)
    if klass is None:
        raise MappingError("patient class not in table v2_0004_patient_class", code="unmapped-code", location="PV1-2")
    visit = pv1.field(19)
    admit = dt.hl7_datetime(pv1.value(44), "PV1-44", ctx.tz)
    discharge = dt.hl7_datetime(pv1.value(45), "PV1-45", ctx.tz)
    if visit.value(1, 1):
        key = f"visit|{visit.value(1, 4) or ctx.sending_facility}|{visit.value(1, 1)}"
    elif admit:
        key = f"admit|{patient_id}|{admit}"
    else:
        key = f"message|{patient_id}|{ctx.control_id}"
    status = ENCOUNTER_STATUS_BY_TRIGGER.get(trigger, "in-progress")
    if discharge and trigger in ("A03", "A08"):
        status = "finished"
    enc: dict[str, object] = {
        "resourceType": "Encounter",
        "id": resource_id(ctx.source, "Encounter", ctx.sending_facility, key),
        "meta": ctx.meta("Encounter"),
        "status": status,
        "class": klass.as_fhir(),
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if visit.value(1, 1):
        enc["identifier"] = [{"system": f"{CT}/Id/{ctx.source}/visit-number", "value": visit.value(1, 1)}]
    service = pv1.value(10).strip()
    if service:
        enc["serviceType"] = {"coding": [{"system": V2_0069, "code": service}]}
    period = {k: v for k, v in (("start", admit), ("end", None if trigger == "A13" else discharge)) if v}
    if period:
        enc["period"] = period
    locations = []
    current = _location_display(pv1, 3)
    if current:
        locations.append({"location": {"display": current}, "status": "active" if status != "finished" else "completed"})
    prior = _location_display(pv1, 6)
    if prior and trigger == "A02":
        locations.append({"location": {"display": prior}, "status": "completed"})
    if locations:
        enc["location"] = locations
    provider = org_reference(ctx.sending_facility)
    if provider:
        enc["serviceProvider"] = provider
    if pv2 is not None:
        reason = dt.codeable_concept(pv2.field(3).components())
        if reason:
            enc["reasonCode"] = [reason]
    return enc


def _appointment_status(sch: Segment, ais: Segment | None, trigger: str, ctx: MappingContext) -> str:
    if trigger == "S26":
        return "noshow"
    if trigger == "S15":
        return "cancelled"
    if trigger == "S17":
        return "entered-in-error"
    for seg, n in ((sch, 25), (ais, 10)):
        code = seg.value(n, comp=1).strip() if seg is not None else ""
        if code:
            coding = ctx.codes["v2_0278_filler_status"].lookup(code)
            if coding is None:
                raise MappingError("filler status code not in table v2_0278_filler_status",
                                   code="unmapped-code", location=f"{seg.name}-{n}")  # type: ignore[union-attr]
            return coding.code
    return "booked"


def _minutes(duration: str, units: str) -> int | None:
    if not duration.strip().isdigit():
        return None
    value = int(duration)
    u = units.strip().lower()
    if u in ("", "m", "min", "minutes", "minute"):
        return value
    if u in ("h", "hr", "hour", "hours"):
        return value * 60
    if u in ("s", "sec", "seconds"):
        return max(1, value // 60)
    return None


def map_appointment(sch: Segment, tq1: Segment | None, ais: Segment | None, ail: list[Segment],
                    aip: list[Segment], trigger: str, patient_id: str, birth_date: str | None,
                    ctx: MappingContext) -> dict[str, object]:
    filler = sch.field(2)
    placer = sch.field(1)
    if filler.value(1, 1):
        key, ident_loc = f"filler|{filler.value(1, 2)}|{filler.value(1, 1)}", "filler"
    elif placer.value(1, 1):
        key, ident_loc = f"placer|{placer.value(1, 2)}|{placer.value(1, 1)}", "placer"
    else:
        raise MappingError("appointment needs a filler or placer appointment id", code="missing-field",
                           location="SCH-2")
    status = _appointment_status(sch, ais, trigger, ctx)
    candidates = [
        (tq1, 7, 1, "TQ1-7"), (sch, 11, 4, "SCH-11.4"), (ais, 4, 1, "AIS-4"),
        *((s, 6, 1, "AIL-6") for s in ail), *((s, 6, 1, "AIP-6") for s in aip),
    ]
    start = end = None
    for seg, n, comp, loc in candidates:
        if seg is not None and seg.value(n, comp=comp).strip():
            start = dt.hl7_datetime(seg.value(n, comp=comp), loc, ctx.tz, instant=True)
            break
    if tq1 is not None and tq1.value(8).strip():
        end = dt.hl7_datetime(tq1.value(8), "TQ1-8", ctx.tz, instant=True)
    elif sch.value(11, comp=5).strip():
        end = dt.hl7_datetime(sch.value(11, comp=5), "SCH-11.5", ctx.tz, instant=True)
    minutes = _minutes(sch.value(9), sch.value(10, comp=1))
    if minutes is None and ais is not None:
        minutes = _minutes(ais.value(7), ais.value(8, comp=1))
    if start and not end and minutes:
        end = (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat(timespec="seconds")
    if not start and status not in ("proposed", "cancelled", "waitlist", "entered-in-error"):
        raise MappingError("appointment start time is required", code="missing-field", location="TQ1-7")
    appt: dict[str, object] = {
        "resourceType": "Appointment",
        "id": resource_id(ctx.source, "Appointment", ctx.sending_facility, key),
        "meta": ctx.meta("Appointment"),
        "identifier": [{"system": f"{CT}/Id/{ctx.source}/appointment-{ident_loc}",
                        "value": (filler if ident_loc == "filler" else placer).value(1, 1)}],
        "status": status,
    }
    if start:
        appt["start"] = start
    if end:
        appt["end"] = end
    if minutes:
        appt["minutesDuration"] = minutes
    reason = sch.field(7)
    if reason.value(1, 1):
        code = reason.value(1, 1).upper()
        if code in _V2_0276_CODES:
            appt["appointmentType"] = {"coding": [{"system": V2_0276, "code": code}]}
        else:
            cc = dt.codeable_concept(reason.components())
            if cc:
                appt["reasonCode"] = [cc]
    if ais is not None:
        service = dt.codeable_concept(ais.field(3).components())
        if service:
            appt["serviceType"] = [service]
    participants: list[dict[str, object]] = [{"actor": {"reference": f"Patient/{patient_id}"}, "required": "required",
                                              "status": "accepted"}]
    for seg in ail:
        display = _location_display(seg, 3)
        if display:
            participants.append({"actor": {"display": display}, "status": "accepted"})
    for seg in aip:
        comps = seg.field(3).components()
        name = " ".join(c for c in (comps[2] if len(comps) > 2 else "", comps[1] if len(comps) > 1 else "") if c)
        if name:
            participants.append({"actor": {"display": name}, "status": "accepted"})
    appt["participant"] = participants
    if status == "noshow":
        appt["extension"] = [_attendance_outcome(start, birth_date, ctx)]
    return appt


def _attendance_outcome(start: str | None, birth_date: str | None, ctx: MappingContext) -> dict[str, object]:
    """Was not brought (under 18 at the start) or did not attend; NHS DD ATTENDED OR DID NOT ATTEND 3."""
    dd = {"system": NHS_DD_ATTENDANCE_CS, "code": "3", "display": "Did not attend - no advance warning given"}
    age = None
    if start and birth_date:
        age = dt.age_on(birth_date, date.fromisoformat(start[:10]))
    if age is None:
        ctx.warn("missing-field", "PID-7", "no full date of birth: was-not-brought could not be decided")
        codings = [dd]
    elif age < 18:
        codings = [{"system": ATTENDANCE_OUTCOME_CS, "code": "was-not-brought", "display": "Was not brought"}, dd]
    else:
        codings = [{"system": ATTENDANCE_OUTCOME_CS, "code": "did-not-attend", "display": "Did not attend"}, dd]
    return {"url": ATTENDANCE_OUTCOME_EXT, "valueCodeableConcept": {"coding": codings}}


_SENSITIVE = [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R", "display": "restricted"}]


def map_flags(obxs: list[Segment], patient_id: str, encounter_id: str | None, fallback_start: str | None,
              ctx: MappingContext) -> list[dict[str, object]]:
    """Coded OBX whose SNOMED code (OBX-3, or OBX-5 of a CE/CWE/CNE) is in the safeguarding code list."""
    table = ctx.codes["safeguarding_codes"]
    flags: list[dict[str, object]] = []
    for obx in obxs:
        candidates = [(obx.value(3, comp=1).strip(), obx.value(3, comp=3).strip())]
        if obx.value(2).strip().upper() in ("CE", "CWE", "CNE"):
            f = obx.field(5)
            candidates += [(f.value(r, 1).strip(), f.value(r, 3).strip()) for r in range(1, f.rep_count() + 1)]
        for code, system_name in candidates:
            if not code or (system_name and dt.coding_system(system_name) != SNOMED):
                continue
            coding = table.lookup(code)
            if coding is None:
                continue
            observed = dt.hl7_datetime(obx.value(14), "OBX-14", ctx.tz)
            start = observed or fallback_start
            result_status = obx.value(11).strip().upper()
            flag: dict[str, object] = {
                "resourceType": "Flag",
                "id": resource_id(ctx.source, "Flag", patient_id, code, (observed or "")[:10]),
                "meta": ctx.meta("Flag", _SENSITIVE if coding.extra.get("sensitive") else None),
                "status": "entered-in-error" if result_status in ("D", "W") else "active",
                "category": [
                    {"coding": [{"system": FLAG_CATEGORY_CS, "code": "safety", "display": "Safety"}]},
                    {"coding": [{"system": CT_FLAG_CATEGORY_CS, "code": "safeguarding", "display": "Safeguarding"}]},
                ],
                "code": {"coding": [coding.as_fhir()]},
                "subject": {"reference": f"Patient/{patient_id}"},
            }
            if start:
                flag["period"] = {"start": start}
            if encounter_id:
                flag["encounter"] = {"reference": f"Encounter/{encounter_id}"}
            author = org_reference(ctx.sending_facility)
            if author:
                flag["author"] = author
            flags.append(flag)
            break
    return flags
