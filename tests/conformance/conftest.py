"""Shared fixtures: one ProfileSet per session (loading takes ~0.2 s)."""

from __future__ import annotations

import pytest

from adapter.conformance import ProfileSet, load_profiles


@pytest.fixture(scope="session")
def profiles() -> ProfileSet:
    return load_profiles()
