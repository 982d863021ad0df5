"""The safeguarding rules' declarations: ``mappings/rules/safeguarding.yaml`` (shipped) and an optional site
overlay (setting ``rules``), checked at start-up.

Each rule is keyed by its stable id (a code of CodeSystem/safeguarding-rule) and carries a ``description`` and
its parameters. Python implements a closed set of rule kinds, one per id (``SCHEMA`` below: each parameter's
type and whether it is required). An unknown rule id or parameter, a missing one, or a value of the wrong type
raises ConfigError naming the file and line. The overlay replaces parameters one at a time; a rule absent from
the overlay keeps the shipped parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adapter.errors import ConfigError

__all__ = ["RuleConfig", "RuleSet", "load_rules", "SHIPPED", "SCHEMA"]

SHIPPED = Path(__file__).resolve().parents[2] / "mappings" / "rules" / "safeguarding.yaml"

_STR_LIST = "list[str]"
_INT = "int"
_STR = "str"
_STR_MAP = "dict[str,str]"
_PRIORITY = "priority"
_RECIPIENTS = "recipients"

# rule id -> parameter -> type (every parameter is required in the shipped file; an overlay may omit any)
SCHEMA: dict[str, dict[str, str]] = {
    "continuity-past-16": {"child_flags": _STR_MAP, "retention_months": _INT, "adult_age": _INT},
    "adult-setting-presentation": {"min_age": _INT, "max_age": _INT, "adult_services": _STR_LIST,
                                   "adult_locations": _STR_LIST, "adult_sources": _STR_LIST,
                                   "recipients": _RECIPIENTS, "priority": _PRIORITY},
    "at-18": {"history_codes": _STR_LIST, "lookback_days": _INT},
    "pregnancy-under-18-or-history": {"max_age": _INT, "min_age": _INT, "services": _STR_LIST,
                                      "locations": _STR_LIST, "codes": _STR_LIST, "appointment_types": _STR_LIST,
                                      "episode_days": _INT, "flag_code": _STR, "recipients": _RECIPIENTS,
                                      "priority": _PRIORITY},
    "birth": {"carry": _STR_MAP, "window_days": _INT, "recipients": _RECIPIENTS, "priority": _PRIORITY},
    "was-not-brought-pattern": {"count": _INT, "window_days": _INT, "flagged_count": _INT, "adult_age": _INT,
                                "recipients": _RECIPIENTS, "priority": _PRIORITY},
    "young-father": {"relationships": _STR_LIST, "max_age": _INT, "recipients": _RECIPIENTS,
                     "priority": _PRIORITY},
    "change-in-household": {"relationships": _STR_LIST, "recipients": _RECIPIENTS, "priority": _PRIORITY},
    "flag-closure": {"contact_months": _INT, "ended_within_days": _INT, "source_roles": _STR_MAP,
                     "exclude_rules": _STR_LIST, "priority": _PRIORITY},
    "handover-gap": {"days": _INT, "newborn_days": _INT, "discharge_sources": _STR_LIST,
                     "health_visiting_sources": _STR_LIST, "health_visiting_services": _STR_LIST,
                     "recipients": _RECIPIENTS, "priority": _PRIORITY},
}
_CHILD_FLAG_ENDS = ("at-18", "plan-end")
_PRIORITIES = ("routine", "urgent", "asap", "stat")
_ROLES = ("gp-practice", "health-visiting", "maternity-safeguarding", "childrens-social-care", "safeguarding-team")


@dataclass(frozen=True, slots=True)
class RuleConfig:
    id: str
    description: str
    params: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: dict[str, RuleConfig]
    files: tuple[str, ...]

    def __getitem__(self, rule_id: str) -> RuleConfig:
        return self.rules[rule_id]


class _LineLoader(yaml.SafeLoader):
    """Keeps each mapping key's line (``__lines__``: key -> 1-based line) for messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    data = loader.construct_mapping(node, deep=True)
    lines = {loader.construct_object(k, deep=True): k.start_mark.line + 1 for k, _ in node.value}
    data["__lines__"] = lines
    data["__line__"] = node.start_mark.line + 1
    return data


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the rules file ({exc.strerror})", location=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML", location=where) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a rules file is a mapping with `rules:`", location=f"{path}:1")
    return data


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in ("__lines__", "__line__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _check_value(rule_id: str, name: str, kind: str, value: Any, where: str) -> Any:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{where}: rule {rule_id} parameter {name} must be {what}", location=where)

    value = _clean(value)
    if kind == _INT:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad("a whole number >= 0")
        return value
    if kind == _STR:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise bad("text")
        return str(value)
    if kind in (_STR_LIST, _RECIPIENTS):
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                  for v in value):
            raise bad("a list of text values")
        items = [str(v) for v in value]
        if kind == _RECIPIENTS:
            if not items:
                raise bad("a non-empty list of recipients")
            for item in items:
                if item not in _ROLES and not item.isalnum():
                    raise bad(f"roles ({', '.join(_ROLES)}) or ODS codes")
        return items
    if kind == _STR_MAP:
        if not isinstance(value, dict) or not all(isinstance(v, (str, int)) for v in value.values()):
            raise bad("a mapping of text to text")
        out = {str(k): str(v) for k, v in value.items()}
        if rule_id == "continuity-past-16" and name == "child_flags":
            for code, ends in out.items():
                if ends not in _CHILD_FLAG_ENDS:
                    raise bad(f"a mapping of flag code to {' or '.join(_CHILD_FLAG_ENDS)} ({code})")
        return out
    if kind == _PRIORITY:
        if value not in _PRIORITIES:
            raise bad(f"one of {', '.join(_PRIORITIES)}")
        return value
    raise AssertionError(kind)  # pragma: no cover


