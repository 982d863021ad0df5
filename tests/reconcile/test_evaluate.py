from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from adapter.reconcile.evaluate import COLUMNS, EvaluationError, evaluate, pairwise, percentile
from bench.linkage_synthetic import REF, write_dataset
from tests.reconcile.conftest import AS_OF, nhs

KEYS = ["precision", "recall", "mixed_identities", "review_rate", "latency_ms_p50", "latency_ms_p99"]


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for i, r in enumerate(rows, 1):
            w.writerow({c: "" for c in COLUMNS} | {"record_id": f"R{i}", "local_id": f"L{i}"} | r)
    return path


def test_pairwise_from_contingency_counts() -> None:
    cells = Counter({("I1", "P1"): 2, ("I1", "P2"): 1, ("I2", "P2"): 1})
    precision, recall, tp, pred, true = pairwise(cells)
    assert (tp, pred, true) == (1, 3, 2)
    assert precision == pytest.approx(1 / 3) and recall == pytest.approx(1 / 2)
    assert pairwise(Counter({("I1", "P1"): 1})) [:2] == (1.0, 1.0)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_hand_made_csv_known_answers(tmp_path: Path) -> None:
    home = {"family_name": "EXAMPLE", "postcode": "XA1 2BC", "gp_practice": "Y01011"}
    n1 = nhs(101)
    rows = [
        # P1: three records, the NHS number on two; the third is a day/month swap without one
        {"source": "gp", "nhs_number": n1, "nhs_number_status": "01", "given_name": "Ava", "sex": "female",
         "birth_date": "2001-07-08", "true_person_id": "P1", **home},
        {"source": "health-visiting", "nhs_number": n1, "given_name": "AVA", "sex": "female",
         "birth_date": "2001-07-08", "true_person_id": "P1", **home},
        {"source": "maternity", "given_name": "Ava", "sex": "female", "birth_date": "2001-08-07",
         "true_person_id": "P1", **home},
        # P2 and P3: twins, same everything but forename -> apart
        {"source": "gp", "given_name": "Alice", "sex": "female", "birth_date": "2020-02-03", "true_person_id": "P2",
         **home},
        {"source": "gp", "given_name": "Bella", "sex": "female", "birth_date": "2020-02-03", "true_person_id": "P3",
         **home},
        # P2 again, from health visiting
        {"source": "health-visiting", "given_name": "ALICE", "sex": "female", "birth_date": "2020-02-03",
         "true_person_id": "P2", **home},
        # P4: someone else entirely
        {"source": "gp", "given_name": "Zed", "family_name": "OTHER", "sex": "male", "birth_date": "1970-01-01",
         "postcode": "XK9 9ZZ", "true_person_id": "P4"},
    ]
    lines: list[str] = []
    result = evaluate(write(tmp_path / "hand.csv", rows), out=lines.append, as_of=AS_OF)
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    assert result["true_pairs"] == 4 and result["predicted_pairs"] == 4
    assert result["mixed_identities"] == 0 and result["review_rate"] == 0.0
    assert result["identities"] == 4 and result["twin_mixed_identities"] == 0
    last = json.loads(lines[-1])
    assert list(last) == KEYS
    assert not any("Ava" in line or "EXAMPLE" in line or n1 in line for line in lines), "no values printed"


def test_a_wrong_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("record_id,source,nhs\nR1,gp,\n")
    with pytest.raises(EvaluationError, match="header must be exactly"):
        evaluate(path, out=lambda s: None)
    path.write_text(",".join(COLUMNS) + "\nR1,pharmacy" + "," * (len(COLUMNS) - 3) + ",P1\n")
    with pytest.raises(EvaluationError, match="source must be one of"):
        evaluate(path, out=lambda s: None)


def test_small_generated_set(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.csv"
    stats = write_dataset(path, 3_000, seed=5)
    assert stats["records"] >= 3_000 and stats["source:maternity"] and stats["source:health-visiting"]
    with path.open() as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == COLUMNS
    again = tmp_path / "again.csv"
    write_dataset(again, 3_000, seed=5)
    assert again.read_bytes() == path.read_bytes(), "deterministic per seed"
    lines: list[str] = []
    result = evaluate(path, out=lines.append, as_of=REF)
    assert list(json.loads(lines[-1])) == KEYS
    assert result["precision"] >= 0.99 and result["recall"] >= 0.9 and result["review_rate"] <= 0.03
    assert result["twin_mixed_identities"] == 0
