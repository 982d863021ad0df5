"""carethread rules run-daily, and the service's hourly task."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapter.cli import main


def test_rules_run_daily_on_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "run-daily", "--db", str(tmp_path / "x.db"), "--today", "2026-06-01"]) == 0
    assert "0 identities evaluated as of 2026-06-01" in capsys.readouterr().out


def test_the_daily_task_runs_at_start_and_stops_when_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    import adapter.service as service

    calls: list[object] = []
    monkeypatch.setattr(service, "run_daily", lambda store, rules, now: calls.append(now) or 0)

    class P:
        store = rules = None

        @staticmethod
        def clock() -> str:
            return "now"

    async def run() -> None:
        task = asyncio.create_task(service.daily_rules(P(), interval=0.01))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert len(calls) >= 2 and calls[0] == "now"
