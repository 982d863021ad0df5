"""FHIR search parameters: the one table behind the index, the query code and the CapabilityStatement.

``SEARCH_PARAMS`` says, per resource type, which parameters exist, their FHIR type, the elements they read and
(for references) which targets they index and which chains they allow. ``index_rows()`` turns a resource into
index rows at put time; ``adapter.store.query`` turns a query string into SQL over those rows; the API's
CapabilityStatement is generated from the same table. Add a parameter here and all three follow.

A parameter may also match the rows of others of its type (``also``) instead of writing the same values twice:
``name`` is family, given or text, and ``Flag``'s ``patient`` is the ``subject`` rows that point at a Patient.
Every index row costs a random b-tree page write at commit, so this is worth ~15% of ingest throughput.

An index row is ``(param, system, value, high)``:

=========  ===========================  ==========================  ============================
type       system                       value                       high
=========  ===========================  ==========================  ============================
token      coding/identifier system, ""  code / identifier value     ""
string     the original text            casefolded, accents removed ""
date       ""                           range start (UTC, µs)       range end (UTC, µs, inclusive)
reference  target resource type         target id                   ""
=========  ===========================  ==========================  ============================
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

__all__ = [
    "IDENTITY_PARAM_URL",
    "DATE_PREFIXES",
    "MODIFIERS",
    "SEARCH_PARAMS",
    "IndexRow",
    "ParamType",
    "SearchParam",
    "date_range",
    "describe",
    "index_rows",
    "normalise_string",
    "param_rows",
    "parse_reference",
    "search_includes",
]

ParamType = Literal["token", "string", "date", "reference"]
IndexRow = tuple[str, str, str, str]  # (param, system, value, high); "" where a row has none
_Converter = Callable[["SearchParam", Any, list[IndexRow]], None]


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]  # dotted element paths (lists are walked) indexed under this name
    element: str  # what it searches, for people: "Patient.name.family"
    targets: tuple[str, ...] = ()  # reference: the resource types it matches; () = any
    chains: tuple[str, ...] = ()  # reference: parameters of the (single) target type allowed after '.'
    also: tuple[str, ...] = ()  # parameters of the same type whose index rows this one matches too
    identity: str | None = None  # a whole-identity search over this (patient) parameter's rows

    @property
    def row_names(self) -> tuple[str, ...]:
        """The ``param`` values of the index rows this parameter matches."""
        return ((self.name,) if self.paths else ()) + self.also


# Modifiers each parameter type accepts; a reference parameter also takes a target type (``subject:Patient``).
# ``_id`` takes none.
MODIFIERS: dict[ParamType, tuple[str, ...]] = {
    "token": ("not", "missing"),
    "string": ("exact", "contains", "missing"),
    "date": ("missing",),
    "reference": ("missing",),
}
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")

_VALUE_FORMS: dict[ParamType, str] = {
    "token": "code, system|code, |code or system|",
    "string": "case- and accent-insensitive prefix match",
    "date": f"prefixes {' '.join(DATE_PREFIXES)}; partial dates (2009, 2009-03); a time with no zone is UTC",
    "reference": "Type/id, id or an absolute URL",
}


def describe(param: SearchParam) -> str:
    """The parameter's documentation (CapabilityStatement), derived from the same facts the code uses."""
    if param.identity is not None:
        return f"{param.element}: Patient/id or id. Custom ({IDENTITY_PARAM_URL}). No modifiers."
    if param.name == "_id":
        return f"{param.element}; comma-separated ids are OR'ed. No modifiers."
    targets = f" when it references a {' or '.join(param.targets)}" if param.targets else " (any target type)"
    text = f"{param.element}{targets if param.type == 'reference' else ''}: {_VALUE_FORMS[param.type]}."
    if param.chains:
        text += " Chains: " + ", ".join(f"{param.name}.{chain}" for chain in param.chains) + "."
    modifiers = [f":{m}" for m in MODIFIERS[param.type]] + [":[type]"] * (param.type == "reference")
    return f"{text} Modifiers {', '.join(modifiers)}."


