"""FHIR R4 validation cost per resource: fhir.resources R4B ``model_validate`` vs adapter.fhir_validate.

    python bench/validate_r4.py [-n 3000] [--repeat 3]

Maps -n synthetic maternity messages (bench/synthetic.py) to FHIR once, then times, per resource:
  full      get_fhir_model_class(rt).model_validate(resource)
  memo-cold validate_r4_resource from an empty cache (first resource of each shape fully validated)
  memo-warm validate_r4_resource again over the same resources (every shape cached)
Best of --repeat runs.  Figures vary on shared machines: quote the ratio from one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402
from synthetic import messages  # noqa: E402

from adapter.fhir_validate import cache_info, clear_cache, validate_r4_resource  # noqa: E402
from adapter.inbound.hl7v2 import read_message  # noqa: E402
from adapter.mapping.codes import load_code_tables  # noqa: E402
from adapter.mapping import MappingContext, map_message  # noqa: E402


def mapped_resources(n: int) -> list[dict[str, Any]]:
    codes = load_code_tables()
    out: list[dict[str, Any]] = []
    for raw in messages(n):
        msg, header = read_message(raw, accepted_processing_ids=frozenset("PTD"))
        ctx = MappingContext("maternity", header.sending_facility, header.control_id, ZoneInfo("Europe/London"),
                             codes, lambda _: None)
        out += map_message(msg, header, ctx).resources
    return out


def full(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def best_us(resources: list[dict[str, Any]], validate: Callable[[dict[str, Any]], None], repeat: int,
            before: Callable[[], None] = lambda: None) -> float:
    best = float("inf")
    for _ in range(repeat):
        before()
        t0 = time.perf_counter()
        for resource in resources:
            validate(resource)
        best = min(best, time.perf_counter() - t0)
    return best / len(resources) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="synthetic messages to map")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    resources = mapped_resources(args.n)
    kinds: dict[str, int] = {}
    for r in resources:
        kinds[r["resourceType"]] = kinds.get(r["resourceType"], 0) + 1
    print(f"{len(resources)} resources from {args.n} messages: {kinds}")
    full_us = best_us(resources, full, args.repeat)
    cold_us = best_us(resources, validate_r4_resource, args.repeat, before=clear_cache)
    info = cache_info()
    warm_us = best_us(resources, validate_r4_resource, args.repeat)
    print(f"full model_validate : {full_us:7.1f} µs/resource")
    print(f"memoized, cold cache: {cold_us:7.1f} µs/resource  ({full_us / cold_us:.1f}x; {info['shapes']} shapes, "
          f"{info['full']} full validations)")
    print(f"memoized, warm cache: {warm_us:7.1f} µs/resource  ({full_us / warm_us:.1f}x)")
    per_msg = len(resources) / args.n
    print(f"validation budget per message (~{per_msg:.1f} resources): full {full_us * per_msg:.0f} µs, "
          f"memoized {warm_us * per_msg:.0f} µs")


if __name__ == "__main__":
    main()
