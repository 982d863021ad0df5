"""End-to-end HL7 v2 ingest benchmark: parse, map, validate, commit.

    python bench/ingest_hl7v2.py [-n 5000] [--mllp-n 2000] [--rate 200]

1. Bulk file ingest, in process on one core: messages/s through Pipeline.process_many (the path
   `carethread ingest` uses) into a fresh SQLite file.
2. MLLP: starts `carethread serve` on free ports with a fresh database (synchronous=FULL, every ACK
   after its commit), sends messages paced at --rate messages/s over one connection, and prints the
   p50/p99 ACK latency; then the closed-loop maximum over 4 connections.
3. For reference, hl7apy's parse_message on the same messages (what the hot path avoids).
Figures vary on shared machines: quote ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic import messages  # noqa: E402

from adapter.fhir import validate_r4  # noqa: E402
from adapter.inbound.mllp import MLLPClient  # noqa: E402
from adapter.notify import configure_organisations  # noqa: E402
from adapter.pipeline import Pipeline  # noqa: E402
from adapter.settings import Settings  # noqa: E402
from adapter.store.sqlite import SqliteStore  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_bulk(msgs: list[bytes], tmp: Path, validation: str = "full") -> float:
    """validation: full (R4B structure + our profiles: what ships), r4 (structure only) or none,
    to show what each validation layer costs."""
    db = tmp / f"bulk-{validation}.sqlite3"
    store = SqliteStore(db, synchronous="NORMAL", writer_cache_mb=64)  # as `carethread ingest`
    pipeline = Pipeline(store, Settings(db=db))
    configure_organisations(store, pipeline.settings, check=pipeline.check_resource)  # as `carethread ingest`
    if validation == "r4":
        pipeline.check_resource = validate_r4  # type: ignore[method-assign]
    elif validation == "none":
        pipeline.check_resource = lambda resource: None  # type: ignore[method-assign]
    t0 = time.perf_counter()
    statuses: dict[str, int] = {}
    for processed in pipeline.process_many(msgs):
        statuses[processed.outcome.status] = statuses.get(processed.outcome.status, 0) + 1
    elapsed = time.perf_counter() - t0
    store.close()
    rate = len(msgs) / elapsed
    print(f"bulk ingest (validation={validation}): {len(msgs)} messages in {elapsed:.2f} s = {rate:,.0f} "
          f"messages/s  outcomes={statuses}")
    return rate


def _percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench_mllp(msgs: list[bytes], tmp: Path, rate: float) -> None:
    http_port, mllp_port = _free_port(), _free_port()
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "serve", "--http-port", str(http_port), "--mllp-port", str(mllp_port),
         "--db", str(tmp / "mllp.sqlite3")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise SystemExit(f"server did not start: {line!r}")
        latencies: list[float] = []
        with MLLPClient("127.0.0.1", mllp_port) as client:
            interval = 1.0 / rate
            start = time.perf_counter()
            for i, m in enumerate(msgs):
                due = start + i * interval
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                t = time.perf_counter()
                ack = client.send(m)
                latencies.append((time.perf_counter() - t) * 1000)
                assert b"MSA|AA" in ack, ack[:200]
            elapsed = time.perf_counter() - start
        print(f"mllp paced at {rate:.0f}/s: {len(msgs)} messages in {elapsed:.2f} s; ACK latency "
              f"p50 {_percentile(latencies, 50):.2f} ms, p99 {_percentile(latencies, 99):.2f} ms, "
              f"max {max(latencies):.2f} ms (synchronous=FULL)")

        # closed loop, 4 connections, fresh control ids
        fresh = [m.replace(b"|B", b"|C", 1) for m in msgs]
        chunks = [fresh[i::4] for i in range(4)]
        done: list[int] = []

        def run(chunk: list[bytes]) -> None:
            with MLLPClient("127.0.0.1", mllp_port) as c:
                for m in chunk:
                    c.send(m)
            done.append(len(chunk))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        print(f"mllp closed loop, 4 connections: {sum(done)} messages in {elapsed:.2f} s = "
              f"{sum(done) / elapsed:,.0f} messages/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_hl7apy(msgs: list[bytes]) -> None:
    from hl7apy.parser import parse_message

    sample = [m.decode() for m in msgs[:200]]
    t0 = time.perf_counter()
    for m in sample:
        parse_message(m, find_groups=False)
    elapsed = time.perf_counter() - t0
    print(f"reference: hl7apy parse_message alone: {len(sample) / elapsed:,.0f} messages/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000, help="messages for the bulk run")
    ap.add_argument("--mllp-n", type=int, default=2000, help="messages for the paced MLLP run")
    ap.add_argument("--rate", type=float, default=200.0, help="paced MLLP rate, messages/s")
    ap.add_argument("--skip-mllp", action="store_true")
    ap.add_argument("--layers", action="store_true", help="also run bulk with less validation, to cost each layer")
    args = ap.parse_args()
    msgs = list(messages(args.n))
    segments = statistics.mean(m.count(b"\r") for m in msgs)
    print(f"{len(msgs)} synthetic messages, mean {statistics.mean(len(m) for m in msgs):.0f} bytes, "
          f"{segments:.1f} segments")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        full = bench_bulk(msgs, tmp, "full")
        if args.layers:
            r4 = bench_bulk(msgs, tmp, "r4")
            bare = bench_bulk(msgs, tmp, "none")
            print(f"validation cost: structure+profiles keep {full / bare:.0%} of the unvalidated rate "
                  f"(structure alone {r4 / bare:.0%})")
        if not args.skip_mllp:
            bench_mllp(msgs[: args.mllp_n], tmp, args.rate)
    bench_hl7apy(msgs)


if __name__ == "__main__":
    main()
