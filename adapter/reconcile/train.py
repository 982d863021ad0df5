"""Estimate the Fellegi-Sunter model from labelled person records and write a versioned model file
(``carethread linkage train``).

Input: the labelled CSV of ``carethread linkage evaluate`` (``true_person_id`` is used here).  Supervised
estimation, no Splink needed:

* m per level: the share of each level among all pairs of records of the same true person;
* u per level: the share among random pairs of records of different persons (``random_pairs`` of them);
* both over non-null comparisons, with add-half smoothing so no level has a zero probability;
* prior: true pairs / all pairs;
* term frequencies: each forename and surname's share of the records holding one (values seen at least
  ``tf_min_count`` times; rarer names get the smallest frequency kept);
* birth order: m/u fixed by hand (LINKAGE.md §5.1: it only exists on maternity twin rows, so the data
  cannot estimate it; agree about +1 bit, disagree about -5.6 bits; disagreement is also a cannot-link).

Pre-birth (unborn) records are left out: they are linked by rule, never scored.  Splink, when wanted for
unsupervised EM on unlabelled production data, can write the same m/u into this format offline; nothing
here imports it.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from adapter.reconcile.compare import COMPARISONS, FIELDS, NULL, levels
from adapter.reconcile.evaluate import COLUMNS, EvaluationError
from adapter.reconcile.model import FORMAT, Model
from adapter.reconcile.standardise import PersonRecord, standardise

__all__ = ["train", "HAND_FIXED", "DEFAULT_THRESHOLDS"]

HAND_FIXED: dict[str, dict[str, list[float]]] = {
    "birth_order": {"m": [0.99, 0.01], "u": [0.5, 0.5]},
}
DEFAULT_THRESHOLDS = {"auto_link_probability": 0.99, "review_probability": 0.5, "ambiguity_bits": 3.0,
                      "min_person_evidence_bits": 1.0}


def _read(path: Path) -> tuple[list[PersonRecord], list[str]]:
    recs: list[PersonRecord] = []
    truth: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        if tuple(next(reader, ())) != COLUMNS:
            raise EvaluationError(f"{path.name}: the header must be exactly {','.join(COLUMNS)}")
        for row in reader:
            if row:
                raw = dict(zip(COLUMNS, row))
                recs.append(standardise(raw))
                truth.append(raw["true_person_id"])
    return recs, truth


def _probabilities(counts: Counter[int], n_levels: int) -> list[float]:
    total = sum(counts[i] for i in range(n_levels)) + 0.5 * n_levels
    return [(counts[i] + 0.5) / total for i in range(n_levels)]


def train(csv_path: Path, out_path: Path, *, version: str, random_pairs: int = 1_500_000, seed: int = 0,
          thresholds: dict[str, float] | None = None, tf_min_count: int = 5,
          max_pairs_per_person: int = 45) -> dict[str, Any]:
    """Estimate the model from ``csv_path`` and write it to ``out_path``; returns the model dict.
    The written file is loaded back through :class:`Model` as a check."""
    recs, truth = _read(Path(csv_path))
    keep = [i for i, r in enumerate(recs) if not r.is_unborn]
    by_person: dict[str, list[int]] = {}
    for i in keep:
        by_person.setdefault(truth[i], []).append(i)
    n_fields = len(FIELDS)
    m_counts = [Counter[int]() for _ in range(n_fields)]
    u_counts = [Counter[int]() for _ in range(n_fields)]
    true_pairs = 0
    for idx in by_person.values():
        k = len(idx)
        true_pairs += k * (k - 1) // 2
        done = 0
        for a in range(k):
            for b in range(a + 1, k):
                if done >= max_pairs_per_person:
                    break
                for f, level in enumerate(levels(recs[idx[a]], recs[idx[b]])):
                    if level != NULL:
                        m_counts[f][level] += 1
                done += 1
    rng = random.Random(seed)
    n = len(keep)
    sampled = 0
    while sampled < random_pairs:
        i, j = keep[rng.randrange(n)], keep[rng.randrange(n)]
        if i == j or truth[i] == truth[j]:
            continue
        for f, level in enumerate(levels(recs[i], recs[j])):
            if level != NULL:
                u_counts[f][level] += 1
        sampled += 1
    comparisons = []
    for f, name in enumerate(FIELDS):
        labels = COMPARISONS[name]
        if name in HAND_FIXED:
            ms, us = HAND_FIXED[name]["m"], HAND_FIXED[name]["u"]
        else:
            ms, us = _probabilities(m_counts[f], len(labels)), _probabilities(u_counts[f], len(labels))
        comparisons.append({
            "name": name,
            "levels": [{"label": lab, "m": round(m, 8), "u": float(f"{u:.6g}")} for lab, m, u in zip(labels, ms, us)],
            "pairs": {"matched": sum(m_counts[f].values()), "random": sum(u_counts[f].values())},
        })
    tf: dict[str, Any] = {}
    for name, attr in (("given_name", "given_raw"), ("family_name", "family")):
        values = Counter(getattr(recs[i], attr) for i in keep if getattr(recs[i], attr))
        total = sum(values.values())
        table = {v: c / total for v, c in values.items() if c >= tf_min_count}
        floor = min(table.values()) if table else 1e-5
        tf[name] = {"adjustment": 1.0, "default": float(f"{floor:.6g}"),
                    "values": {v: float(f"{p:.6g}") for v, p in sorted(table.items())}}
    all_pairs = n * (n - 1) // 2
    model = {
        "format": FORMAT,
        "version": version,
        "description": "Fellegi-Sunter model for Carethread identity matching: m from labelled matched pairs, "
                       "u from random non-matched pairs, term frequencies from the training records.",
        "trained": {"file": Path(csv_path).name, "records": len(recs), "scored_records": n,
                    "true_pairs": true_pairs, "random_pairs": random_pairs, "seed": seed,
                    "date": date.today().isoformat(), "hand_fixed": sorted(HAND_FIXED)},
        "prior": {"match_probability": float(f"{true_pairs / all_pairs:.6g}")},
        "thresholds": dict(thresholds or DEFAULT_THRESHOLDS),
        "comparisons": comparisons,
        "term_frequencies": tf,
    }
    Model.from_dict(model, source=str(out_path))          # refuse to write a file that would not load
    Path(out_path).write_text(json.dumps(model, indent=1) + "\n")
    return model


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="Estimate the identity-matching model from labelled records")
    ap.add_argument("csv", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--version", required=True)
    ap.add_argument("--random-pairs", type=int, default=1_500_000)
    ap.add_argument("--auto", type=float, default=DEFAULT_THRESHOLDS["auto_link_probability"])
    ap.add_argument("--review", type=float, default=DEFAULT_THRESHOLDS["review_probability"])
    a = ap.parse_args()
    m = train(a.csv, a.out, version=a.version, random_pairs=a.random_pairs,
              thresholds={**DEFAULT_THRESHOLDS, "auto_link_probability": a.auto, "review_probability": a.review})
    print(json.dumps({"version": m["version"], "prior": m["prior"], "trained": m["trained"]}))