def _patient(element: str, *, path: str | None = None, also: str | None = None) -> SearchParam:
    """``patient``: its own element (``path``), or the Patient references among another parameter's rows."""
    return SearchParam("patient", "reference", (path,) if path else (), element, targets=("Patient",),
                       chains=("identifier",), also=(also,) if also else ())


IDENTITY_PARAM_URL = "https://fhir.carethread.org/SearchParameter/identity"


def _identity(over: str, rtype: str) -> SearchParam:
    """``identity``: given a master Patient or any source Patient, whatever belongs to any Patient record of
    that human (the master and every source record linked to it): Carethread's custom parameter."""
    element = "Patient (itself)" if over == "_id" else f"{rtype}.{over}"
    return SearchParam("identity", "reference", (), f"Any Patient of the same reconciled identity as the given "
                       f"one, matched on {element}", targets=("Patient",), identity=over)


def _table(rtype: str, *params: SearchParam) -> dict[str, SearchParam]:
    common = (SearchParam("_id", "token", (), f"Logical id of the {rtype}"),
              SearchParam("_tag", "token", ("meta.tag",), f"Tags of the {rtype} (meta.tag)"))
    table = {p.name: p for p in common + params}
    if "patient" in table:
        table["identity"] = _identity("patient", rtype)
    elif rtype == "Patient":
        table["identity"] = _identity("_id", rtype)
    return table


SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = {
    "Patient": _table(
        "Patient",
        SearchParam("identifier", "token", ("identifier",), "Patient.identifier"),
        SearchParam("name", "string", ("name.text",), "Any of Patient.name family, given or text",
                    also=("family", "given")),
        SearchParam("family", "string", ("name.family",), "Patient.name.family"),
        SearchParam("given", "string", ("name.given",), "Patient.name.given"),
        SearchParam("birthdate", "date", ("birthDate",), "Patient.birthDate"),
        SearchParam("gender", "token", ("gender",), "Patient.gender"),
        SearchParam("link", "reference", ("link.other",), "Patient.link.other: a master finds its source "
                    "records, a source record its master", targets=("Patient",)),
    ),
    "RelatedPerson": _table(
        "RelatedPerson",
        _patient("RelatedPerson.patient", path="patient"),
        SearchParam("identifier", "token", ("identifier",), "RelatedPerson.identifier"),
        SearchParam("relationship", "token", ("relationship",), "RelatedPerson.relationship"),
    ),
    "Encounter": _table(
        "Encounter",
        _patient("Encounter.subject", also="subject"),
        SearchParam("subject", "reference", ("subject",), "Encounter.subject"),
        SearchParam("status", "token", ("status",), "Encounter.status"),
        SearchParam("date", "date", ("period.start",), "Encounter.period.start (simplifies period overlap)"),
        SearchParam("identifier", "token", ("identifier",), "Encounter.identifier"),
    ),
    "Appointment": _table(
        "Appointment",
        _patient("Any Appointment.participant.actor", also="actor"),
        SearchParam("actor", "reference", ("participant.actor",), "Appointment.participant.actor"),
        SearchParam("status", "token", ("status",), "Appointment.status"),
        SearchParam("date", "date", ("start",), "Appointment.start"),
        SearchParam("identifier", "token", ("identifier",), "Appointment.identifier"),
    ),
    "Flag": _table(
        "Flag",
        _patient("Flag.subject", also="subject"),
        SearchParam("subject", "reference", ("subject",), "Flag.subject"),
        SearchParam("status", "token", ("status",), "Flag.status"),
        SearchParam("code", "token", ("code",), "Flag.code.coding"),
        SearchParam("category", "token", ("category",), "Flag.category.coding"),
    ),
    "Provenance": _table(
        "Provenance",
        SearchParam("target", "reference", ("target",), "Provenance.target"),
    ),
    # notifications (adapter.notify) and who receives them
    "Communication": _table(
        "Communication",
        _patient("Communication.subject", also="subject"),
        SearchParam("subject", "reference", ("subject",), "Communication.subject"),
        SearchParam("recipient", "reference", ("recipient",), "Communication.recipient"),
        SearchParam("reason-code", "token", ("reasonCode",), "Communication.reasonCode.coding"),
        SearchParam("sent", "date", ("sent",), "Communication.sent"),
        SearchParam("status", "token", ("status",), "Communication.status"),
        SearchParam("priority", "token", ("priority",), "Communication.priority"),
    ),
    "Subscription": _table(
        "Subscription",
        SearchParam("status", "token", ("status",), "Subscription.status"),
        SearchParam("type", "token", ("channel.type",), "Subscription.channel.type"),
        SearchParam("url", "token", ("channel.endpoint",), "Subscription.channel.endpoint"),
        SearchParam("criteria", "string", ("criteria",), "Subscription.criteria"),
    ),
    # identity review (adapter.identity)
    "Task": _table(
        "Task",
        _patient("Task.for", path="for"),
        SearchParam("focus", "reference", ("focus",), "Task.focus"),
        SearchParam("status", "token", ("status",), "Task.status"),
        SearchParam("code", "token", ("code",), "Task.code.coding"),
        SearchParam("authored-on", "date", ("authoredOn",), "Task.authoredOn"),
    ),
    # GP Connect records kept as they came (converted to R4): the evidence behind flags and no-shows
    "Condition": _table(
        "Condition",
        _patient("Condition.subject", also="subject"),
        SearchParam("subject", "reference", ("subject",), "Condition.subject"),
        SearchParam("code", "token", ("code",), "Condition.code.coding"),
        SearchParam("clinical-status", "token", ("clinicalStatus",), "Condition.clinicalStatus.coding"),
        SearchParam("onset-date", "date", ("onsetDateTime",), "Condition.onsetDateTime"),
        SearchParam("identifier", "token", ("identifier",), "Condition.identifier"),
    ),
    "Observation": _table(
        "Observation",
        _patient("Observation.subject", also="subject"),
        SearchParam("subject", "reference", ("subject",), "Observation.subject"),
        SearchParam("code", "token", ("code",), "Observation.code.coding"),
        SearchParam("status", "token", ("status",), "Observation.status"),
        SearchParam("date", "date", ("effectiveDateTime",), "Observation.effectiveDateTime"),
        SearchParam("identifier", "token", ("identifier",), "Observation.identifier"),
    ),
    "Immunization": _table(
        "Immunization",
        _patient("Immunization.patient", path="patient"),
        SearchParam("status", "token", ("status",), "Immunization.status"),
        SearchParam("date", "date", ("occurrenceDateTime",), "Immunization.occurrenceDateTime"),
        SearchParam("identifier", "token", ("identifier",), "Immunization.identifier"),
    ),
    "List": _table(
        "List",
        _patient("List.subject", also="subject"),
        SearchParam("subject", "reference", ("subject",), "List.subject"),
        SearchParam("code", "token", ("code",), "List.code.coding"),
        SearchParam("status", "token", ("status",), "List.status"),
    ),
    "Organization": _table(
        "Organization",
        SearchParam("identifier", "token", ("identifier",), "Organization.identifier"),
        SearchParam("name", "string", ("name",), "Organization.name"),
    ),
    "Practitioner": _table(
        "Practitioner",
        SearchParam("identifier", "token", ("identifier",), "Practitioner.identifier"),
        SearchParam("family", "string", ("name.family",), "Practitioner.name.family"),
    ),
    "PractitionerRole": _table(
        "PractitionerRole",
        SearchParam("practitioner", "reference", ("practitioner",), "PractitionerRole.practitioner",
                    targets=("Practitioner",)),
        SearchParam("organization", "reference", ("organization",), "PractitionerRole.organization",
                    targets=("Organization",)),
        SearchParam("identifier", "token", ("identifier",), "PractitionerRole.identifier"),
    ),
    "Location": _table(
        "Location",
        SearchParam("identifier", "token", ("identifier",), "Location.identifier"),
        SearchParam("name", "string", ("name",), "Location.name"),
    ),
}


