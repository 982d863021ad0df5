"""Maternity feed: one HL7 v2 message -> the FHIR R4 resources it yields, in dependency order.

Routing is by MSH-9.1 / MSH-9.2 (never MSH-9.3).  Which resources each event yields:

    ADT A01 A02 A03 A04 A05 A08 A11 A13   Patient, RelatedPerson (NK1, PID-21), Encounter (PV1), Flag (OBX)
    ADT A28 A31                           Patient, RelatedPerson, Flag
    ADT A40 (several PID/MRG groups)      surviving Patient (link replaces), retired Patient (link replaced-by)
    SIU S12 S13 S14 S15 S17 S26           Patient, RelatedPerson, Appointment, Flag
    every message                         one Provenance naming the inbound message and every target
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from adapter.errors import MappingError
from adapter.fhir import CT, ODS_ORG_SYSTEM
from adapter.inbound.er7 import Er7Message, Segment
from adapter.inbound.hl7v2 import Header
from adapter.mapping import datatypes as dt
from adapter.mapping.ids import resource_id
from adapter.mapping.segments import (
    MappingContext,
    cx_list,
    identifier_from_cx,
    map_patient,
    map_related_persons,
    patient_id_for,
    patient_key,
)
from adapter.mapping.visits import map_appointment, map_encounter, map_flags
from adapter.records import Issue

__all__ = ["MappedMessage", "map_message"]

_ENCOUNTER_EVENTS = frozenset({"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13"})


@dataclass
class MappedMessage:
    resources: list[dict[str, Any]]
    source_time: str | None  # MSH-7 as a UTC ISO instant, for ordering out-of-order updates
    warnings: list[Issue] = field(default_factory=list)


def _groups(msg: Er7Message, starter: str) -> list[list[Segment]]:
    """Split the segments after MSH into groups each starting at ``starter`` (e.g. PID)."""
    groups: list[list[Segment]] = []
    for seg in msg.segments[1:]:
        if seg.name == starter or not groups:
            groups.append([seg])
        else:
            groups[-1].append(seg)
    return [g for g in groups if g and g[0].name == starter]


def _first(group: list[Segment], name: str) -> Segment | None:
    return next((s for s in group if s.name == name), None)


def _all(group: list[Segment], name: str) -> list[Segment]:
    return [s for s in group if s.name == name]


def map_message(msg: Er7Message, header: Header, ctx: MappingContext) -> MappedMessage:
    msh_time = dt.hl7_datetime(header.timestamp, "MSH-7", ctx.tz, instant=True) if header.timestamp else None
    source_time = None
    if msh_time:
        source_time = datetime.fromisoformat(msh_time).astimezone(timezone.utc).isoformat(timespec="seconds")
    pid = msg.first("PID")
    if pid is None:
        raise MappingError("message has no PID segment", code="missing-segment", location="PID")
    if header.message_type == "ADT" and header.trigger == "A40":
        resources = _map_merge(msg, ctx)
    elif header.message_type == "SIU":
        resources = _map_schedule(msg, header, pid, ctx)
    else:
        resources = _map_adt(msg, header, pid, ctx, msh_time)
    resources.append(_provenance(resources, header, ctx, msh_time))
    return MappedMessage(resources, source_time, ctx.warnings)


def _map_adt(msg: Er7Message, header: Header, pid: Segment, ctx: MappingContext,
             msh_time: str | None) -> list[dict[str, Any]]:
    patient = map_patient(pid, ctx, msg.first("PD1"))
    out: list[dict[str, Any]] = [patient]
    out += map_related_persons(pid, msg.all("NK1"), patient["id"], ctx)
    encounter_id = None
    pv1 = msg.first("PV1")
    if header.trigger in _ENCOUNTER_EVENTS and pv1 is not None:
        enc = map_encounter(pv1, msg.first("PV2"), header.trigger, patient["id"], ctx)
        encounter_id = enc["id"]
        out.append(enc)
    out += map_flags(msg.all("OBX"), patient["id"], encounter_id, msh_time, ctx)
    return out


def _map_schedule(msg: Er7Message, header: Header, pid: Segment, ctx: MappingContext) -> list[dict[str, Any]]:
    sch = msg.first("SCH")
    if sch is None:
        raise MappingError("SIU message has no SCH segment", code="missing-segment", location="SCH")
    patient = map_patient(pid, ctx, msg.first("PD1"))
    out: list[dict[str, Any]] = [patient]
    out += map_related_persons(pid, msg.all("NK1"), patient["id"], ctx)
    birth = patient.get("birthDate") or ctx.birth_date_of(patient["id"])
    out.append(map_appointment(sch, msg.first("TQ1"), msg.first("AIS"), msg.all("AIL"), msg.all("AIP"),
                               header.trigger, patient["id"], birth, ctx))
    out += map_flags(msg.all("OBX"), patient["id"], None, None, ctx)
    return out


def _map_merge(msg: Er7Message, ctx: MappingContext) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in _groups(msg, "PID"):
        pid = group[0]
        survivor = map_patient(pid, ctx, _first(group, "PD1"))
        links = []
        retired: list[dict[str, Any]] = []
        for mrg in _all(group, "MRG"):
            prior = cx_list(mrg, 1)
            old_id = patient_id_for(patient_key(prior, ctx, "MRG-1"), ctx)
            if old_id == survivor["id"]:
                continue
            links.append({"other": {"reference": f"Patient/{old_id}"}, "type": "replaces"})
            retired.append({
                "resourceType": "Patient", "id": old_id, "meta": ctx.meta("Patient"), "active": False,
                "identifier": [identifier_from_cx(cx, ctx) for cx in prior],
                "link": [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}],
            })
        if not links and not _all(group, "MRG"):
            raise MappingError("A40 group has no MRG segment", code="missing-segment", location="MRG")
        if links:
            survivor["link"] = links
        out.append(survivor)
        out += retired
    return out


def _provenance(resources: list[dict[str, Any]], header: Header, ctx: MappingContext,
                msh_time: str | None) -> dict[str, Any]:
    recorded = msh_time or datetime.now(timezone.utc).isoformat(timespec="seconds")
    agent_who: dict[str, Any] = {"display": header.sending_app or "unknown sender"}
    if header.sending_facility:
        agent_who = {"identifier": {"system": ODS_ORG_SYSTEM, "value": header.sending_facility.upper()},
                     "display": header.sending_app or header.sending_facility}
    return {
        "resourceType": "Provenance",
        "id": resource_id(ctx.source, "Provenance", header.sender, header.control_id),
        "meta": ctx.meta("Provenance"),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources],
        "recorded": recorded,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "UPDATE", "display": "revise"}]},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "author", "display": "Author"}]},
                   "who": agent_who}],
        "entity": [{"role": "source", "what": {
            "identifier": {"system": f"{CT}/Id/{ctx.source}/hl7v2-message", "value": header.control_id},
            "display": f"HL7 v2 {header.message_type}^{header.trigger} (v{header.version})"}}],
    }
