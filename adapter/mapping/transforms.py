"""The closed registry of named transforms: all the logic a mapping file may call.

A mapping file names a transform (``transform: hl7_date``, ``transform: {first_chars: {n: 10}}``) and
the loader checks the name and its parameters at start-up.  Nothing here knows where a value comes
from: the mapping file says that.  Each transform is a pure function::

    fn(value, env, at, **params) -> value | None

``value`` is a trimmed non-empty string, or, for a transform that declares ``inputs``, a dict of those
inputs (an absent input is None); ``env`` gives the run's time zone, context and ``warn``; ``at`` is the
location the mapping file names (``location:``), for warnings.  None means "no value".  A value that
cannot be used raises MappingError with a code and *no* location: the engine adds the source location.
Never put the value in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from adapter.conformance.checks import is_valid_nhs_number as _modulus_11
from adapter.errors import MappingError

__all__ = ["Env", "Transform", "TRANSFORMS", "transform", "is_valid_nhs_number", "is_nhs_cx", "exported"]


class Env(Protocol):
    """What a transform may consult besides its value (the engine's run state)."""

    @property
    def tz(self) -> ZoneInfo: ...

    def warn(self, code: str, location: str | None, message: str) -> None: ...

    def stored_birth_date(self, patient_id: str) -> str | None: ...


@dataclass(frozen=True)
class Transform:
    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...] | None = None  # None: one value; else the named inputs of `from: {...}`
    params: dict[str, type] = field(default_factory=dict)  # parameter -> type; all required
    doc: str = ""


TRANSFORMS: dict[str, Transform] = {}


