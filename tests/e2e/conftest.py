"""A real `carethread serve` process on free ports with its own database, shared by the e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    proc: subprocess.Popen[str]
    http: str
    mllp_port: int
    db: Path
    ready_line: str


def start_service(tmp: Path, command: str = "serve", *extra: str) -> Service:
    http_port, mllp_port = free_port(), free_port()
    db = tmp / "carethread.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", command, "--host", "127.0.0.1", "--http-port", str(http_port),
         "--mllp-port", str(mllp_port), "--db", str(db), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"service exited before ready: {lines} {err[-2000:]}")
        lines.append(line)
        if " ready: " in line:
            break
    return Service(proc, f"http://127.0.0.1:{http_port}", mllp_port, db, line)


def stop_service(service: Service) -> int:
    service.proc.send_signal(signal.SIGTERM)
    try:
        code = service.proc.wait(timeout=15)
    finally:
        for stream in (service.proc.stdout, service.proc.stderr):
            if stream:
                stream.close()
    return code


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("serve"))
    yield svc
    assert stop_service(svc) == 0
