"""The transform the GP Connect mapping needs (FHIR date / dateTime -> instant), one test.

Added to the registry of tested transforms of test_transforms.py (TESTED) when this file is collected, as
test_transforms_hv.py does (pytest imports test files as ``mapping.test_transforms``: tests/ has no
__init__.py).
"""

from __future__ import annotations

import pytest

from adapter.errors import MappingError

try:
    from mapping.test_transforms import TESTED, call  # the module pytest collects
except ImportError:  # imported outside pytest
    from tests.mapping.test_transforms import TESTED, call

TESTED.add("fhir_instant")


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-07-05", "2024-07-05T00:00:00+01:00"),  # a GP record's date: that day's start, local time (BST)
    ("2024-01-05", "2024-01-05T00:00:00+00:00"),  # GMT in winter
    ("2024-03", "2024-03-01T00:00:00+00:00"),
    ("2024", "2024-01-01T00:00:00+00:00"),
    ("2024-07-05T10:20:00+01:00", "2024-07-05T10:20:00+01:00"),  # an offset is kept, never shifted
    ("2024-07-05T10:20:00Z", "2024-07-05T10:20:00+00:00"),
    ("2024-07-05T10:20:00.123-05:00", "2024-07-05T10:20:00.123-05:00"),
    ("2024-07-05T10:20", "2024-07-05T10:20:00+01:00"),  # no seconds, no offset: tolerated, local time
])
def test_fhir_instant(value: str, expected: str) -> None:
    assert call("fhir_instant", value) == expected


@pytest.mark.parametrize("bad", ["05/07/2024", "20240705", "2024-13-01", "2024-02-30", "2024-07-05T25:00:00Z",
                                 "2024-07-05 10:20", "yesterday"])
def test_fhir_instant_refuses_what_is_not_a_fhir_date(bad: str) -> None:
    with pytest.raises(MappingError) as info:
        call("fhir_instant", bad)
    assert info.value.code == "invalid-date" and info.value.location is None and bad not in str(info.value)
