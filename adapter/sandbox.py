"""The sandbox's synthetic maternity scenario (no real patient data anywhere).

A 17-year-old mother with a child protection plan flag (OBX, SNOMED 342191000000101), the
16-year-old father in NK1, the newborn (PID-21 mother's NHS number, NK1 mother and father), a
follow-up booked for the baby and the baby's no-show (SIU^S26: was not brought).  Messages go
through the same pipeline as every inbound message, so what the API shows is what it made.
"""

from __future__ import annotations

from pathlib import Path

from adapter.inbound.er7 import split_batch
from adapter.pipeline import Pipeline

__all__ = ["SCENARIO", "SAMPLES_DIR", "seed"]

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "sandbox" / "samples" / "hl7v2"
SCENARIO = (
    "ADT_A04_young_mother.hl7",
    "ADT_A01_newborn.hl7",
    "SIU_S12_newborn_review.hl7",
    "SIU_S26_newborn_no_show.hl7",
)


def seed(pipeline: Pipeline) -> list[str]:
    """Load the scenario; returns human-readable lines (file names and outcomes, no patient data)."""
    lines = []
    for name in SCENARIO:
        for payload in split_batch((SAMPLES_DIR / name).read_bytes()):
            processed = pipeline.process(payload, channel="file")
            lines.append(f"seeded {name}: {processed.outcome.status}")
    return lines