def _check_table() -> None:
    """Fail at import, not at query time, if the table contradicts itself."""
    for rtype, params in SEARCH_PARAMS.items():
        for p in params.values():
            for other in p.also:
                if other not in params or params[other].type != p.type or params[other].also:
                    raise ValueError(f"{rtype}.{p.name}: 'also' must name a plain {p.type} parameter")
            for chain in p.chains:
                if len(p.targets) != 1 or chain not in SEARCH_PARAMS.get(p.targets[0], {}):
                    raise ValueError(f"{rtype}.{p.name}: chain {chain} needs one known target type")


_check_table()


def search_includes(resource_type: str) -> list[str]:
    """The ``_include`` values a type supports: every reference parameter, as ``Type:param``."""
    params = SEARCH_PARAMS[resource_type].values()
    return [f"{resource_type}:{p.name}" for p in params if p.type == "reference" and p.identity is None]


# --- values -------------------------------------------------------------------------------------------------

def normalise_string(text: str) -> str:
    """Case- and accent-insensitive form used for string search (both indexed and queried)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_ONE_US = timedelta(microseconds=1)


def _next_month(year: int, month: int) -> datetime:
    return datetime(year + 1, 1, 1) if month == 12 else datetime(year, month + 1, 1)


def date_range(text: str) -> tuple[str, str] | None:
    """The UTC instant range ``(low, high)`` (both inclusive, ISO with µs, no zone) that a FHIR date,
    dateTime or instant covers: ``2009`` is the whole year, ``2026-03-01T09:00:00+01:00`` one second.
    A value without a zone is taken as UTC. None if ``text`` is not a valid FHIR date/time."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        y = int(year)
        if month is None:
            low = datetime(y, 1, 1)
            end = datetime(y + 1, 1, 1) if y < 9999 else None
        elif day is None:
            low = datetime(y, int(month), 1)
            end = _next_month(y, int(month)) if (y, int(month)) != (9999, 12) else None
        elif hour is None:
            low = datetime(y, int(month), int(day))
            end = low + timedelta(days=1)
        else:
            low = datetime(y, int(month), int(day), int(hour), int(minute))
            if second is None:
                end = low + timedelta(minutes=1)
            elif fraction is None:
                low = low.replace(second=int(second))
                end = low + timedelta(seconds=1)
            else:
                digits = min(len(fraction), 6)
                low = low.replace(second=int(second), microsecond=int(fraction[:digits].ljust(6, "0")))
                end = low + timedelta(microseconds=10 ** (6 - digits))
            if zone is not None and zone != "Z":
                sign = 1 if zone[0] == "+" else -1
                offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
                low, end = low - offset, end - offset
    except (ValueError, OverflowError):
        return None
    high = datetime.max if end is None else end - _ONE_US
    return low.isoformat(timespec="microseconds"), high.isoformat(timespec="microseconds")


_REFERENCE_RE = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")


def parse_reference(reference: str) -> tuple[str | None, str] | None:
    """``Patient/abc`` or ``https://host/fhir/Patient/abc`` (optionally ``/_history/n``) ->
    ``("Patient", "abc")``; a bare id ``abc`` -> ``(None, "abc")``; anything else (``#contained``,
    ``urn:uuid:...``) -> None."""
    m = _REFERENCE_RE.fullmatch(reference)
    if m is not None:
        return m.group(1), m.group(2)
    if reference and "/" not in reference and ":" not in reference and not reference.startswith("#"):
        return None, reference
    return None


