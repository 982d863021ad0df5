"""Standardisation of person records for identity matching (LINKAGE.md §1 step 1 and §5.1).

One small frozen dataclass, :class:`PersonRecord`, built either from a row of the labelled evaluation CSV
(:func:`standardise`) or from an R4 Patient as Carethread stores it (:func:`from_patient`).  Everything the
comparisons and blocking keys need is computed here once, so the per-candidate path only compares
prepared values:

* NHS numbers failing Modulus 11 are nulled; a baby's NHS number equal to its mother's is nulled;
* placeholder names ("BABY OF SMITH", "TWIN 1", "TWIN ONE", "INFANT", "UNBORN", "B/O SMITH" ...) give a
  null given name, a birth order when one is written, and the surname left over;
* given names are reduced to the first forename in upper case, with the set of canonical names it stands
  for through the nickname table (``nicknames.csv`` beside this module);
* postcodes are normalised to ``OUTWARD INWARD`` with the outward code and sector kept apart.

Nothing here logs: values are personal data.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapter.mapping.transforms import is_valid_nhs_number  # the one Modulus 11 check

__all__ = [
    "PersonRecord",
    "standardise",
    "from_patient",
    "is_valid_nhs_number",
    "normalise_postcode",
    "parse_name",
    "given_keys",
    "soundex",
    "SOURCES",
    "NHS_SYSTEM",
    "VERIFICATION_URL",
]

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
FAILING_CHECK_SYSTEM = "https://fhir.carethread.org/Id/nhs-number-failing-check"
SOURCES = ("maternity", "health-visiting", "gp")
NICKNAMES_FILE = Path(__file__).with_name("nicknames.csv")


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A standardised person record.  ``key`` is unique per source record (the CSV record_id or the
    Patient id); every other field may be None.  Derived fields (``*_code``, ``birth_ordinal``,
    postcode parts, ``given_keys``) are filled by the constructors below, not by callers."""

    key: str
    source: str
    local_id: str | None
    nhs_number: str | None          # valid (Modulus 11) or None
    nhs_status: str | None          # "01".."08"
    given: str | None               # canonical forename (nickname-mapped when unambiguous); None for placeholders
    family: str | None              # letters only, upper case ("SMITHJONES" for SMITH-JONES)
    sex: str | None                 # "M", "F" or None
    birth_date: date | None
    due_date: date | None
    birth_order: int | None
    postcode: str | None            # "AB1 2CD" (or the outward code alone when only that was given)
    postcode_outward: str | None
    postcode_sector: str | None     # "AB1 2"
    gp_practice: str | None
    mother_local_id: str | None     # "source|local id" of the mother's record in the same source
    mother_nhs_number: str | None
    # derived, for comparison and blocking
    given_raw: str | None = None    # the forename as written (cleaned), before nickname mapping
    given_keys: tuple[str, ...] = ()  # canonical names the forename stands for (sorted)
    family_parts: tuple[str, ...] = ()
    family_code: str | None = None  # Soundex of the first family part
    birth_ordinal: int | None = None
    placeholder: bool = False       # the name was a placeholder (BABY OF, TWIN 1, UNBORN ...)

    @property
    def nhs_verified(self) -> bool:
        return self.nhs_number is not None and self.nhs_status == "01"

    @property
    def is_unborn(self) -> bool:
        """A pre-birth record: no date of birth but an expected delivery date."""
        return self.birth_date is None and self.due_date is not None

    @property
    def mother_ids(self) -> tuple[str, ...]:
        out = []
        if self.mother_nhs_number:
            out.append("nhs|" + self.mother_nhs_number)
        if self.mother_local_id:
            out.append("local|" + self.mother_local_id)
        return tuple(out)


# --- NHS numbers ----------------------------------------------------------------------------------------

def _nhs(value: Any) -> str | None:
    if not value:
        return None
    digits = re.sub(r"[\s-]", "", str(value))
    return digits if is_valid_nhs_number(digits) else None


