"""Health visiting export and GP bundle ingest benchmark: rows/s, bundles/s and peak memory.

    python bench/ingest_sources.py [--rows 100000] [--bundles 500] [--only hv|gp]

1. Health visiting: writes a synthetic export (bench/hv_synthetic.py) of about --rows rows, then
   ingests it through Pipeline.ingest_export (the path `carethread ingest --source health-visiting`
   takes) into a fresh SQLite file, in a child process, and prints rows/s and that process's peak
   RSS.  It does the same for an export a tenth the size: memory flat as the export grows means the
   two peaks are close (the export is streamed, never loaded whole) once SQLite's writer page cache
   (--writer-cache-mb, 64 MB as `carethread ingest`) has filled; a small cache shows it sooner.
2. GP: --bundles synthetic GP Connect STU3 bundles (bench/gp_synthetic.py) through
   Pipeline.process_bundle, one transaction each with synchronous=FULL as over HTTP, bundles/s and
   peak RSS.
Figures vary on shared machines: quote ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_hv(folder: Path, db: Path, cache_mb: int = 64) -> dict:
    from adapter.inbound.export import open_export
    from adapter.pipeline import Pipeline
    from adapter.settings import Settings
    from adapter.store.sqlite import SqliteStore

    store = SqliteStore(db, synchronous="NORMAL", writer_cache_mb=cache_mb)  # 64: as `carethread ingest`
    pipeline = Pipeline(store, Settings(db=db))
    base = _peak_mb()
    statuses: dict[str, int] = {}
    t0 = time.perf_counter()
    for result in pipeline.ingest_export(open_export(folder)):
        statuses[result.outcome.status] = statuses.get(result.outcome.status, 0) + 1
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    again = sum(1 for _ in pipeline.ingest_export(open_export(folder)))
    reingest = time.perf_counter() - t1
    store.close()
    rows = sum(statuses.values())
    return {"rows": rows, "statuses": statuses, "rows_per_s": rows / elapsed, "peak_mb": _peak_mb(),
            "peak_after_start_mb": _peak_mb() - base, "reingest_rows_per_s": again / reingest}


def child_gp(n: int, db: Path) -> dict:
    from gp_synthetic import make_bundle

    from adapter.pipeline import Pipeline
    from adapter.settings import Settings
    from adapter.store.sqlite import SqliteStore

    store = SqliteStore(db, synchronous="FULL")
    pipeline = Pipeline(store, Settings(db=db))
    bundles = [make_bundle(i) for i in range(n)]
    statuses: dict[str, int] = {}
    t0 = time.perf_counter()
    for payload in bundles:
        result = pipeline.process_bundle(payload, channel="file")
        statuses[result.outcome.status] = statuses.get(result.outcome.status, 0) + 1
    elapsed = time.perf_counter() - t0
    store.close()
    return {"bundles": n, "statuses": statuses, "bundles_per_s": n / elapsed,
            "entries_per_bundle": round(sum(len(json.loads(b).get("entry", [])) for b in bundles) / n, 1),
            "peak_mb": _peak_mb()}


def _run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="about this many export rows")
    parser.add_argument("--bundles", type=int, default=500)
    parser.add_argument("--only", choices=("hv", "gp"))
    parser.add_argument("--writer-cache-mb", type=int, default=64,
                        help="SQLite writer cache (64 as `carethread ingest`; RSS grows until it is full)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (child_hv(Path(rest[0]), Path(rest[1]), int(rest[2])) if kind == "hv"
                  else child_gp(int(rest[0]), Path(rest[1])))
        print(json.dumps(result))
        return
    from hv_synthetic import write_export

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.only in (None, "hv"):
            # rows per person, measured on a small export, sizes the big one
            probe = write_export(tmp / "probe", 100)
            per_person = sum(probe.values()) / 100
            for rows in (args.rows // 10, args.rows):
                folder = tmp / f"hv-{rows}"
                counts = write_export(folder, max(1, round(rows / per_person)))
                r = _run_child("hv", str(folder), str(tmp / f"hv-{rows}.sqlite3"), str(args.writer_cache_mb))
                print(f"health visiting: {r['rows']:>7} rows ({', '.join(f'{k} {v}' for k, v in counts.items())})"
                      f"  {r['rows_per_s']:8.0f} rows/s  peak RSS {r['peak_mb']:.0f} MB"
                      f"  (re-ingest unchanged: {r['reingest_rows_per_s']:.0f} rows/s)  statuses {r['statuses']}")
        if args.only in (None, "gp"):
            r = _run_child("gp", str(args.bundles), str(tmp / "gp.sqlite3"))
            print(f"gp: {r['bundles']} bundles of ~{r['entries_per_bundle']} entries  {r['bundles_per_s']:.1f} bundles/s"
                  f"  peak RSS {r['peak_mb']:.0f} MB  statuses {r['statuses']}")


if __name__ == "__main__":
    main()
