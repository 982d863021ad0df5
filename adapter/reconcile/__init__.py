"""Identity reconciliation (issue 5): one identity per person across maternity, health visiting and GP.

Layers (LINKAGE.md §1): :mod:`standardise` -> :mod:`rules` (cannot-link, deterministic, relational) ->
:mod:`compare` + :mod:`model` (Fellegi-Sunter scoring from a versioned model file) -> :mod:`engine`
(the decision over a candidate index).  :mod:`evaluate` scores the live path on labelled records;
:mod:`train` writes a model file from them.  Nothing here logs names, identifiers or values.
"""

from adapter.reconcile.engine import (
    Candidate,
    CandidateIndex,
    Decision,
    InMemoryIndex,
    MergingIndex,
    blocking_keys,
    decide,
    ingest,
)
from adapter.reconcile.model import Model, ModelError, load_model
from adapter.reconcile.standardise import PersonRecord, from_patient, standardise

__all__ = [
    "Candidate",
    "CandidateIndex",
    "Decision",
    "InMemoryIndex",
    "MergingIndex",
    "Model",
    "ModelError",
    "PersonRecord",
    "blocking_keys",
    "decide",
    "from_patient",
    "ingest",
    "load_model",
    "standardise",
]
