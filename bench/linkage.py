"""Identity-matching benchmark: the figures of ``carethread linkage evaluate`` on a synthetic labelled set,
and matching latency with 200,000 persons already in the store.

    python bench/linkage.py [--n 100000] [--seed 0] [--persons 200000] [--probe 2000] [--keep DIR]

1. Writes ``--n`` labelled records (bench/linkage_synthetic.py, three sources, twins, unborn records,
   placeholder names, typos ...) and runs adapter.reconcile.evaluate on them in file order through the
   live matching path: pairwise precision and recall, identities holding more than one true person,
   review rate, decide latency p50/p99.  The last line of that step is the evaluate JSON.
2. Latency probe: writes a second set (another seed) large enough to hold ``--persons`` true persons,
   loads all but its last ``--probe`` records into the store's identity tables under their true identities
   (a store of that many persons, loaded without timing), then times ``decide`` (candidate retrieval
   included) on the held-out records, each stored after its decision as live.

Targets (issue 5): precision >= 0.9995, recall >= 0.97, review <= 2%, no identity holding two twins,
median matching latency < 1 ms with 200,000 persons in the store.  Shared machines vary: quote p50.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from adapter.identity import TxIndex  # noqa: E402
from adapter.reconcile.engine import decide  # noqa: E402
from adapter.store.sqlite import SqliteStore  # noqa: E402
from adapter.reconcile.evaluate import COLUMNS, evaluate, percentile  # noqa: E402
from adapter.reconcile.model import load_model  # noqa: E402
from adapter.reconcile.standardise import standardise  # noqa: E402
from linkage_synthetic import REF, write_dataset  # noqa: E402


def latency_probe(folder: Path, *, persons: int, probe: int, seed: int) -> dict[str, float]:
    path = folder / "linkage-store.csv"
    n_records = int(persons * 1.75) + probe
    stats = write_dataset(path, n_records, seed)
    model = load_model()
    store = SqliteStore(folder / "linkage-store.sqlite3", synchronous="OFF", writer_cache_mb=256)
    tx_context = store.transaction()
    index = TxIndex(tx_context.__enter__())  # the store's blocking tables, as live matching uses them
    held: list = []
    loaded_persons: set[str] = set()
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = list(reader)
    cut = len(rows) - probe
    t0 = time.perf_counter()
    for row in rows[:cut]:
        raw = dict(zip(COLUMNS, row))
        index.add(raw["true_person_id"], standardise(raw))
        loaded_persons.add(raw["true_person_id"])
    load_s = time.perf_counter() - t0
    held = [standardise(dict(zip(COLUMNS, row))) for row in rows[cut:]]
    times: list[float] = []
    for i, rec in enumerate(held):
        t = time.perf_counter_ns()
        d = decide(rec, index, model, as_of=REF)
        times.append((time.perf_counter_ns() - t) / 1e6)
        index.add(d.identity_id if d.action == "link" and d.identity_id else f"probe-{i}", rec)
    times.sort()
    tx_context.__exit__(None, None, None)
    store.close()
    return {"persons_in_store": len(loaded_persons), "records_in_store": cut, "generated_persons": stats["persons"],
            "probe_records": len(held), "load_seconds": round(load_s, 1),
            "latency_ms_p50": round(percentile(times, 50), 4), "latency_ms_p99": round(percentile(times, 99), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records in the evaluation set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--persons", type=int, default=200_000, help="persons preloaded for the latency probe (0: skip)")
    ap.add_argument("--probe", type=int, default=2_000, help="records timed against the preloaded store")
    ap.add_argument("--keep", type=Path, help="write the CSVs here instead of a temporary folder")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "linkage-eval.csv"
        t0 = time.perf_counter()
        stats = write_dataset(path, a.n, a.seed)
        print(f"# synthetic set: {stats['records']} records, {stats['persons']} persons, seed {a.seed}, "
              f"written in {time.perf_counter() - t0:.1f}s")
        print("# contents: " + json.dumps({k: v for k, v in stats.items() if k not in ("records", "persons", "seed")}))
        # the figures of `carethread linkage evaluate` (the store's blocking tables, as live records)
        run = subprocess.run([sys.executable, "-m", "adapter.cli", "linkage", "evaluate", "--as-of", REF.isoformat(),
                              str(path)], cwd=ROOT, capture_output=True, text=True, check=True)
        print(run.stdout, end="")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        details = evaluate(path, as_of=REF, out=lambda _line: None)  # in memory: the twins-apart count
        result["twin_mixed_identities"] = details["twin_mixed_identities"]
        if a.persons:
            probe = latency_probe(folder, persons=a.persons, probe=a.probe, seed=a.seed + 1000)
            print(f"# latency with {probe['persons_in_store']} persons ({probe['records_in_store']} records) "
                  f"in the store: decide p50 {probe['latency_ms_p50']} ms, p99 {probe['latency_ms_p99']} ms "
                  f"over {probe['probe_records']} new records")
            print(json.dumps({"store_persons": probe["persons_in_store"],
                              "store_latency_ms_p50": probe["latency_ms_p50"],
                              "store_latency_ms_p99": probe["latency_ms_p99"]}))
        targets = {"precision": result["precision"] >= 0.9995, "recall": result["recall"] >= 0.97,
                   "review_rate": result["review_rate"] <= 0.02, "twins_apart": result["twin_mixed_identities"] == 0}
        print("# targets " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
        print(json.dumps({k: result[k] for k in ("precision", "recall", "mixed_identities", "review_rate",
                                                 "latency_ms_p50", "latency_ms_p99")}))


if __name__ == "__main__":
    main()
