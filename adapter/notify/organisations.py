"""The organisations that receive notifications, from configuration (setting ``organisations``, a YAML file;
``sandbox/organisations.yaml`` by default), never from code.

    organisations:
      - ods: Y12345                      # ODS code: the organisation's identity
        name: Synthetic Street Surgery
        roles: [gp-practice]             # ROLES below; notify() may name a role instead of an ODS code
        endpoint: https://gp.example/fhir   # optional: a rest-hook Subscription is kept for it
        headers: ["Authorization: Bearer ..."]   # optional: that Subscription's channel.header lines

At start-up (``sync_organisations``) each becomes an ``Organization`` (id ``ods-<ODS code>``, identifier
``https://fhir.nhs.uk/Id/ods-organization-code``, ``type`` its roles, ``meta.source`` CONFIG_SOURCE), and each
endpoint a ``Subscription`` (id ``ods-<ODS code>-rest-hook``, criteria ``Communication?recipient=...``).
Organisations and subscriptions that left the file are kept but ended (``active = false``, ``status = off``):
a notification already sent to them still resolves. The store is the directory from then on: ``notify()``
resolves recipients from these Organization resources, in its own transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adapter.errors import ConfigError
from adapter.fhir import CT
from adapter.notify.subscriptions import FHIR_JSON, endpoint_problem, header_problem
from adapter.store.base import Store, Transaction

__all__ = [
    "CONFIG_SOURCE",
    "ODS_SYSTEM",
    "ROLES",
    "ROLE_SYSTEM",
    "Organisation",
    "UnknownRecipient",
    "load_organisations",
    "organization_id",
    "organization_resource",
    "resolve_recipients",
    "subscription_resource",
    "sync_organisations",
]

_log = logging.getLogger("carethread.notify")

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
ROLE_SYSTEM = f"{CT}/CodeSystem/organisation-role"
CONFIG_SOURCE = f"{CT}/source/organisations"  # meta.source of what the configuration produced
ROLES = {
    "gp-practice": "GP practice",
    "health-visiting": "Health visiting team",
    "maternity-safeguarding": "Maternity safeguarding team",
    "childrens-social-care": "Children's social care",
    "safeguarding-team": "Safeguarding team",
}
_ODS = re.compile(r"[A-Z0-9]{3,10}")
_REQUIRED = {"ods", "name", "roles"}
_KEYS = _REQUIRED | {"endpoint", "headers"}


class UnknownRecipient(ValueError):
    """A recipient that is neither a configured ODS code nor a role any configured organisation has."""


@dataclass(frozen=True, slots=True)
class Organisation:
    ods: str
    name: str
    roles: tuple[str, ...]
    endpoint: str | None = None
    headers: tuple[str, ...] = ()


def organization_id(ods: str) -> str:
    """The Organization id of an ODS code: deterministic, readable in a Subscription's criteria."""
    return f"ods-{ods}"


def _subscription_id(ods: str) -> str:
    return f"ods-{ods}-rest-hook"


def load_organisations(path: Path | None) -> list[Organisation]:
    """Read and check the configuration file (None: no organisations). ConfigError names the entry at
    fault."""
    if path is None:
        return []
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"organisations file not found: {where}", location=where) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"organisations file cannot be read ({type(exc).__name__})",
                          location=where) from None
    entries = data.get("organisations") if isinstance(data, dict) else None
    if not isinstance(entries, list) or set(data) != {"organisations"}:
        raise ConfigError("organisations file must hold one key, 'organisations', a list", location=where)
    out: list[Organisation] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        at = f"{where}: organisations[{i}]"
        if not isinstance(entry, dict) or not _KEYS.issuperset(entry) or not _REQUIRED <= set(entry):
            raise ConfigError("each organisation has ods, name, roles and optionally endpoint, headers",
                              location=at)
        ods, name, roles = entry["ods"], entry["name"], entry["roles"]
        if not isinstance(ods, str) or not _ODS.fullmatch(ods):
            raise ConfigError("ods must be an ODS code (3-10 upper-case letters and digits)", location=at)
        if ods in seen:
            raise ConfigError("ODS code listed twice", location=at)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name must be text", location=at)
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise ConfigError(f"roles must be a list of: {', '.join(ROLES)}", location=at)
        endpoint = entry.get("endpoint")
        if endpoint is not None and (problem := endpoint_problem(endpoint)) is not None:
            raise ConfigError(problem.replace("channel.endpoint", "endpoint"), location=at)
        headers = entry.get("headers") or []
        if not isinstance(headers, list) or (headers and endpoint is None):
            raise ConfigError("headers must be a list, and only with an endpoint", location=at)
        for line in headers:
            if (problem := header_problem(line)) is not None:
                raise ConfigError(problem, location=at)
        seen.add(ods)
        out.append(Organisation(ods, name.strip(), tuple(dict.fromkeys(roles)), endpoint, tuple(headers)))
    return out


