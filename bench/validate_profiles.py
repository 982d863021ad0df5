"""Profile validation cost per resource: adapter.conformance over mapper output.

    python bench/validate_profiles.py [-n 3000] [--repeat 3] [--profile ours|declared]

Maps -n synthetic maternity messages (bench/synthetic.py) to FHIR once, loads profiles/ once, then times
``ProfileSet.validate`` per resource against Carethread's profile for each resourceType (``ours``, the
default: what the ingest path will use) or against the profiles the resources declare in meta.profile
(``declared``: UK Core today).  Best of --repeat runs; also prints the per-type figures and the load time.
Figures vary on shared machines: quote the ratio to bench/validate_r4.py from one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from validate_r4 import mapped_resources

from adapter.conformance import ProfileSet, load_profiles


def best_us(profiles: ProfileSet, resources: list[tuple[dict[str, Any], str | None]], repeat: int) -> tuple[float, int]:
    best, errors = float("inf"), 0
    for _ in range(repeat):
        errors = 0
        t0 = time.perf_counter()
        for resource, profile in resources:
            for issue in profiles.validate(resource, profile):
                errors += issue.severity == "error"
        best = min(best, time.perf_counter() - t0)
    return best / max(1, len(resources)) * 1e6, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="synthetic messages to map")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", choices=("ours", "declared"), default="ours")
    args = parser.parse_args()
    t0 = time.perf_counter()
    profiles = load_profiles()
    load_ms = (time.perf_counter() - t0) * 1000
    resources = mapped_resources(args.n)
    pairs = [(r, profiles.default_profile(r["resourceType"]) if args.profile == "ours" else None) for r in resources]
    kinds: dict[str, list[tuple[dict[str, Any], str | None]]] = {}
    for pair in pairs:
        kinds.setdefault(pair[0]["resourceType"], []).append(pair)
    print(f"load_profiles: {load_ms:.0f} ms; {len(resources)} resources from {args.n} messages "
          f"({ {k: len(v) for k, v in kinds.items()} })")
    us, errors = best_us(profiles, pairs, args.repeat)
    print(f"validate ({args.profile} profiles): {us:6.1f} µs/resource, {errors} errors")
    for kind, subset in sorted(kinds.items()):
        k_us, _ = best_us(profiles, subset, args.repeat)
        print(f"  {kind:<14} {k_us:6.1f} µs")
    per_msg = len(resources) / args.n
    print(f"per message (~{per_msg:.1f} resources): {us * per_msg:.0f} µs")


if __name__ == "__main__":
    main()
