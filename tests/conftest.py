"""Suite-wide options: ``pytest --update-golden`` rewrites the golden expected files (tests/golden/)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/**/*.expected.json (and *.issues.json) from the current mapper; "
                          "review the JSON diff before committing")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
