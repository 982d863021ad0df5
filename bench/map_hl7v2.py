"""Mapping engine benchmark: µs per message for map_message alone (parsing excluded).

    python bench/map_hl7v2.py [-n 5000] [--repeat 5] [--overlay DIR]

Messages come from bench/synthetic.py (ADT A01/A04/A08 with NK1 x2, PV1, some safeguarding OBX;
SIU S12/S26), parsed once up front.  Each pass maps every message with a fresh MappingContext; the
transforms' value caches are cleared before each pass, so repeats do not flatter the figure.  The best
pass is reported.  Figures vary on shared machines: compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic import messages  # noqa: E402

from adapter.inbound.hl7v2 import read_message  # noqa: E402
from adapter.mapping import transforms  # noqa: E402
from adapter.mapping.codes import DEFAULT_MAPPINGS_DIR  # noqa: E402
from adapter.mapping.engine import MappingContext, map_message  # noqa: E402
from adapter.mapping.loader import load_mappings  # noqa: E402

_CACHED = (transforms._date, transforms._datetime, transforms.is_valid_nhs_number, transforms._quote,
           transforms._utc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="messages per pass")
    parser.add_argument("--repeat", type=int, default=5, help="passes (the best is reported)")
    parser.add_argument("--overlay", type=Path, help="a site mapping overlay directory")
    args = parser.parse_args()

    t0 = time.perf_counter()
    mset = load_mappings(DEFAULT_MAPPINGS_DIR, args.overlay)
    load_ms = (time.perf_counter() - t0) * 1000
    tz = ZoneInfo("Europe/London")
    parsed = [read_message(m, accepted_processing_ids=frozenset("PTD")) for m in messages(args.n)]
    best = float("inf")
    resources = 0
    for _ in range(args.repeat):
        for fn in _CACHED:
            fn.cache_clear()
        resources = 0
        start = time.perf_counter()
        for msg, header in parsed:
            ctx = MappingContext("maternity", header.sending_facility, header.control_id, tz, mset.codes,
                                 lambda _id: None, mappings=mset)
            resources += len(map_message(msg, header, ctx).resources)
        best = min(best, time.perf_counter() - start)
    print(f"load mappings: {load_ms:.0f} ms ({len(mset.files)} files)")
    print(f"map_message: {best / len(parsed) * 1e6:.1f} µs/message  ({len(parsed)} messages, "
          f"{resources / len(parsed):.1f} resources/message, best of {args.repeat})")


if __name__ == "__main__":
    main()
