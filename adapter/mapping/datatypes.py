"""HL7 v2 datatypes -> FHIR R4 datatypes (pure functions; a bad value raises MappingError at its location).

Each function takes components already decoded by the tokenizer.  Dates of birth stay dates (no
time-zone shift); date-times without an offset are read in the configured local zone.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from adapter.errors import MappingError
from adapter.fhir import SNOMED

__all__ = [
    "is_valid_nhs_number",
    "hl7_date",
    "hl7_datetime",
    "human_name",
    "address",
    "contact_points",
    "codeable_concept",
    "age_on",
]

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


def is_valid_nhs_number(value: str) -> bool:
    """NHS Data Dictionary Modulus 11: weights 10..2, check = 11 - (sum mod 11); 11 -> 0; 10 -> invalid."""
    if len(value) != 10 or not value.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(value[9])


def hl7_date(value: str, location: str) -> str | None:
    """TS/DT -> FHIR date (YYYY, YYYY-MM or YYYY-MM-DD); the time part, if any, is ignored."""
    value = value.strip()
    if not value:
        return None
    m = _TS.match(value)
    if not m:
        raise MappingError("not a valid HL7 date", code="invalid-date", location=location)
    y, mo, d = m.group(1), m.group(2), m.group(3)
    try:
        if d:
            return date(int(y), int(mo), int(d)).isoformat()
        if mo:
            date(int(y), int(mo), 1)
            return f"{y}-{mo}"
    except ValueError:
        raise MappingError("not a valid calendar date", code="invalid-date", location=location) from None
    return y


def hl7_datetime(value: str, location: str, tz: ZoneInfo, *, instant: bool = False) -> str | None:
    """TS/DTM -> FHIR dateTime (or instant: full precision to seconds, always with an offset)."""
    value = value.strip()
    if not value:
        return None
    m = _TS.match(value)
    if not m:
        raise MappingError("not a valid HL7 date/time", code="invalid-date", location=location)
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    if not hh and not instant:
        return hl7_date(value, location)
    try:
        naive = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0))
    except ValueError:
        raise MappingError("not a valid calendar date/time", code="invalid-date", location=location) from None
    if off:
        sign = 1 if off[0] == "+" else -1
        minutes = int(off[1:3]) * 60 + int(off[3:5])
        if minutes > 14 * 60 or int(off[3:5]) > 59:
            raise MappingError("time-zone offset out of range", code="invalid-date", location=location)
        aware = naive.replace(tzinfo=timezone(sign * timedelta(minutes=minutes)))
    else:
        aware = naive.replace(tzinfo=tz)
    text = aware.isoformat(timespec="seconds")
    if frac:
        text = text[:19] + "." + frac + text[19:]
    return text


def age_on(birth_date: str, on: date) -> int | None:
    """Whole years of age on a day; None when the birth date is only a year or year-month."""
    if len(birth_date) != 10:
        return None
    b = date.fromisoformat(birth_date)
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


_NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous",
             "B": "old", "C": "old", "U": "temp", "S": "anonymous", "T": "temp"}


def human_name(comps: list[str]) -> dict[str, object] | None:
    """XPN: 1 family (FN.1 surname), 2 given, 3 further given, 4 suffix, 5 prefix, 7 name type."""
    def c(i: int) -> str:
        return comps[i - 1].strip() if i <= len(comps) else ""

    family = c(1).split("&")[0].strip() if c(1) else ""
    given = [g for g in (c(2), c(3)) if g]
    if not family and not given:
        return None
    name: dict[str, object] = {}
    use = _NAME_USE.get(c(7))
    if use:
        name["use"] = use
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    if c(5):
        name["prefix"] = [c(5)]
    if c(4):
        name["suffix"] = [c(4)]
    return name


_ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "M": "home", "P": "home"}


def address(comps: list[str]) -> dict[str, object] | None:
    """XAD: 1 street (SAD.1), 2 other designation, 3 city, 4 county, 5 postcode, 6 country, 7 type."""
    def c(i: int) -> str:
        return comps[i - 1].strip() if i <= len(comps) else ""

    lines = [x for x in (c(1).split("&")[0].strip(), c(2)) if x]
    out: dict[str, object] = {}
    use = _ADDRESS_USE.get(c(7))
    if use:
        out["use"] = use
    if lines:
        out["line"] = lines
    if c(3):
        out["city"] = c(3)
    if c(4):
        out["district"] = c(4)
    if c(5):
        out["postalCode"] = c(5)
    if c(6):
        out["country"] = c(6)
    return out if (lines or c(3) or c(5)) else None


_TEL_USE = {"PRN": "home", "ORN": "home", "WPN": "work", "VHN": "temp", "ASN": "temp", "EMR": "temp"}


def contact_points(reps: list[list[str]]) -> list[dict[str, str]]:
    """XTN repetitions: 1 number (legacy), 2 use code, 3 equipment type, 4 email, 12 unformatted."""
    out: list[dict[str, str]] = []
    for comps in reps:
        def c(i: int) -> str:
            return comps[i - 1].strip() if i <= len(comps) else ""

        equipment = c(3).upper()
        if equipment in ("INTERNET", "X.400") or c(2) == "NET":
            value, system = c(4) or c(1), "email"
        else:
            value = c(1) or c(12) or "".join(x for x in (c(6), c(7)) if x)
            system = {"FX": "fax", "BP": "pager"}.get(equipment, "phone")
        if not value:
            continue
        cp = {"system": system, "value": value}
        use = "mobile" if equipment == "CP" else _TEL_USE.get(c(2))
        if use:
            cp["use"] = use
        out.append(cp)
    return out


_CODING_SYSTEMS = {"SCT": SNOMED, "SNM": SNOMED, "SNOMED": SNOMED, "SNOMEDCT": SNOMED, "SNOMED CT": SNOMED,
                   "LN": "http://loinc.org", "LOINC": "http://loinc.org", "I10": "http://hl7.org/fhir/sid/icd-10"}


def coding_system(name: str) -> str | None:
    return _CODING_SYSTEMS.get(name.strip().upper())


def codeable_concept(comps: list[str]) -> dict[str, object] | None:
    """CE/CWE: 1 code, 2 text, 3 coding system (+ 4-6 alternate)."""
    def c(i: int) -> str:
        return comps[i - 1].strip() if i <= len(comps) else ""

    codings = []
    for code_i, text_i, sys_i in ((1, 2, 3), (4, 5, 6)):
        system = coding_system(c(sys_i))
        if c(code_i) and system:
            coding = {"system": system, "code": c(code_i)}
            if c(text_i):
                coding["display"] = c(text_i)
            codings.append(coding)
    if not codings and not c(2):
        return None
    cc: dict[str, object] = {}
    if codings:
        cc["coding"] = codings
    if c(2):
        cc["text"] = c(2)
    return cc