def _rules_of(path: Path, data: dict[str, Any], *, shipped: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    lines = data.get("__lines__", {})
    for key in data:
        if key not in ("version", "rules", "__lines__", "__line__"):
            where = f"{path}:{lines.get(key, 1)}"
            raise ConfigError(f"{where}: unknown key {key!r} (a rules file has version and rules)", location=where)
    rules = data.get("rules")
    if not isinstance(rules, dict):
        where = f"{path}:{lines.get('rules', 1)}"
        raise ConfigError(f"{where}: `rules:` must be a mapping of rule id to parameters", location=where)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    rule_lines = rules.get("__lines__", {})
    for rule_id, body in rules.items():
        if rule_id in ("__lines__", "__line__"):
            continue
        where = f"{path}:{rule_lines.get(rule_id, 1)}"
        if rule_id not in SCHEMA:
            raise ConfigError(f"{where}: unknown rule id {rule_id!r} (known: {', '.join(SCHEMA)})", location=where)
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: rule {rule_id} must be a mapping of parameters", location=where)
        params: dict[str, Any] = {}
        plines = body.get("__lines__", {})
        description = ""
        for name, value in body.items():
            if name in ("__lines__", "__line__"):
                continue
            pwhere = f"{path}:{plines.get(name, rule_lines.get(rule_id, 1))}"
            if name == "description":
                if not isinstance(value, str):
                    raise ConfigError(f"{pwhere}: rule {rule_id} description must be text", location=pwhere)
                description = value
                continue
            kind = SCHEMA[rule_id].get(name)
            if kind is None:
                raise ConfigError(f"{pwhere}: unknown parameter {name!r} of rule {rule_id} "
                                  f"(known: {', '.join(SCHEMA[rule_id])})", location=pwhere)
            params[name] = _check_value(rule_id, name, kind, value, pwhere)
        if shipped:
            missing = [n for n in SCHEMA[rule_id] if n not in params]
            if missing:
                raise ConfigError(f"{where}: rule {rule_id} lacks parameter(s) {', '.join(missing)}", location=where)
        out[rule_id] = (description, params)
    if shipped:
        missing_rules = [r for r in SCHEMA if r not in out]
        if missing_rules:
            where = f"{path}:{lines.get('rules', 1)}"
            raise ConfigError(f"{where}: rules not declared: {', '.join(missing_rules)}", location=where)
    return out


def load_rules(overlay: Path | None = None, *, shipped: Path = SHIPPED) -> RuleSet:
    """The shipped rules with the site overlay's parameters over them; ConfigError (file:line) if wrong."""
    base = _rules_of(shipped, _read(shipped), shipped=True)
    files = [str(shipped)]
    if overlay is not None:
        for rule_id, (description, params) in _rules_of(overlay, _read(overlay), shipped=False).items():
            old_description, old = base[rule_id]
            base[rule_id] = (description or old_description, {**old, **params})
        files.append(str(overlay))
    return RuleSet({rid: RuleConfig(rid, d, p) for rid, (d, p) in base.items()}, tuple(files))
