"""The transforms the health visiting export needs (ISO 8601 dates and times, as CSDS-style exports
write them), one test each.

They are added to the registry of tested transforms of test_transforms.py (TESTED) when this file is
collected, so its every-transform-is-tested check holds when both files run.  pytest imports test files
by their rootdir-relative name (``mapping.test_transforms``: tests/ has no __init__.py), so that is the
module whose TESTED counts; ``tests.mapping.test_transforms`` would be a second copy.
"""

from __future__ import annotations

import pytest

from adapter.errors import MappingError
try:
    from mapping.test_transforms import TESTED, Env, call  # the module pytest collects
except ImportError:  # imported outside pytest
    from tests.mapping.test_transforms import TESTED, Env, call

TESTED.update({"iso_date", "iso_time", "iso_instant"})


def test_iso_date() -> None:
    assert call("iso_date", "2026-02-20") == "2026-02-20"
    assert call("iso_date", "2026-02-20T00:00:00") == "2026-02-20"  # a time part is ignored, never shifted
    assert call("iso_date", "2026-02-20 23:30:00+01:00") == "2026-02-20"
    for bad in ("20/02/2026", "20260220", "2026-2-20", "2026-02-20x", "2026-02-20T"):
        with pytest.raises(MappingError) as info:
            call("iso_date", bad)
        assert info.value.code == "invalid-date" and info.value.location is None and bad not in str(info.value)
    with pytest.raises(MappingError, match="calendar"):
        call("iso_date", "2026-02-30")


def test_iso_time() -> None:
    assert call("iso_time", "09:05") == "09:05:00"
    assert call("iso_time", "23:59:59") == "23:59:59"
    for bad in ("24:00", "9:05", "09:60", "09:05:61", "0905", "09:05pm"):
        with pytest.raises(MappingError) as info:
            call("iso_time", bad)
        assert info.value.code == "invalid-date" and bad not in str(info.value)


def test_iso_instant() -> None:
    assert call("iso_instant", "2026-01-14T10:00") == "2026-01-14T10:00:00+00:00"  # GMT
    assert call("iso_instant", "2026-04-16 11:00:00") == "2026-04-16T11:00:00+01:00"  # BST, space separator
    assert call("iso_instant", "2026-04-16T11:00:00.250Z") == "2026-04-16T11:00:00+00:00"
    assert call("iso_instant", "2026-04-16T11:00:00-0230") == "2026-04-16T11:00:00-02:30"
    for bad in ("2026-04-16", "16/04/2026 11:00", "2026-04-16T11", "2026-04-16T11:00+15:00", "2026-02-30T10:00"):
        with pytest.raises(MappingError) as info:
            call("iso_instant", bad)
        assert info.value.code == "invalid-date" and bad not in str(info.value)
    assert Env().warnings == []
