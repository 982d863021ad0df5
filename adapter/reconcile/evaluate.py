"""``carethread linkage evaluate FILE``: run labelled person records through the live matching path and
score the identities it builds against the ground truth.

The CSV has exactly the header ``COLUMNS``.  Records are standardised and decided one at a time in file
order, exactly as live records are (:func:`adapter.reconcile.engine.decide`, then the record joins the
linked identity, or starts a new one for ``new`` and ``review``; a review counts as reviewed; a link's
``merge`` identities are folded into the linked one).
``true_person_id`` is read only for scoring.  Pairwise precision and recall count a pair of records as
linked when they end in the same identity; they come from cluster contingency counts, not pair lists.

Output: human-readable lines, then one JSON line with exactly the keys ``precision``, ``recall``,
``mixed_identities``, ``review_rate``, ``latency_ms_p50`` and ``latency_ms_p99`` (latency is the
``decide`` call per record, candidate retrieval included).  No names, identifiers or values are printed.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from adapter.reconcile.engine import CandidateIndex, InMemoryIndex, decide
from adapter.reconcile.model import Model, load_model
from adapter.reconcile.standardise import SOURCES, standardise

__all__ = ["COLUMNS", "EvaluationError", "evaluate", "pairwise", "percentile"]

COLUMNS = (
    "record_id", "source", "local_id", "nhs_number", "nhs_number_status", "given_name", "family_name",
    "sex", "birth_date", "due_date", "postcode", "gp_practice", "mother_local_id", "mother_nhs_number",
    "true_person_id",
)
JSON_KEYS = ("precision", "recall", "mixed_identities", "review_rate", "latency_ms_p50", "latency_ms_p99")


class EvaluationError(ValueError):
    """The evaluation file is not a labelled person-record CSV this command can read."""


def _c2(n: int) -> int:
    return n * (n - 1) // 2


def pairwise(cells: Counter[tuple[str, str]]) -> tuple[float, float, int, int, int]:
    """(precision, recall, true positive pairs, predicted pairs, true pairs) from contingency counts
    {(identity, true person): records}."""
    ident: Counter[str] = Counter()
    person: Counter[str] = Counter()
    tp = 0
    for (i, p), n in cells.items():
        ident[i] += n
        person[p] += n
        tp += _c2(n)
    pred = sum(_c2(n) for n in ident.values())
    true = sum(_c2(n) for n in person.values())
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    return precision, recall, tp, pred, true


def _find(parent: dict[str, str], x: str) -> str:
    root = x
    while root in parent:
        root = parent[root]
    while x != root:                        # path compression
        parent[x], x = root, parent[x]
    return root


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def _rows(path: Path) -> Any:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise EvaluationError(f"{path.name}: empty file, expected the header {','.join(COLUMNS)}")
        if tuple(h.strip() for h in header) != COLUMNS:
            raise EvaluationError(
                f"{path.name}: the header must be exactly {','.join(COLUMNS)} "
                f"(got {len(header)} columns{'' if len(header) != len(COLUMNS) else ' in another order or spelling'})")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(COLUMNS):
                raise EvaluationError(f"{path.name}: line {line_no} has {len(row)} fields, not {len(COLUMNS)}")
            yield line_no, dict(zip(COLUMNS, row))


def evaluate(csv_path: Path, *, index_factory: Callable[[], CandidateIndex] = InMemoryIndex,
             out: Callable[[str], Any] = print, model: Model | None = None,
             as_of: date | None = None) -> dict[str, Any]:
    """Ingest the labelled CSV in file order through the matching path and return (and print) the
    figures.  The returned dict holds the six JSON keys plus details (counts, rules, twins mixed)."""
    path = Path(csv_path)
    model = model or load_model()
    index = index_factory()
    cells: Counter[tuple[str, str]] = Counter()
    rules: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    latencies: list[float] = []
    person_dates: dict[str, set[date]] = {}
    person_mothers: dict[str, set[str]] = {}
    next_id = 0
    merges = 0
    parent: dict[str, str] = {}              # identity merges (Decision.merge), union-find
    record_identity: list[tuple[str, str]] = []
    seen_ids: set[str] = set()
    started = time.perf_counter()
    clock = time.perf_counter_ns
    for line_no, row in _rows(path):
        rid, truth, source = row["record_id"].strip(), row["true_person_id"].strip(), row["source"].strip()
        if not rid or not truth:
            raise EvaluationError(f"{path.name}: line {line_no}: record_id and true_person_id are required")
        if rid in seen_ids:
            raise EvaluationError(f"{path.name}: line {line_no}: record_id repeats an earlier line")
        seen_ids.add(rid)
        if source not in SOURCES:
            raise EvaluationError(f"{path.name}: line {line_no}: source must be one of {', '.join(SOURCES)}")
        rec = standardise(row)
        t0 = clock()
        decision = decide(rec, index, model, as_of=as_of)
        latencies.append((clock() - t0) / 1e6)
        if decision.action == "link" and decision.identity_id is not None:
            iid = decision.identity_id
        else:
            next_id += 1
            iid = f"I{next_id}"
        index.add(iid, rec)
        if decision.merge:
            merge = getattr(index, "merge", None)
            for other in decision.merge:
                if merge is not None:
                    merge(iid, other)
                parent[_find(parent, other)] = _find(parent, iid)
            merges += len(decision.merge)
        record_identity.append((iid, truth))
        rules[decision.rule] += 1
        actions[decision.action] += 1
        if rec.birth_date is not None:
            person_dates.setdefault(truth, set()).add(rec.birth_date)
        for m in rec.mother_ids:
            person_mothers.setdefault(truth, set()).add(m)
    elapsed = time.perf_counter() - started
    for iid, truth in record_identity:
        cells[(_find(parent, iid), truth)] += 1
    n = sum(actions.values())
    if n == 0:
        raise EvaluationError(f"{path.name}: no records")

    precision, recall, tp, pred, true = pairwise(cells)
    persons_of: dict[str, list[str]] = {}
    for (i, p) in cells:
        persons_of.setdefault(i, []).append(p)
    mixed = [ps for ps in persons_of.values() if len(ps) > 1]
    twins_mixed = 0
    for ps in mixed:
        found = False
        for a in range(len(ps)):
            for b in range(a + 1, len(ps)):
                pa, pb = ps[a], ps[b]
                if (person_dates.get(pa, set()) & person_dates.get(pb, set())
                        and person_mothers.get(pa, set()) & person_mothers.get(pb, set())):
                    found = True
        twins_mixed += found
    n_persons = len({p for (_, p) in cells})
    split = Counter(p for (_, p) in cells)
    persons_split = sum(1 for c in split.values() if c > 1)
    latencies.sort()
    result: dict[str, Any] = {
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "mixed_identities": len(mixed),
        "review_rate": round(actions["review"] / n, 6),
        "latency_ms_p50": round(percentile(latencies, 50), 4),
        "latency_ms_p99": round(percentile(latencies, 99), 4),
    }
    details = {
        "records": n, "identities": len(persons_of), "true_persons": n_persons,
        "true_persons_split": persons_split, "twin_mixed_identities": twins_mixed,
        "true_pairs": true, "predicted_pairs": pred, "true_positive_pairs": tp,
        "false_pairs": pred - tp, "missed_pairs": true - tp, "actions": dict(actions), "merges": merges,
        "rules": dict(rules.most_common()), "seconds": round(elapsed, 2), "model_version": model.version,
    }
    out(f"records {n}, identities {len(persons_of)}, true persons {n_persons} (model {model.version})")
    out(f"pairwise precision {precision:.6f}  recall {recall:.6f}  "
        f"(true pairs {true}, predicted {pred}, false {pred - tp}, missed {true - tp})")
    out(f"identities holding more than one true person {len(mixed)} (twins together: {twins_mixed}); "
        f"true persons split over identities {persons_split}")
    out(f"decisions {dict(actions)}; review rate {actions['review'] / n:.4%}; identity merges {merges}")
    out("rules " + ", ".join(f"{k} {v}" for k, v in rules.most_common()))
    out(f"decide latency ms p50 {result['latency_ms_p50']} p99 {result['latency_ms_p99']}; "
        f"{n / elapsed:,.0f} records/s overall")
    out(json.dumps(result))
    return {**result, **details}
