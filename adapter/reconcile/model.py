"""The Fellegi-Sunter model: loaded from a versioned JSON file and checked before any matching.

File format (``fs-model-v1.json`` beside this module is the shipped one; ``train.py`` writes others)::

    {
      "format": "carethread-fellegi-sunter",
      "version": "1.0.0",                      # recorded with every decision
      "description": "...", "trained": {...},  # provenance, free form
      "prior": {"match_probability": 1.6e-05}, # P(two random records are the same person)
      "thresholds": {"auto_link_probability": 0.99, "review_probability": 0.5, "ambiguity_bits": 3.0,
                     "min_person_evidence_bits": 10.0},
      "comparisons": [                         # exactly compare.COMPARISONS, in that order
        {"name": "nhs_number", "levels": [{"label": "agree-verified", "m": 0.7, "u": 1e-06}, ...]},
        ...
      ],
      "term_frequencies": {                    # exact-level adjustment (Splink's formula)
        "given_name": {"adjustment": 1.0, "default": 2e-05, "values": {"OLIVER": 0.011, ...}},
        "family_name": {...}
      }
    }

A level's weight is log2(m/u).  On a term-frequency adjusted exact level the weight for value v is
log2(m/u) + adjustment * (log2 u - log2 max(tf(v), default)): a rare shared name counts for more than a
common one.  The null level (a value missing on either side) weighs 0 and is not in the file.

``min_person_evidence_bits``: a probabilistic auto-link also needs this much weight from the fields that
belong to the person rather than the household (NHS number, date of birth, forename, sex, birth order):
surname, postcode, GP practice and mother are shared by siblings, so on their own they only reach review.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter.reconcile.compare import COMPARISONS, FIELDS, TF_COMPARISONS

__all__ = ["Model", "ModelError", "DEFAULT_MODEL", "load_model"]

DEFAULT_MODEL = Path(__file__).with_name("fs-model-v1.json")
FORMAT = "carethread-fellegi-sunter"


class ModelError(ValueError):
    """The model file is missing, malformed, or does not match the comparisons in compare.py."""


@dataclass(frozen=True)
class Model:
    version: str
    prior_probability: float
    auto_link_probability: float
    review_probability: float
    ambiguity_bits: float
    min_person_bits: float
    m: tuple[tuple[float, ...], ...]
    u: tuple[tuple[float, ...], ...]
    tf_adjustment: dict[str, float] = field(default_factory=dict)
    tf_default: dict[str, float] = field(default_factory=dict)
    tf_values: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""
    # derived
    prior_weight: float = 0.0
    auto_link_weight: float = 0.0
    review_weight: float = 0.0
    weight_tables: tuple[tuple[float, ...], ...] = ()
    _tf_bonus: tuple[dict[str, float], ...] = ()
    _tf_bonus_default: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        def logit2(p: float) -> float:
            return math.log2(p / (1 - p))

        set_ = object.__setattr__
        set_(self, "prior_weight", logit2(self.prior_probability))
        set_(self, "auto_link_weight", logit2(self.auto_link_probability))
        set_(self, "review_weight", logit2(self.review_probability))
        set_(self, "weight_tables", tuple(
            tuple(math.log2(m / u) for m, u in zip(ms, us)) for ms, us in zip(self.m, self.u)))
        bonus: list[dict[str, float]] = []
        default: list[float] = []
        for i, name in enumerate(FIELDS):
            if name in TF_COMPARISONS and name in self.tf_values:
                adj, floor = self.tf_adjustment[name], self.tf_default[name]
                log_u = math.log2(self.u[i][0])
                bonus.append({v: adj * (log_u - math.log2(max(tf, floor))) for v, tf in self.tf_values[name].items()})
                default.append(adj * (log_u - math.log2(floor)))
            else:
                bonus.append({})
                default.append(0.0)
        set_(self, "_tf_bonus", tuple(bonus))
        set_(self, "_tf_bonus_default", tuple(default))

    def tf_bonus(self, index: int, value: str | None) -> float:
        """Term-frequency adjustment (bits) for an exact agreement on ``value`` in comparison ``index``."""
        if value is None:
            return 0.0
        return self._tf_bonus[index].get(value, self._tf_bonus_default[index])

    def level_weight(self, comparison: str, label: str) -> float:
        i = FIELDS.index(comparison)
        return self.weight_tables[i][COMPARISONS[comparison].index(label)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "") -> Model:
        where = source or "model"
        if data.get("format") != FORMAT:
            raise ModelError(f"{where}: format must be {FORMAT!r}")
        version = data.get("version")
        if not isinstance(version, str) or not version:
            raise ModelError(f"{where}: a non-empty 'version' is required")
        try:
            prior = float(data["prior"]["match_probability"])
            th = data["thresholds"]
            auto, review, bits = (float(th["auto_link_probability"]), float(th["review_probability"]),
                                  float(th["ambiguity_bits"]))
            person_bits = float(th["min_person_evidence_bits"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: prior and thresholds are required ({exc})") from exc
        if not 0 < prior < 1:
            raise ModelError(f"{where}: prior.match_probability must be in (0, 1)")
        if not 0 < review < auto < 1:
            raise ModelError(f"{where}: thresholds need 0 < review_probability < auto_link_probability < 1")
        if bits < 0:
            raise ModelError(f"{where}: ambiguity_bits must be >= 0")
        comps = data.get("comparisons")
        if not isinstance(comps, list) or [c.get("name") for c in comps] != list(FIELDS):
            raise ModelError(f"{where}: comparisons must be exactly {list(FIELDS)} in that order")
        ms: list[tuple[float, ...]] = []
        us: list[tuple[float, ...]] = []
        for comp in comps:
            name = comp["name"]
            labels = [lv.get("label") for lv in comp.get("levels", [])]
            if labels != list(COMPARISONS[name]):
                raise ModelError(f"{where}: {name} levels must be {list(COMPARISONS[name])}, not {labels}")
            m_row, u_row = [], []
            for lv in comp["levels"]:
                m, u = lv.get("m"), lv.get("u")
                if not all(isinstance(x, (int, float)) and 0 < x <= 1 for x in (m, u)):
                    raise ModelError(f"{where}: {name}/{lv['label']}: m and u must be in (0, 1]")
                m_row.append(float(m))
                u_row.append(float(u))
            for label, row in (("m", m_row), ("u", u_row)):
                if abs(sum(row) - 1) > 0.02:
                    raise ModelError(f"{where}: {name}: {label} over the non-null levels sums to {sum(row):.4f}, not 1")
            ms.append(tuple(m_row))
            us.append(tuple(u_row))
        adj: dict[str, float] = {}
        floor: dict[str, float] = {}
        values: dict[str, dict[str, float]] = {}
        for name, spec in (data.get("term_frequencies") or {}).items():
            if name not in TF_COMPARISONS:
                raise ModelError(f"{where}: term frequencies are supported for {TF_COMPARISONS}, not {name!r}")
            try:
                adj[name], floor[name] = float(spec["adjustment"]), float(spec["default"])
                values[name] = {str(k): float(v) for k, v in spec["values"].items()}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ModelError(f"{where}: term_frequencies.{name} needs adjustment, default, values") from exc
            if not 0 <= adj[name] <= 1 or not 0 < floor[name] < 1:
                raise ModelError(f"{where}: term_frequencies.{name}: adjustment in [0,1], default in (0,1)")
            if any(not 0 < v <= 1 for v in values[name].values()):
                raise ModelError(f"{where}: term_frequencies.{name}: frequencies must be in (0, 1]")
        return cls(version=version, prior_probability=prior, auto_link_probability=auto,
                   review_probability=review, ambiguity_bits=bits, min_person_bits=person_bits,
                   m=tuple(ms), u=tuple(us),
                   tf_adjustment=adj, tf_default=floor, tf_values=values, source=source)

    def with_thresholds(self, *, auto_link_probability: float | None = None,
                        review_probability: float | None = None) -> Model:
        """A copy with other thresholds (for tuning); same version string plus a suffix."""
        auto = auto_link_probability or self.auto_link_probability
        review = review_probability or self.review_probability
        return Model(version=f"{self.version}+t{auto:g}/{review:g}", prior_probability=self.prior_probability,
                     auto_link_probability=auto, review_probability=review, ambiguity_bits=self.ambiguity_bits,
                     min_person_bits=self.min_person_bits, m=self.m, u=self.u, tf_adjustment=self.tf_adjustment, tf_default=self.tf_default,
                     tf_values=self.tf_values, source=self.source)


def load_model(path: Path | str | None = None) -> Model:
    """Load and check a model file (default: the shipped ``fs-model-v1.json``)."""
    p = Path(path) if path else DEFAULT_MODEL
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p.name}: cannot be read as JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{p.name}: the top level must be an object")
    return Model.from_dict(data, source=p.name)