_STATUS = re.compile(r"^(?:NSTS)?0?([1-8])$")


def _status(value: Any) -> str | None:
    if not value:
        return None
    m = _STATUS.match(str(value).strip().upper())
    return f"0{m.group(1)}" if m else None


# --- names ------------------------------------------------------------------------------------------------

# Words that make a name a placeholder, not a name.  "OF" and order words are stripped with them.
_PLACEHOLDER_WORDS = frozenset({
    "BABY", "BABIES", "INFANT", "UNBORN", "NEWBORN", "TWIN", "TWINS", "TRIPLET", "QUAD", "QUADRUPLET",
    "BOY", "GIRL", "B/O", "BO", "BBY", "FETUS", "FOETUS", "UNNAMED", "UNKNOWN", "NK",
})
_ORDER_WORDS = {
    "ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5, "SIX": 6, "SEVEN": 7, "FIRST": 1, "SECOND": 2,
    "THIRD": 3, "I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "A": 1, "B": 2, "C": 3,
}
_FILLER = frozenset({"OF", "THE", "MRS", "MISS", "MS", "MR", "MX", "DR"})
_TITLES = frozenset({"MRS", "MISS", "MS", "MR", "MX", "DR", "MASTER", "PROF", "REV", "SIR", "LADY"})
_TOKEN = re.compile(r"B/O|[A-Z0-9']+")


@dataclass(frozen=True, slots=True)
class ParsedName:
    given: str | None          # cleaned first forename, None for a placeholder or nothing
    family: str | None         # letters only
    family_parts: tuple[str, ...]
    placeholder: bool
    birth_order: int | None


def _tokens(text: str | None) -> list[str]:
    return _TOKEN.findall(text.upper()) if text else []


def _strip_placeholder(tokens: list[str]) -> tuple[bool, int | None, list[str]]:
    """(is placeholder, birth order, remaining name tokens)."""
    if not any(t in _PLACEHOLDER_WORDS for t in tokens):
        return False, None, tokens
    order: int | None = None
    rest: list[str] = []
    after_marker = False
    for t in tokens:
        if t in _PLACEHOLDER_WORDS:
            after_marker = True
            continue
        if t.isdigit() and len(t) == 1 and t != "0":
            order = order or int(t)
            continue
        if after_marker and t in _ORDER_WORDS and order is None:
            order = _ORDER_WORDS[t]
            continue
        if t in _FILLER:
            continue
        rest.append(t)
    return True, order, rest


def _letters(token: str) -> str:
    return re.sub(r"[^A-Z]", "", token)


def parse_name(given: str | None, family: str | None) -> ParsedName:
    """Split placeholders from names.  ``("BABY OF SMITH", "")``, ``("", "BABY OF SMITH")``,
    ``("TWIN 1", "SMITH")`` and ``("B/O", "SMITH")`` all give family SMITH, no given name, a placeholder
    flag and (for the twin) birth order 1."""
    g_tokens = [t for t in _tokens(given.replace("-", "") if given else None) if t not in _TITLES]
    f_tokens = _tokens(family)
    g_ph, g_order, g_rest = _strip_placeholder(g_tokens)
    f_ph, f_order, f_rest = _strip_placeholder(f_tokens)
    placeholder = g_ph or f_ph
    order = g_order or f_order
    fam_tokens = f_rest
    if not fam_tokens and g_ph:
        fam_tokens = g_rest            # "BABY OF SMITH" written in the given-name field
    parts = tuple(p for p in (_letters(t) for t in fam_tokens) if p)
    fam = "".join(parts) or None
    given_name: str | None = None
    if not g_ph:
        words = [w for w in (_letters(t) for t in g_rest) if w]
        given_name = words[0] if words else None
        if f_ph and not f_rest and given_name and not parts:
            given_name = None          # "SMITH" / "BABY": the given field held the surname
    return ParsedName(given_name, fam, parts, placeholder, order)


