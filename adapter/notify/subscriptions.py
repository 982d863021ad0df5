"""FHIR R4 Subscriptions as Carethread supports them: rest-hook channels on Communication criteria.

What a Subscription may say (checked when a client creates or updates one through the API, ``accept``):

* ``channel.type`` ``rest-hook``; ``channel.endpoint`` an absolute http(s) URL; ``channel.payload`` absent (a
  notification without a body) or ``application/fhir+json``; ``channel.header`` lines ``Name: value``.
* ``criteria`` ``Communication`` alone or with parameters ``recipient``, ``subject``, ``patient``
  (references), ``reason-code``, ``priority`` (tokens): repeated parameters are AND'ed, comma-separated
  values OR'ed, as in a search. They are matched in process against the new Communication
  (``Criteria.matches``).
* ``status``: R4 says a client only submits ``requested`` or ``off`` and the server moves a subscription it is
  prepared to process to ``active`` (Subscription.status; subscription.html). So ``requested`` becomes
  ``active`` here, once every check above passes; a subscription we cannot process is refused with an
  OperationOutcome instead of being stored. An update may also keep the status the subscription already has.
* Delivery (adapter.notify.delivery) sets ``error`` with an ``error`` note when a notification cannot be
  delivered, and back to ``active`` on the next delivery that succeeds; an ``error`` subscription still
  receives new notifications, so a receiver that was down loses nothing. ``end`` in the past stops matching.

Diagnostics name elements and rules, never the values a client sent (a header may carry a credential).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from adapter.store.search import SEARCH_PARAMS, date_range, param_rows, parse_reference

__all__ = [
    "FHIR_JSON",
    "MATCH_PARAMS",
    "SUBSCRIPTION_STATUSES",
    "Criteria",
    "accept",
    "endpoint_problem",
    "header_pair",
    "header_problem",
    "is_live",
    "parse_criteria",
    "payload_problem",
]

FHIR_JSON = "application/fhir+json"
SUBSCRIPTION_STATUSES = ("requested", "active", "error", "off")
CLIENT_STATUSES = ("requested", "off")  # R4: what a client may submit; the server sets active and error
LIVE_STATUSES = ("active", "error")  # matched against new notifications
MATCH_PARAMS = ("recipient", "subject", "patient", "reason-code", "priority")

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
# hop-by-hop and framing headers are the client's (httpx) to set, not a subscriber's
_RESERVED_HEADERS = {"content-length", "content-type", "host", "transfer-encoding", "connection"}


class CriteriaError(ValueError):
    """Criteria Carethread cannot evaluate; the message never quotes the criteria."""


@dataclass(frozen=True, slots=True)
class Criteria:
    resource_type: str
    params: tuple[tuple[str, tuple[str, ...]], ...]  # (name, OR'ed values); the pairs are AND'ed

    def matches(self, resource: dict[str, Any]) -> bool:
        if resource.get("resourceType") != self.resource_type:
            return False
        table = SEARCH_PARAMS[self.resource_type]
        for name, values in self.params:
            rows = param_rows(resource, table[name])
            if not any(_value_matches(table[name].type, value, rows) for value in values):
                return False
        return True


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _value_matches(ptype: str, value: str, rows: list[tuple[str, str, str, str]]) -> bool:
    if ptype == "reference":
        parsed = parse_reference(value)
        return parsed is not None and any(
            row[2] == parsed[1] and parsed[0] in (None, row[1]) for row in rows)
    system, bar, code = value.partition("|")
    if not bar:
        return any(row[2] == _unescape(system) for row in rows)
    system, code = _unescape(system), _unescape(code)
    return any(row[1] == system and (not code or row[2] == code) for row in rows)


def parse_criteria(text: object) -> Criteria:
    """``Communication`` or ``Communication?name=value&...``; CriteriaError if Carethread cannot match it."""
    if not isinstance(text, str) or not text:
        raise CriteriaError("criteria must be a search string such as "
                            "Communication?recipient=Organization/id")
    rtype, _, query = text.partition("?")
    if rtype != "Communication":
        raise CriteriaError("only Communication criteria are supported (Carethread notifies Communications)")
    params: list[tuple[str, tuple[str, ...]]] = []
    for name, raw in parse_qsl(query, keep_blank_values=True):
        if name not in MATCH_PARAMS:
            raise CriteriaError(f"criteria parameters supported: {', '.join(MATCH_PARAMS)} (no modifiers)")
        values = tuple(v for v in _UNESCAPED_COMMA.split(raw) if v)
        if not values:
            raise CriteriaError("a criteria parameter has no value")
        if SEARCH_PARAMS[rtype][name].type == "reference" and any(
                parse_reference(_unescape(v)) is None for v in values):
            raise CriteriaError("a reference criteria value must be Type/id or id")
        params.append((name, tuple(_unescape(v) if SEARCH_PARAMS[rtype][name].type == "reference" else v
                                   for v in values)))
    return Criteria(rtype, tuple(params))


def header_problem(line: object) -> str | None:
    """Why a channel.header line cannot be sent as an HTTP header (None when it can)."""
    if not isinstance(line, str):
        return "a header must be a string 'Name: value'"
    name, colon, value = line.partition(":")
    if not colon or not _HEADER_NAME.fullmatch(name.strip()) or name != name.strip():
        return "a header must be 'Name: value' with a valid HTTP header name"
    if name.lower() in _RESERVED_HEADERS:
        return "Content-Type, Content-Length, Host, Connection and Transfer-Encoding are set by the server"
    if any(c in value for c in "\r\n\0") or not value.isascii():
        return "a header value must be ASCII text on one line"
    return None


def header_pair(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


def endpoint_problem(url: object) -> str | None:
    """Why a channel.endpoint cannot be a rest-hook target (None when it can)."""
    if not isinstance(url, str) or not url:
        return "a rest-hook needs channel.endpoint"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "channel.endpoint must be an absolute http or https URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return "channel.endpoint must be an absolute http or https URL without query or fragment"
    return None


def payload_problem(payload: object) -> str | None:
    if payload is None:
        return None
    if not isinstance(payload, str) or payload.split(";")[0].strip() != FHIR_JSON:
        return f"channel.payload must be {FHIR_JSON} or absent (no payload)"
    return None


def is_live(subscription: dict[str, Any], now: datetime) -> bool:
    """Whether new notifications are matched against this subscription: active (or error, still retried)
    and not past its ``end``."""
    if subscription.get("status") not in LIVE_STATUSES:
        return False
    end = subscription.get("end")
    if isinstance(end, str) and (bounds := date_range(end)) is not None:  # bounds: naive UTC
        utc_now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now
        return utc_now < datetime.fromisoformat(bounds[0])
    return True


def _issue(code: str, diagnostics: str, expression: str) -> dict[str, Any]:
    return {"severity": "error", "code": code, "diagnostics": diagnostics, "expression": [expression]}


def accept(resource: dict[str, Any], current: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The server's rules for a Subscription a client writes (``current``: the stored version, if any).

    Returns OperationOutcome issues (errors refuse the write). When there are none and the client asked for
    ``requested``, the subscription is activated in place (``status = active``)."""
    issues: list[dict[str, Any]] = []
    status = resource.get("status")
    if status not in SUBSCRIPTION_STATUSES:
        issues.append(_issue("code-invalid", "status must be requested | active | error | off",
                             "Subscription.status"))
    elif status not in CLIENT_STATUSES and status != (current or {}).get("status"):
        issues.append(_issue("business-rule", "a client submits a Subscription as requested (or off); the "
                             "server activates it (FHIR R4 Subscription.status)", "Subscription.status"))
    channel = resource.get("channel")
    if isinstance(channel, dict):
        if channel.get("type") != "rest-hook":
            issues.append(_issue("not-supported", "only rest-hook channels are supported",
                                 "Subscription.channel.type"))
        if (problem := endpoint_problem(channel.get("endpoint"))) is not None:
            issues.append(_issue("value", problem, "Subscription.channel.endpoint"))
        if (problem := payload_problem(channel.get("payload"))) is not None:
            issues.append(_issue("not-supported", problem, "Subscription.channel.payload"))
        headers = channel.get("header")
        for i, line in enumerate(headers if isinstance(headers, list) else ()):
            if (problem := header_problem(line)) is not None:
                issues.append(_issue("value", problem, f"Subscription.channel.header[{i}]"))
    try:
        parse_criteria(resource.get("criteria"))
    except CriteriaError as exc:
        issues.append(_issue("not-supported", str(exc), "Subscription.criteria"))
    if not issues and status == "requested":
        resource["status"] = "active"
        resource.pop("error", None)
    return issues