def organization_resource(org: Organisation) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": organization_id(org.ods),
        "meta": {"source": CONFIG_SOURCE},
        "identifier": [{"system": ODS_SYSTEM, "value": org.ods}],
        "active": True,
        "type": [{"coding": [{"system": ROLE_SYSTEM, "code": role, "display": ROLES[role]}]}
                 for role in org.roles],
        "name": org.name,
    }


def subscription_resource(org: Organisation) -> dict[str, Any] | None:
    """The rest-hook Subscription a configured endpoint stands for (None without one)."""
    if org.endpoint is None:
        return None
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": org.endpoint, "payload": FHIR_JSON}
    if org.headers:
        channel["header"] = list(org.headers)
    return {
        "resourceType": "Subscription",
        "id": _subscription_id(org.ods),
        "meta": {"source": CONFIG_SOURCE},
        "status": "active",
        "reason": f"Safeguarding notifications to {org.ods} (configured)",
        "criteria": f"Communication?recipient=Organization/{organization_id(org.ods)}",
        "channel": channel,
    }


def sync_organisations(store: Store, organisations: list[Organisation],
                       check: Callable[[dict[str, Any]], None]) -> int:
    """Upsert the configured Organizations and Subscriptions; end the ones that left the configuration.
    One transaction; ``check`` validates each resource written (raises on an invalid one). Returns how many
    versions were written."""
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for org in organisations:
        for resource in (organization_resource(org), subscription_resource(org)):
            if resource is not None:
                wanted[(resource["resourceType"], resource["id"])] = resource
    written = 0
    with store.transaction() as tx:
        for rtype, ended in (("Organization", {"active": False}), ("Subscription", {"status": "off"})):
            for stored in tx.list_current(rtype):
                old = stored.resource
                if (rtype, old["id"]) not in wanted and old.get("meta", {}).get("source") == CONFIG_SOURCE:
                    if any(old.get(k) != v for k, v in ended.items()):
                        wanted[(rtype, old["id"])] = {**old, **ended}
        for resource in wanted.values():
            check(resource)
            written += tx.put(resource)[1]
    _log.info("organisations configured: %d (%d versions written)", len(organisations), written)
    return written


def resolve_recipients(tx: Transaction, recipients: list[str]) -> list[tuple[str, str, str]]:
    """``(ODS code, Organization id, name)`` of each recipient, in order, once each: an ODS code names one
    configured organisation, a role every active configured organisation that has it. UnknownRecipient for
    anything else (a role nobody has included)."""
    by_role: dict[str, list[tuple[str, str, str]]] | None = None
    out: dict[str, tuple[str, str, str]] = {}
    for recipient in recipients:
        if recipient in ROLES:
            if by_role is None:
                by_role = {}
                for stored in tx.list_current("Organization"):
                    if (found := _configured(stored.resource)) is not None:
                        for role in _roles(stored.resource):
                            by_role.setdefault(role, []).append(found)
            matches = by_role.get(recipient, [])
            if not matches:
                raise UnknownRecipient(f"no configured organisation has the role {recipient}")
            for found in matches:
                out.setdefault(found[0], found)
            continue
        if not isinstance(recipient, str) or not _ODS.fullmatch(recipient):
            raise UnknownRecipient("a recipient must be a configured ODS code or a role")
        stored_org = tx.read("Organization", organization_id(recipient))
        found = _configured(stored_org.resource) if stored_org is not None else None
        if found is None:
            raise UnknownRecipient(f"no configured organisation has the ODS code {recipient}")
        out.setdefault(found[0], found)
    return list(out.values())


def _configured(resource: dict[str, Any]) -> tuple[str, str, str] | None:
    if resource.get("meta", {}).get("source") != CONFIG_SOURCE or resource.get("active") is not True:
        return None
    ods = next((i.get("value") for i in resource.get("identifier", ()) if i.get("system") == ODS_SYSTEM),
               None)
    return None if ods is None else (ods, resource["id"], resource.get("name", ""))


def _roles(resource: dict[str, Any]) -> list[str]:
    return [c["code"] for t in resource.get("type", ()) for c in t.get("coding", ())
            if c.get("system") == ROLE_SYSTEM and isinstance(c.get("code"), str)]