@lru_cache(maxsize=1)
def _nickname_table() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    with NICKNAMES_FILE.open(newline="") as fh:
        rows = csv.reader(line for line in fh if not line.startswith("#"))
        header = next(rows)
        if header != ["canonical", "nicknames"]:
            raise ValueError(f"{NICKNAMES_FILE.name}: header must be canonical,nicknames")
        for row in rows:
            if not row:
                continue
            canonical, nicks = row[0].strip(), row[1].split()
            for name in (canonical, *nicks):
                if not re.fullmatch(r"[A-Z]+", name):
                    raise ValueError(f"{NICKNAMES_FILE.name}: {canonical!r} row holds a name that is not A-Z")
            table.setdefault(canonical, set()).add(canonical)
            for n in nicks:
                table.setdefault(n, set()).add(canonical)
    return {k: frozenset(v) for k, v in table.items()}


@lru_cache(maxsize=65536)
def given_keys(name: str) -> tuple[str, ...]:
    """The canonical names a forename stands for (itself when it is not in the nickname table)."""
    keys = _nickname_table().get(name)
    return tuple(sorted(keys)) if keys else (name,)


def _canonical(name: str) -> str:
    keys = given_keys(name)
    return keys[0] if len(keys) == 1 else name


_SOUNDEX = str.maketrans("BFPVCGJKQSXZDTLMNR", "111122222222334556")


@lru_cache(maxsize=65536)
def soundex(name: str) -> str:
    """American Soundex (H and W do not separate equal codes)."""
    if not name:
        return ""
    first = name[0]
    out = []
    prev = first.translate(_SOUNDEX) if first in "BFPVCGJKQSXZDTLMNR" else ""
    for ch in name[1:]:
        if ch in "HW":
            continue
        code = ch.translate(_SOUNDEX) if ch in "BFPVCGJKQSXZDTLMNR" else ""
        if code and code != prev:
            out.append(code)
        prev = code
    return (first + "".join(out) + "000")[:4]


# --- postcodes, dates, sex ---------------------------------------------------------------------------------

_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_OUTWARD = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")


def normalise_postcode(value: Any) -> tuple[str | None, str | None, str | None]:
    """(postcode, outward code, sector); an outward code alone gives (outward, outward, None)."""
    if not value:
        return None, None, None
    compact = re.sub(r"[^A-Z0-9]", "", str(value).upper())
    m = _POSTCODE.match(compact)
    if m:
        outward, inward = m.groups()
        return f"{outward} {inward}", outward, f"{outward} {inward[0]}"
    if _OUTWARD.match(compact):
        return compact, compact, None
    return None, None, None


def _date(value: Any) -> date | None:
    if not value:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        return None


_SEX = {"male": "M", "m": "M", "1": "M", "female": "F", "f": "F", "2": "F"}


def _sex(value: Any) -> str | None:
    return _SEX.get(str(value).strip().lower()) if value else None


def _clean(value: Any) -> str | None:
    s = str(value).strip() if value is not None else ""
    return s or None


# --- constructors ---------------------------------------------------------------------------------------

def _build(*, key: str, source: str, local_id: str | None, nhs: Any, status: Any, given: str | None,
           family: str | None, sex: Any, birth_date: Any, due_date: Any, birth_order: int | None,
           postcode: Any, gp: Any, mother_local_id: str | None, mother_nhs: Any) -> PersonRecord:
    name = parse_name(given, family)
    nhs_number = _nhs(nhs)
    mother_nhs_number = _nhs(mother_nhs)
    if nhs_number is not None and nhs_number == mother_nhs_number:
        nhs_number = None                       # the mother's number on the baby's row
    pc, outward, sector = normalise_postcode(postcode)
    bd = _date(birth_date)
    g = name.given
    order = birth_order if birth_order is not None else name.birth_order
    gp_code = _clean(gp)
    return PersonRecord(
        key=key, source=source, local_id=local_id,
        nhs_number=nhs_number, nhs_status=_status(status) if nhs_number else None,
        given=_canonical(g) if g else None, family=name.family, sex=_sex(sex),
        birth_date=bd, due_date=_date(due_date), birth_order=order,
        postcode=pc, postcode_outward=outward, postcode_sector=sector,
        gp_practice=gp_code.upper() if gp_code else None,
        mother_local_id=f"{source}|{mother_local_id}" if mother_local_id else None,
        mother_nhs_number=mother_nhs_number,
        given_raw=g, given_keys=given_keys(g) if g else (),
        family_parts=name.family_parts,
        family_code=soundex(name.family_parts[0]) if name.family_parts else None,
        birth_ordinal=bd.toordinal() if bd else None,
        placeholder=name.placeholder,
    )


