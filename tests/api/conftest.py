"""Fixtures for the API tests.

``client`` talks to an app over a store seeded once per session with ``seed.SEED`` (tests only read it);
``fresh_store`` / ``fresh_client`` give a test its own empty store to write to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from adapter.api import create_app
from adapter.store.sqlite import SqliteStore

from .seed import SEED

BASE = "http://test"


def client_for(app: object, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=BASE)


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path_factory.mktemp("api") / "seeded.db", synchronous="OFF") as store:
        with store.transaction() as tx:
            for resource in SEED:
                tx.put(resource)
        yield store


@pytest.fixture
async def client(seeded_store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(seeded_store)) as opened:
        yield opened


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "fresh.db", synchronous="OFF") as store:
        yield store


@pytest.fixture
async def fresh_client(fresh_store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(fresh_store)) as opened:
        yield opened
