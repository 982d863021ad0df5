"""FHIR search query -> SQL over the ``search_index`` table, driven by ``adapter.store.search.SEARCH_PARAMS``.

``parse_search(resource_type, params)`` checks every (name, value) pair and compiles it:

* repeated parameters are AND'ed, comma-separated values OR'ed (``\\,`` escapes a comma, ``\\|`` a bar);
* ``_count``/``_offset`` (paging) and ``_include`` (``Type:param[:TargetType]``) are result parameters;
* anything unknown (a parameter, modifier, chain or result parameter such as ``_sort``) raises
  ``SearchParamError('not-supported')``, a value that cannot be read raises ``SearchParamError('invalid')``;
  with ``lenient=True`` those parameters are left out and reported in ``SearchRequest.issues`` instead.

The SQL fragments refer to the current-resource table as ``r`` (columns ``type``, ``id``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from adapter.store.search import (
    DATE_PREFIXES,
    MODIFIERS,
    SEARCH_PARAMS,
    SearchParam,
    date_range,
    normalise_string,
    parse_reference,
)

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "Criterion",
    "Include",
    "SearchParamError",
    "SearchRequest",
    "parse_search",
]

DEFAULT_COUNT = 50
MAX_COUNT = 500

IssueCode = Literal["not-supported", "invalid"]


class SearchParamError(ValueError):
    """A search parameter the server cannot honour. ``param`` is the name as given (with modifier), unless it
    looks like anything but a parameter name; neither it nor the message ever holds the parameter's value.
    ``message`` may name the parameter as ``{param}``."""

    def __init__(self, code: IssueCode, param: str, message: str) -> None:
        self.code: IssueCode = code
        self.param = _safe(param)
        super().__init__(message.format(param=self.param))


@dataclass(frozen=True, slots=True)
class Criterion:
    sql: str  # a boolean SQL expression over r
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Include:
    param: SearchParam  # a reference parameter of the searched type
    target_type: str | None  # Appointment:actor:Patient -> "Patient"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    includes: tuple[Include, ...] = ()
    count: int | None = None  # None: not given
    offset: int | None = None
    used: tuple[tuple[str, str], ...] = ()  # the pairs honoured, in the order given
    issues: tuple[SearchParamError, ...] = ()


_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.:]{0,63}")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
_UNSUPPORTED_PREFIXES = ("sa", "eb", "ap")


def _safe(name: str) -> str:
    """The parameter name to show in an error: a client may put anything there; odd names are not echoed."""
    return name if _SAFE_NAME.fullmatch(name) else "(unrecognised parameter)"


def _split(value: str, sep: str) -> list[str]:
    """Split on unescaped ``sep``; FHIR escapes are ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    parts, current, chars = [], [], iter(value)
    for ch in chars:
        if ch == "\\":
            current.append(ch + next(chars, ""))
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _marks(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join("?" * len(values))


def _rows_of(rtype: str, param: SearchParam) -> tuple[str, list[Any]]:
    """SQL for the ids of ``rtype`` resources with index rows that ``param`` matches, whatever the value."""
    names = param.row_names
    sql = f"SELECT id FROM search_index WHERE type = ? AND param IN ({_marks(names)})"
    args: list[Any] = [rtype, *names]
    if param.type == "reference" and param.targets and param.also:  # another parameter's rows: any type
        sql += f" AND system IN ({_marks(param.targets)})"
        args += param.targets
    return sql, args


def _token_condition(value: str, name: str) -> tuple[str, list[Any]]:
    parts = _split(value, "|")
    if len(parts) == 1:
        return _EQ, [_unescape(parts[0])]
    if len(parts) != 2:
        raise SearchParamError("invalid", name, "Invalid token for search parameter '{param}'")
    system, code = (_unescape(p) for p in parts)
    if not system:
        return _EQ_NO_SYSTEM, [code]
    if not code:
        return "system = ?", [system]
    return _EQ_SYSTEM, [system, code]


def _string_condition(value: str, modifier: str | None) -> tuple[str, list[Any]]:
    text = _unescape(value)
    if modifier == "exact":
        return "system = ?", [text]
    norm = normalise_string(text)
    if not norm:  # nothing left once accents are removed: every value has the empty prefix
        return "1", []
    if modifier == "contains":
        return "instr(value, ?) > 0", [norm]
    return "(value >= ? AND value < ?)", [norm, norm[:-1] + chr(min(ord(norm[-1]) + 1, 0x10FFFF))]


def _date_condition(value: str, name: str) -> tuple[str, list[Any]]:
    prefix, text = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    if prefix in _UNSUPPORTED_PREFIXES:
        raise SearchParamError("not-supported", name, f"Prefix '{prefix}' is not supported for '{{param}}'")
    bounds = date_range(text) if prefix in DATE_PREFIXES else None
    if bounds is None:
        raise SearchParamError("invalid", name, "Invalid date for search parameter '{param}'")
    low, high = bounds
    return {
        "eq": ("(value >= ? AND high <= ?)", [low, high]),
        "ne": ("NOT (value >= ? AND high <= ?)", [low, high]),
        "gt": ("high > ?", [high]),
        "lt": ("value < ?", [low]),
        "ge": ("high >= ?", [low]),
        "le": ("value <= ?", [high]),
    }[prefix]


def _reference_condition(
    value: str, param: SearchParam, type_modifier: str | None, name: str
) -> tuple[str, list[Any]]:
    parsed = parse_reference(_unescape(value))
    if parsed is None:
        raise SearchParamError("invalid", name, "Invalid reference for search parameter '{param}'")
    rtype, rid = parsed
    if type_modifier is not None:
        if rtype is not None and rtype != type_modifier:
            return "0", []
        rtype = rtype or type_modifier
    if rtype is None:
        return _EQ, [rid]
    if param.targets and rtype not in param.targets:
        return "0", []  # a type this parameter never indexes: no match
    return _EQ_SYSTEM, [rtype, rid]


def _value_condition(
    param: SearchParam, value: str, modifier: str | None, name: str
) -> tuple[str, list[Any]]:
    if param.type == "token":
        return _token_condition(value, name)
    if param.type == "string":
        return _string_condition(value, modifier)
    if param.type == "date":
        return _date_condition(value, name)
    return _reference_condition(value, param, modifier, name)


# equality conditions (token, reference): comma-separated values with the same system constraint become one
# ``value IN (...)``, so each value is a seek on the (type, param, value, ...) primary key
_EQ = "value = ?"
_EQ_NO_SYSTEM = "(system = '' AND value = ?)"
_EQ_SYSTEM = "(system = ? AND value = ?)"


def _any_of(rows_sql: str, rows_args: list[Any], conditions: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """SQL for the ids of the rows (``rows_sql``) matching any of ``conditions`` (the OR of comma-separated
    values). One value: ``rows AND condition``. Several: equalities grouped into ``value IN (...)`` per system
    constraint and every other condition its own term, the terms joined by UNION, so that each is an index seek
    (an OR inside one query would make SQLite walk every row of the parameter)."""
    conditions = [c for c in conditions if c[0] != "0"] or [("0", [])]  # "0": a value that cannot match
    if len(conditions) == 1:
        sql, args = conditions[0]
        return f"{rows_sql} AND ({sql})", [*rows_args, *args]
    groups: dict[tuple[str, str | None], list[Any]] = {}
    others: list[tuple[str, list[Any]]] = []
    for sql, args in conditions:
        if sql == _EQ:
            groups.setdefault(("", None), []).append(args[0])
        elif sql == _EQ_NO_SYSTEM:
            groups.setdefault(("system = '' AND ", None), []).append(args[0])
        elif sql == _EQ_SYSTEM:
            groups.setdefault(("system = ? AND ", args[0]), []).append(args[1])
        else:
            others.append((sql, args))
    terms: list[str] = []
    out: list[Any] = []
    for (system_sql, system), values in groups.items():
        unique = list(dict.fromkeys(values))
        terms.append(f"{rows_sql} AND {system_sql}value IN ({_marks(unique)})")
        out += [*rows_args, *([] if system is None else [system]), *unique]
    for sql, args in others:
        terms.append(f"{rows_sql} AND ({sql})")
        out += [*rows_args, *args]
    return " UNION ".join(terms), out


def _check_modifier(rtype: str, name: str, param: SearchParam, chain: str, modifier: str | None) -> None:
    if chain:
        if chain not in param.chains or modifier is not None:
            raise SearchParamError("not-supported", name, f"Chain '{{param}}' is not supported for {rtype}")
        return
    if modifier is None:
        return
    is_type_modifier = (
        param.type == "reference"
        and _TYPE_NAME.fullmatch(modifier) is not None
        and (not param.targets or modifier in param.targets)
    )
    if param.name == "_id" or not (modifier in MODIFIERS[param.type] or is_type_modifier):
        raise SearchParamError("not-supported", name, f"Modifier in '{{param}}' is not supported for {rtype}")


def _compile(rtype: str, name: str, raw_value: str, within: tuple[str, list[Any]] | None = None) -> Criterion | None:
    """One (name, value) pair -> a criterion; None for an empty value (which FHIR says to ignore).
    ``within``: SQL (and its arguments) for a small set of ids the result must be in anyway (the query's
    ``identity``): the criterion's rows are looked up among those ids only, rather than all of them built into
    a temporary set (``status=active`` alone would be every active Flag)."""
    base, has_modifier, modifier_text = name.partition(":")
    modifier = modifier_text if has_modifier else None
    base, _, chain = base.partition(".")
    param = SEARCH_PARAMS[rtype].get(base)
    if param is None:
        raise SearchParamError("not-supported", name, f"Unknown search parameter '{{param}}' for {rtype}")
    _check_modifier(rtype, name, param, chain, modifier)

    values = [v for v in _split(raw_value, ",") if v]
    if not values:
        return None
    if modifier == "missing":
        if raw_value not in ("true", "false"):
            raise SearchParamError("invalid", name, "'{param}' takes true or false")
        subquery, args = _within(*_rows_of(rtype, param), within)
        return Criterion(f"r.id {'NOT IN' if raw_value == 'true' else 'IN'} ({subquery})", tuple(args))
    if param.name == "_id":
        ids = [_unescape(v) for v in values]
        return Criterion(f"r.id IN ({_marks(ids)})", tuple(ids))
    if param.identity is not None:
        return _identity_criterion(rtype, param, values, name)

    # a chain (patient.identifier) matches on the target type's parameter, then follows the reference back
    target_type = param.targets[0] if chain else rtype
    target = SEARCH_PARAMS[target_type][chain] if chain else param
    rows_sql, rows_args = _rows_of(target_type, target) if chain else _within(*_rows_of(rtype, param), within)
    conditions = [_value_condition(target, value, None if chain else modifier, name) for value in values]
    subquery, args = _any_of(rows_sql, rows_args, conditions)
    if chain:
        referencing, referencing_args = _within(*_rows_of(rtype, param), within)
        subquery = f"{referencing} AND system = ? AND value IN ({subquery})"
        args = [*referencing_args, target_type, *args]
    op = "NOT IN" if modifier == "not" else "IN"
    return Criterion(f"r.id {op} ({subquery})", tuple(args))


# every Patient of the identity of a given Patient id (a master's id is its identity id): the members, the
# master, and the given id itself (a Patient not yet reconciled is its own identity)
_IDENTITY_SET = (
    "SELECT patient_id FROM identity_member WHERE identity_id = "
    "coalesce((SELECT identity_id FROM identity_member WHERE patient_id = ?), ?) "
    "UNION SELECT coalesce((SELECT identity_id FROM identity_member WHERE patient_id = ?), ?) UNION SELECT ?"
)


def _within(sql: str, args: list[Any], within: tuple[str, list[Any]] | None) -> tuple[str, list[Any]]:
    if within is None:
        return sql, args
    return f"{sql} AND id IN ({within[0]})", [*args, *within[1]]


def _identity_criterion(rtype: str, param: SearchParam, values: list[str], name: str) -> Criterion:
    sql, args = _identity_ids(rtype, param, values, name)
    return Criterion(f"r.id IN ({sql})", tuple(args))


def _identity_ids(rtype: str, param: SearchParam, values: list[str], name: str) -> tuple[str, list[Any]]:
    """SQL for the ids of the ``rtype`` resources of the identities of the given Patients."""
    sets, args = [], []
    for value in values:
        parsed = parse_reference(_unescape(value))
        if parsed is None or parsed[0] not in (None, "Patient"):
            raise SearchParamError("invalid", name, "'{param}' takes a Patient reference")
        pid = parsed[1]
        sets.append(_IDENTITY_SET)
        args += [pid] * 5
    patients = " UNION ".join(sets)
    if param.identity == "_id":
        return patients, args
    referencing, referencing_args = _rows_of(rtype, SEARCH_PARAMS[rtype][param.identity])
    return f"{referencing} AND system = 'Patient' AND value IN ({patients})", [*referencing_args, *args]


def _identity_within(resource_type: str, params: list[tuple[str, str]]) -> tuple[str, list[Any]] | None:
    """The ids of the first well-formed ``identity`` parameter's resources (see ``_compile``), or None."""
    table = SEARCH_PARAMS[resource_type]
    for name, value in params:
        param = table.get(name)
        if param is None or param.identity is None:
            continue
        values = [v for v in _split(value, ",") if v]
        if not values:
            continue
        try:
            return _identity_ids(resource_type, param, values, name)
        except SearchParamError:
            return None  # reported when the parameter itself is compiled
    return None


def _parse_paging(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 9:  # no sign: negatives are invalid
        raise SearchParamError("invalid", name, "'{param}' must be a non-negative integer below 10^9")
    return int(value)


def _parse_include(rtype: str, value: str) -> Include:
    source, _, rest = value.partition(":")
    pname, _, target_type = rest.partition(":")
    param = SEARCH_PARAMS[rtype].get(pname) if source == rtype else None
    bad_target = bool(target_type) and param is not None and (
        not _TYPE_NAME.fullmatch(target_type) or bool(param.targets and target_type not in param.targets)
    )
    if param is None or param.type != "reference" or param.identity is not None or bad_target:
        raise SearchParamError("not-supported", "_include", f"This _include is not supported for {rtype}")
    return Include(param, target_type or None)


def parse_search(
    resource_type: str, params: list[tuple[str, str]], *, lenient: bool = False
) -> SearchRequest:
    """Check and compile a query for ``resource_type`` (a key of SEARCH_PARAMS; KeyError otherwise).
    ``_format`` is the API's business: it is not accepted here."""
    if resource_type not in SEARCH_PARAMS:
        raise KeyError(resource_type)
    criteria: list[Criterion] = []
    includes: list[Include] = []
    used: list[tuple[str, str]] = []
    issues: list[SearchParamError] = []
    count: int | None = None
    offset: int | None = None
    within = _identity_within(resource_type, params)
    for name, value in params:
        try:
            if name == "_count":
                count = min(_parse_paging(name, value), MAX_COUNT)
            elif name == "_offset":
                offset = _parse_paging(name, value)
            elif name == "_include":
                include = _parse_include(resource_type, value)
                if include not in includes:
                    includes.append(include)
            elif name.startswith("_") and name.partition(":")[0].partition(".")[0] not in SEARCH_PARAMS[resource_type]:
                raise SearchParamError("not-supported", name, "Parameter '{param}' is not supported")
            else:
                criterion = _compile(resource_type, name, value, within)
                if criterion is None:
                    continue
                criteria.append(criterion)
        except SearchParamError as exc:
            if not lenient:
                raise
            issues.append(exc)
            continue
        used.append((name, value))
    return SearchRequest(
        resource_type, tuple(criteria), tuple(includes), count, offset, tuple(used), tuple(issues)
    )
