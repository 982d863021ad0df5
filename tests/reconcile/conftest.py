"""Shared builders for identity-matching tests: synthetic people only (999-range NHS numbers)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from adapter.reconcile.evaluate import COLUMNS
from adapter.reconcile.model import Model, load_model
from adapter.reconcile.standardise import PersonRecord, standardise

AS_OF = date(2026, 6, 30)


def nhs(seed: int) -> str:
    """A Modulus 11 valid test-range NHS number."""
    n = seed
    while True:
        body = f"999{n % 1_000_000:06d}"
        check = 11 - sum(int(d) * w for d, w in zip(body, range(10, 1, -1))) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return body + str(check)
        n += 1


_counter = iter(range(1, 10**9))


def row(**fields: Any) -> dict[str, str]:
    base = {c: "" for c in COLUMNS}
    k = next(_counter)
    base.update(record_id=f"T{k}", source="gp", local_id=f"L{k}", true_person_id="P")
    base.update({key: str(v) for key, v in fields.items()})
    return base


def rec(**fields: Any) -> PersonRecord:
    return standardise(row(**fields))


@pytest.fixture(scope="session")
def model() -> Model:
    return load_model()
