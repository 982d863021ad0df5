"""``carethread validate FILE... [--profile URL]``: validate FHIR R4 JSON resources or Bundles.

Prints one OperationOutcome (JSON) on stdout covering every file: each issue's expression locates it inside
its file (``Bundle.entry[2].resource.name[0]`` for a Bundle entry) and its diagnostics start with the file
name.  Returns 0 when no issue is an error, else 1.  A broken ``profiles/`` folder raises ConfigError.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from adapter.conformance.validator import (
    DEFAULT_PROFILES_DIR,
    ProfileSet,
    ValidationIssue,
    load_profiles,
    outcome,
)

__all__ = ["run_validate", "validate_document"]


def _relocate(issue: ValidationIssue, resource_type: str | None, prefix: str, file: str) -> ValidationIssue:
    expression = issue.expression
    if prefix:
        if resource_type and (expression == resource_type or expression.startswith(resource_type + ".")):
            expression = prefix + expression[len(resource_type):]
        elif expression == "Resource" or not expression:
            expression = prefix
        else:  # a contained resource or another location that already names its own root
            expression = f"{prefix}.{expression}"
    return ValidationIssue(issue.severity, issue.code, expression, f"{file}: {issue.diagnostics}")


def validate_document(profiles: ProfileSet, document: Any, profile: str | None, file: str) -> list[ValidationIssue]:
    """Issues for one parsed JSON document: a resource, or a Bundle whose entries are validated one by one."""
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        entries = document.get("entry")
        issues: list[ValidationIssue] = []
        if entries is not None and not isinstance(entries, list):
            return [ValidationIssue("error", "structure", "Bundle.entry", f"{file}: expected a JSON array")]
        for i, entry in enumerate(entries or ()):
            prefix = f"Bundle.entry[{i}].resource"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                issues.append(ValidationIssue("error", "required", prefix, f"{file}: entry has no resource"))
                continue
            rtype = resource.get("resourceType")
            for issue in profiles.validate(resource, profile):
                issues.append(_relocate(issue, rtype if isinstance(rtype, str) else None, prefix, file))
        return issues
    if not isinstance(document, dict):
        return [ValidationIssue("error", "structure", "Resource", f"{file}: not a JSON object")]
    return [_relocate(i, None, "", file) for i in profiles.validate(document, profile)]


def run_validate(paths: list[Path], profile: str | None, profiles_dir: Path | None = None,
                 out: TextIO | None = None) -> int:
    """Validate each file; print one OperationOutcome; 0 if no issue is an error, else 1."""
    profiles = load_profiles(profiles_dir or DEFAULT_PROFILES_DIR)
    issues: list[ValidationIssue] = []
    for path in paths:
        name = path.name
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            issues.append(ValidationIssue("error", "not-found", "Resource", f"{name}: file not found"))
            continue
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            issues.append(ValidationIssue("error", "structure", "Resource",
                                          f"{name}: not a readable JSON file ({type(exc).__name__})"))
            continue
        issues += validate_document(profiles, document, profile, name)
    (out or sys.stdout).write(json.dumps(outcome(issues), indent=2) + "\n")
    return 1 if any(i.severity == "error" for i in issues) else 0