def standardise(raw: dict[str, Any]) -> PersonRecord:
    """A row of the labelled evaluation CSV (``adapter.reconcile.evaluate.COLUMNS``) -> PersonRecord.
    ``true_person_id`` is ignored."""
    source = (raw.get("source") or "").strip()
    return _build(
        key=str(raw["record_id"]), source=source, local_id=_clean(raw.get("local_id")),
        nhs=raw.get("nhs_number"), status=raw.get("nhs_number_status"),
        given=raw.get("given_name"), family=raw.get("family_name"), sex=raw.get("sex"),
        birth_date=raw.get("birth_date"), due_date=raw.get("due_date"), birth_order=None,
        postcode=raw.get("postcode"), gp=raw.get("gp_practice"),
        mother_local_id=_clean(raw.get("mother_local_id")), mother_nhs=raw.get("mother_nhs_number"),
    )


def _verification(identifier: dict[str, Any]) -> str | None:
    for ext in identifier.get("extension") or []:
        if ext.get("url") == VERIFICATION_URL:
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or []:
                if coding.get("code"):
                    return str(coding["code"])
    return None


def _official_name(patient: dict[str, Any]) -> dict[str, Any]:
    names = patient.get("name") or []
    for use in ("official", "usual", None):
        for n in names:
            if n.get("use") == use or use is None:
                return n
    return {}


def from_patient(patient: dict[str, Any], *, source: str, mother_nhs: str | None = None,
                 mother_local_id: str | None = None, due_date: date | str | None = None) -> PersonRecord:
    """An R4 Patient (JSON as stored) -> PersonRecord.  NHS number from the ``nhs-number`` identifier
    (verification status from the UK Core extension), local id from the first other identifier
    (``system|value``; the failing-check NHS system is skipped), the official name (else the first),
    gender, birthDate, the home (else first) address postcode, the GP practice's ODS code and
    ``multipleBirthInteger``.  The mother's identifiers come from the caller (PID-21 is a RelatedPerson
    in Carethread's mapping), and so does the expected delivery date of a pre-birth record."""
    nhs = status = local = None
    for ident in patient.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if not value:
            continue
        if system == NHS_SYSTEM:
            if nhs is None and is_valid_nhs_number(str(value).replace(" ", "")):
                nhs, status = value, _verification(ident)
        elif system != FAILING_CHECK_SYSTEM and local is None:
            local = f"{system}|{value}"
    name = _official_name(patient)
    given_list = name.get("given") or []
    given = given_list[0] if given_list else None
    if given is None and name.get("text") and not name.get("family"):
        given = name["text"]
    addresses = patient.get("address") or []
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    gp = None
    for ref in patient.get("generalPractitioner") or []:
        ident = ref.get("identifier") or {}
        if ident.get("system") == ODS_SYSTEM and ident.get("value"):
            gp = ident["value"]
            break
    order = patient.get("multipleBirthInteger")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 7:
        order = None                            # PDS 8/9: not applicable / not known
    return _build(
        key=str(patient.get("id") or local or nhs or ""), source=source, local_id=local,
        nhs=nhs, status=status, given=given, family=name.get("family"), sex=patient.get("gender"),
        birth_date=patient.get("birthDate"), due_date=due_date, birth_order=order,
        postcode=home.get("postalCode"), gp=gp, mother_local_id=mother_local_id, mother_nhs=mother_nhs,
    )