def transform(name: str, *, inputs: tuple[str, ...] | None = None,
              params: dict[str, type] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in TRANSFORMS:
            raise RuntimeError(f"transform {name!r} registered twice")
        TRANSFORMS[name] = Transform(name, fn, inputs, dict(params or {}), (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return register


def exported() -> list[dict[str, Any]]:
    """The vocabulary for mapping authors (README, `carethread` tooling): name, inputs, params, doc."""
    return [{"name": t.name, "inputs": list(t.inputs or ()), "params": {k: v.__name__ for k, v in t.params.items()},
             "doc": t.doc} for t in sorted(TRANSFORMS.values(), key=lambda t: t.name)]


# --- text ---------------------------------------------------------------------------------------------

@transform("upper")
def upper(value: str, env: Env, at: str | None) -> str:
    """Upper case."""
    return value.upper()


@transform("url_quote")
def url_quote(value: str, env: Env, at: str | None) -> str:
    """Percent-encode for use inside a URL path segment (every reserved character)."""
    return _quote(value)


@lru_cache(maxsize=1024)
def _quote(value: str) -> str:
    return quote(value, safe="")


@transform("starts_with", params={"prefix": str})
def starts_with(value: str, env: Env, at: str | None, *, prefix: str) -> str | None:
    """The value if it starts with ``prefix`` (case-sensitive: put ``upper`` first), else nothing."""
    return value if value.startswith(prefix) else None


@transform("first_chars", params={"n": int})
def first_chars(value: str, env: Env, at: str | None, *, n: int) -> str:
    """The first ``n`` characters (e.g. the date part of a dateTime)."""
    return str(value)[:n]


@transform("integer")
def integer(value: str, env: Env, at: str | None) -> int | None:
    """Decimal digits -> an integer; anything else -> nothing."""
    return int(value) if value.isdecimal() else None


@transform("yes_no")
def yes_no(value: str, env: Env, at: str | None) -> bool | None:
    """HL7 table 0136: Y -> true, N -> false (any case); anything else -> nothing."""
    v = value.upper()
    return True if v == "Y" else False if v == "N" else None


# --- dates --------------------------------------------------------------------------------------------

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


# Pure functions of their text, cached: a message repeats its times (MSH-7, PV1-44) and a feed its
# people (birth dates, NHS numbers).  Errors are not cached (lru_cache does not store exceptions).
@lru_cache(maxsize=8192)
def _date(value: str) -> str:
    m = _TS.match(value)
    if not m:
        raise MappingError("not a valid HL7 date", code="invalid-date")
    y, mo, d = m.group(1), m.group(2), m.group(3)
    try:
        if d:
            return date(int(y), int(mo), int(d)).isoformat()
        if mo:
            date(int(y), int(mo), 1)
            return f"{y}-{mo}"
    except ValueError:
        raise MappingError("not a valid calendar date", code="invalid-date") from None
    return y


@lru_cache(maxsize=8192)
def _datetime(value: str, tz: ZoneInfo, instant: bool) -> str:
    m = _TS.match(value)
    if not m:
        raise MappingError("not a valid HL7 date/time", code="invalid-date")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    if not hh and not instant:
        return _date(value)
    try:
        naive = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise MappingError("not a valid calendar date/time", code="invalid-date") from None
    if off:
        minutes = int(off[1:3]) * 60 + int(off[3:5])
        if minutes > 14 * 60 or int(off[3:5]) > 59:
            raise MappingError("time-zone offset out of range", code="invalid-date")
        aware = naive.replace(tzinfo=timezone((1 if off[0] == "+" else -1) * timedelta(minutes=minutes)))
    else:
        aware = naive.replace(tzinfo=tz)
    text = aware.isoformat(timespec="seconds")
    return text[:19] + "." + frac + text[19:] if frac else text


@transform("hl7_date")
def hl7_date(value: str, env: Env, at: str | None) -> str:
    """HL7 DT/TS -> FHIR date (YYYY, YYYY-MM or YYYY-MM-DD); a time part is ignored, never shifted."""
    return _date(value)


@transform("hl7_datetime")
def hl7_datetime(value: str, env: Env, at: str | None) -> str:
    """HL7 TS/DTM -> FHIR dateTime; a date alone stays a date; no offset means the configured zone."""
    return _datetime(value, env.tz, False)


@transform("hl7_instant")
def hl7_instant(value: str, env: Env, at: str | None) -> str:
    """HL7 TS/DTM -> FHIR instant: to the second, always with an offset (missing parts are 01 / 00)."""
    return _datetime(value, env.tz, True)


@transform("utc")
def utc(value: str, env: Env, at: str | None) -> str:
    """An ISO date-time with an offset -> the same instant in UTC, to the second (for ordering)."""
    return _utc(value)


@lru_cache(maxsize=1024)
def _utc(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(timezone.utc).isoformat(timespec="seconds")


def _age(birth: str, day: str) -> int | None:
    if len(birth) != 10 or len(day) < 10:
        return None
    b, d = date.fromisoformat(birth), date.fromisoformat(day[:10])
    return d.year - b.year - ((d.month, d.day) < (b.month, b.day))


@transform("age_on", inputs=("birth", "day"))
def age_on(value: dict[str, Any], env: Env, at: str | None) -> int | None:
    """Whole years of age on a day, from a full birth date; nothing for a year or year-month birth date."""
    if not value["birth"] or not value["day"]:
        return None
    return _age(value["birth"], value["day"])


@transform("attendance_outcome", inputs=("birth", "day"), params={"adult_age": int})
def attendance_outcome(value: dict[str, Any], env: Env, at: str | None, *, adult_age: int) -> str | None:
    """A missed appointment: ``was-not-brought`` under ``adult_age`` on the day, else ``did-not-attend``.

    Without a full birth date nothing is decided, with a warning at ``at`` (never a guess)."""
    age = _age(value["birth"], value["day"]) if value["birth"] and value["day"] else None
    if age is None:
        env.warn("missing-field", at, "no full date of birth: was-not-brought could not be decided")
        return None
    return "was-not-brought" if age < adult_age else "did-not-attend"


@transform("duration_minutes", inputs=("value", "units"))
def duration_minutes(value: dict[str, Any], env: Env, at: str | None) -> int | None:
    """A duration and its units (min, h, s; none means minutes) -> whole minutes; zero or unknown -> nothing."""
    amount = (value["value"] or "").strip()
    if not amount.isdecimal():
        return None
    n, units = int(amount), (value["units"] or "").strip().lower()
    if units in ("", "m", "min", "minutes", "minute"):
        minutes = n
    elif units in ("h", "hr", "hour", "hours"):
        minutes = n * 60
    elif units in ("s", "sec", "seconds"):
        minutes = max(1, n // 60)
    else:
        return None
    return minutes or None


@transform("add_minutes", inputs=("instant", "minutes"))
def add_minutes(value: dict[str, Any], env: Env, at: str | None) -> str | None:
    """An instant plus whole minutes (both needed), to the second."""
    if not value["instant"] or not value["minutes"]:
        return None
    later = datetime.fromisoformat(value["instant"]) + timedelta(minutes=int(value["minutes"]))
    return later.isoformat(timespec="seconds")


# --- identifiers --------------------------------------------------------------------------------------

_ODS = re.compile(r"^[A-Z0-9]{3,6}$")


# the one Modulus 11 check (ASCII digits only), shared with the profile validator and identity matching
is_valid_nhs_number = lru_cache(maxsize=8192)(_modulus_11)


def is_nhs_cx(authority: str, id_type: str) -> bool:
    """English trust conventions for an NHS number in a CX: authority NHS (type NH, HN, NHS or none),
    or type NH with no authority."""
    auth, t = authority.upper(), id_type.upper()
    return (auth == "NHS" and t in ("NH", "HN", "", "NHS")) or (auth == "" and t == "NH")


@transform("nhs_number")
def nhs_number(value: str, env: Env, at: str | None) -> str | None:
    """Spaces removed; the number if it passes Modulus 11, else nothing."""
    number = value.replace(" ", "")
    return number if is_valid_nhs_number(number) else None


@transform("nhs_cx", inputs=("authority", "type"))
def nhs_cx(value: dict[str, Any], env: Env, at: str | None) -> bool | None:
    """True when a CX's assigning authority (CX-4) and type (CX-5) mark it as an NHS number."""
    return True if is_nhs_cx(value["authority"] or "", value["type"] or "") else None


@transform("ods_code")
def ods_code(value: str, env: Env, at: str | None) -> str | None:
    """The value upper-cased if it has the shape of an ODS organisation code (3-6 letters/digits)."""
    v = value.upper()
    return v if _ODS.match(v) else None


@transform("patient_key", inputs=("ids", "facility"), params={"location": str})
def patient_key(value: dict[str, Any], env: Env, at: str | None, *, location: str) -> str:
    """The business key of a source patient from its CX parts ({value, authority, type, location}):
    the first local record number (``local|authority or facility|value``), else the first NHS number
    passing Modulus 11 (``nhs|number``).  An NHS number failing the check as the only identifier, or no
    identifier at all, is a mapping error."""
    ids: list[dict[str, str]] = value["ids"] or []
    facility = value["facility"] or ""
    for cx in ids:
        if not is_nhs_cx(cx.get("authority") or "", cx.get("type") or ""):
            return f"local|{cx.get('authority') or facility}|{cx['value']}"
    for cx in ids:
        number = cx["value"].replace(" ", "")
        if is_valid_nhs_number(number):
            return f"nhs|{number}"
    if ids:
        raise MappingError("the only patient identifier is an NHS number failing the Modulus 11 check",
                           code="invalid-nhs-number", location=f"{ids[0].get('location') or location}.1")
    raise MappingError("no patient identifier", code="missing-field", location=location)


@transform("identifier_value", params={"system": str})
def identifier_value(value: Any, env: Env, at: str | None, *, system: str) -> str | None:
    """The value of the first Identifier (of a list) with this system."""
    for ident in value if isinstance(value, list) else [value]:
        if isinstance(ident, dict) and ident.get("system") == system:
            return ident.get("value")  # type: ignore[no-any-return]
    return None


@transform("name_key")
def name_key(value: Any, env: Env, at: str | None) -> str | None:
    """``family|given given`` in lower case, from the first HumanName (of a list)."""
    first = value[0] if isinstance(value, list) and value else value
    if not isinstance(first, dict):
        return None
    return f"{str(first.get('family', '')).lower()}|{' '.join(first.get('given', [])).lower()}"


@transform("stored_birth_date")
def stored_birth_date(value: str, env: Env, at: str | None) -> str | None:
    """The birth date already stored for this Patient id (a missed appointment sent without PID-7)."""
    return env.stored_birth_date(value)


# --- ISO 8601 text (tabular exports: CSDS-style dates YYYY-MM-DD, times HH:MM) -------------------------

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_ISO_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_ISO_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


@lru_cache(maxsize=8192)
def _iso_date(value: str) -> str:
    m = _ISO_DATE.match(value)
    if not m:
        raise MappingError("not an ISO 8601 date (YYYY-MM-DD)", code="invalid-date")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        raise MappingError("not a valid calendar date", code="invalid-date") from None


@transform("iso_date")
def iso_date(value: str, env: Env, at: str | None) -> str:
    """ISO 8601 date ``YYYY-MM-DD`` -> FHIR date; a time part (``T10:30``) is ignored, never shifted."""
    return _iso_date(value)


@transform("iso_time")
def iso_time(value: str, env: Env, at: str | None) -> str:
    """A clock time ``HH:MM`` or ``HH:MM:SS`` (24-hour) -> ``HH:MM:SS``."""
    m = _ISO_TIME.match(value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
        raise MappingError("not a time of day (HH:MM or HH:MM:SS)", code="invalid-date")
    return f"{m.group(1)}:{m.group(2)}:{m.group(3) or '00'}"


@lru_cache(maxsize=8192)
def _iso_instant(value: str, tz: ZoneInfo) -> str:
    m = _ISO_DATETIME.match(value)
    if not m:
        raise MappingError("not an ISO 8601 date-time (YYYY-MM-DDTHH:MM[:SS][offset])", code="invalid-date")
    y, mo, d, hh, mi, ss, off = m.groups()
    try:
        naive = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss or 0))
    except ValueError:
        raise MappingError("not a valid calendar date/time", code="invalid-date") from None
    if off is None:
        aware = naive.replace(tzinfo=tz)
    elif off == "Z":
        aware = naive.replace(tzinfo=timezone.utc)
    else:
        digits = off[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:])
        if minutes > 14 * 60 or int(digits[2:]) > 59:
            raise MappingError("time-zone offset out of range", code="invalid-date")
        aware = naive.replace(tzinfo=timezone((1 if off[0] == "+" else -1) * timedelta(minutes=minutes)))
    return aware.isoformat(timespec="seconds")


@transform("iso_instant")
def iso_instant(value: str, env: Env, at: str | None) -> str:
    """ISO 8601 date-time (``T`` or a space between date and time) -> FHIR instant, to the second; no
    offset means the configured zone (Europe/London: GMT or BST as on that day)."""
    return _iso_instant(value, env.tz)


# --- FHIR (GP Connect STU3 records, already converted to R4) ----------------------------------------------

_FHIR_DT = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


@lru_cache(maxsize=4096)
def _fhir_instant(value: str, tz: ZoneInfo) -> str:
    m = _FHIR_DT.match(value)
    if not m:
        raise MappingError("not a valid FHIR date/time", code="invalid-date")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        naive = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise MappingError("not a valid calendar date/time", code="invalid-date") from None
    if off:
        aware = naive.replace(tzinfo=timezone.utc if off == "Z" else
                              datetime.strptime(off.replace(":", ""), "%z").tzinfo)
    else:
        aware = naive.replace(tzinfo=tz)
    text = aware.isoformat(timespec="seconds")
    return text[:19] + frac + text[19:] if frac else text


@transform("fhir_instant")
def fhir_instant(value: str, env: Env, at: str | None) -> str:
    """FHIR date / dateTime -> instant: missing month/day are 01, missing time 00:00:00, no offset means
    the configured zone (a GP record dated 2024-03-05 is that day's start, local time)."""
    return _fhir_instant(value, env.tz)