# --- extraction ---------------------------------------------------------------------------------------------

def _walk(resource: dict[str, Any], parts: tuple[str, ...]) -> list[Any]:
    nodes: list[Any] = [resource]
    for part in parts:
        following: list[Any] = []
        for node in nodes:
            if isinstance(node, dict):
                value = node.get(part)
                if isinstance(value, list):
                    following.extend(value)
                elif value is not None:
                    following.append(value)
        nodes = following
    return nodes


# Each converter appends the rows one element yields to ``out`` (no generators: this runs on every put).

def _token_rows(param: SearchParam, node: Any, out: list[IndexRow]) -> None:
    name = param.name
    if isinstance(node, str):
        out.append((name, "", node, ""))
    elif isinstance(node, bool):
        out.append((name, "", "true" if node else "false", ""))
    elif isinstance(node, dict):
        if "coding" in node:
            for coding in node["coding"]:
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    out.append((name, coding.get("system") or "", coding["code"], ""))
        elif isinstance(node.get("value"), str):  # Identifier
            out.append((name, node.get("system") or "", node["value"], ""))
        elif isinstance(node.get("code"), str):  # Coding
            out.append((name, node.get("system") or "", node["code"], ""))


def _string_rows(param: SearchParam, node: Any, out: list[IndexRow]) -> None:
    if isinstance(node, str):
        out.append((param.name, node, normalise_string(node), ""))


def _date_rows(param: SearchParam, node: Any, out: list[IndexRow]) -> None:
    if isinstance(node, str) and (bounds := date_range(node)) is not None:
        out.append((param.name, "", bounds[0], bounds[1]))


def _reference_rows(param: SearchParam, node: Any, out: list[IndexRow]) -> None:
    if isinstance(node, dict) and isinstance(node.get("reference"), str):
        parsed = parse_reference(node["reference"])
        if parsed is not None and parsed[0] is not None and (not param.targets or parsed[0] in param.targets):
            out.append((param.name, parsed[0], parsed[1], ""))


_CONVERTERS: dict[ParamType, _Converter] = {
    "token": _token_rows,
    "string": _string_rows,
    "date": _date_rows,
    "reference": _reference_rows,
}

# per resource type: (param, its converter, its split paths), computed once
_INDEXED: dict[str, list[tuple[SearchParam, _Converter, list[tuple[str, ...]]]]] = {
    rtype: [(p, _CONVERTERS[p.type], [tuple(path.split(".")) for path in p.paths])
            for p in params.values() if p.paths]
    for rtype, params in SEARCH_PARAMS.items()
}


def param_rows(resource: dict[str, Any], param: SearchParam) -> list[IndexRow]:
    """The index rows a parameter matches in one resource, its own and those of its ``also`` parameters
    (``_include`` finds references this way)."""
    params = SEARCH_PARAMS[resource["resourceType"]]
    out: list[IndexRow] = []
    for p in (param, *(params[name] for name in param.also)):
        for path in p.paths:
            for node in _walk(resource, tuple(path.split("."))):
                _CONVERTERS[p.type](p, node, out)
    if param.type == "reference" and param.targets:
        return [row for row in out if row[1] in param.targets]
    return out


def index_rows(resource: dict[str, Any]) -> list[IndexRow]:
    """The search index rows for a resource (deduplicated; empty for a type without parameters).
    Values the index cannot read (a malformed date, a contained reference) are skipped, never an error."""
    out: list[IndexRow] = []
    for param, convert, paths in _INDEXED.get(resource.get("resourceType", ""), ()):
        for parts in paths:
            if len(parts) == 1:  # most paths: a top-level element, read without _walk's lists (hot on put)
                value = resource.get(parts[0])
                if isinstance(value, list):
                    for node in value:
                        convert(param, node, out)
                elif value is not None:
                    convert(param, value, out)
                continue
            for node in _walk(resource, parts):
                convert(param, node, out)
    return list(dict.fromkeys(out))
