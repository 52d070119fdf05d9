"""Distribution drift of new data against a reference (the data the champion was trained on).

The reference is kept as a compact profile, stored with each registered model version:
quantile bins and a value sample per numeric feature, category frequencies per categorical one.
Each feature of the new data is then compared with a standard test for its type:

- numeric: population stability index over the reference's decile bins, and the two-sample
  Kolmogorov-Smirnov statistic against the reference sample;
- categorical: population stability index over the categories, and a chi-squared test.

A feature has drifted when its PSI, or for numeric features its KS statistic, passes the
configured threshold. All figures are reported whether or not anything drifted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from aiinfra.project.config import DriftConfig
from aiinfra.project.schema import Schema

PROFILE_VERSION = 1
SAMPLE_SIZE = 2000
_EPS = 1e-4  # floor on a bin's share, so an empty bin does not make PSI infinite


def build_profile(frame: pd.DataFrame, schema: Schema, seed: int = 0) -> dict[str, Any]:
    """Statistics of ``frame`` that later data is compared with (JSON-serializable): each
    feature's, and apart from them the label's (its range or classes)."""
    features = {f.name: _profile(frame[f.name], f.kind, seed) for f in schema.features}
    label_kind = "numeric" if schema.task == "regression" else "categorical"
    return {
        "version": PROFILE_VERSION,
        "rows": len(frame),
        "features": features,
        "label": {schema.label: _profile(frame[schema.label], label_kind, seed)},
    }


def _profile(column: pd.Series, kind: str, seed: int) -> dict[str, Any]:
    values = column.dropna()
    if kind != "numeric":
        counts = values.astype(str).value_counts(normalize=True)
        return {"kind": "categorical", "shares": counts.to_dict()}
    numeric = values.astype("float64")
    edges: np.ndarray = (
        np.unique(np.quantile(numeric, np.linspace(0, 1, 11))) if len(numeric) else np.empty(0)
    )
    sample = numeric.sample(min(SAMPLE_SIZE, len(numeric)), random_state=seed)
    return {
        "kind": "numeric",
        "edges": [float(e) for e in edges],
        "shares": _shares(numeric.to_numpy(), edges).tolist(),
        "sample": sample.round(6).tolist(),
        "mean": float(numeric.mean()) if len(numeric) else None,
    }


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each interior bin of ``edges`` (outer bins open-ended)."""
    if len(edges) < 2 or len(values) == 0:
        return np.ones(1)
    inner = edges[1:-1]
    bins = np.searchsorted(inner, values, side="right")
    return np.bincount(bins, minlength=len(inner) + 1) / len(values)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    test: str  # the statistics reported
    psi: float
    statistic: float  # KS statistic (numeric) or chi-squared (categorical)
    p_value: float
    drifted: bool
    detail: str


def compare(
    profile: dict[str, Any], frame: pd.DataFrame, config: DriftConfig
) -> list[FeatureDrift]:
    """Drift of each profiled feature present in ``frame``."""
    results = []
    for name, ref in profile["features"].items():
        if name not in frame:
            continue
        values = frame[name].dropna()
        if ref["kind"] == "numeric":
            results.append(_numeric(name, ref, values, config))
        else:
            results.append(_categorical(name, ref, values, config))
    return results


def _numeric(
    name: str, ref: dict[str, Any], values: pd.Series, config: DriftConfig
) -> FeatureDrift:
    numeric = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64")
    if len(numeric) == 0 or not ref["sample"]:
        return FeatureDrift(
            name, "psi+ks", float("nan"), float("nan"), float("nan"), False, "no values"
        )
    edges = np.asarray(ref["edges"])
    value = psi(np.asarray(ref["shares"]), _shares(numeric, edges))
    ks = stats.ks_2samp(numeric, np.asarray(ref["sample"]))
    drifted = value > config.psi_threshold or ks.statistic > config.ks_threshold
    mean = float(numeric.mean())
    detail = f"mean {ref['mean']:.4g} -> {mean:.4g}"
    return FeatureDrift(
        name, "psi+ks", value, float(ks.statistic), float(ks.pvalue), drifted, detail
    )


def _categorical(
    name: str, ref: dict[str, Any], values: pd.Series, config: DriftConfig
) -> FeatureDrift:
    counts = values.astype(str).value_counts()
    categories = sorted(set(ref["shares"]) | set(counts.index))
    expected = np.asarray([ref["shares"].get(c, 0.0) for c in categories])
    observed = np.asarray([counts.get(c, 0) for c in categories], dtype="float64")
    if observed.sum() == 0:
        return FeatureDrift(
            name, "psi+chi2", float("nan"), float("nan"), float("nan"), False, "no values"
        )
    value = psi(expected, observed / observed.sum())
    expected_counts = np.clip(expected, _EPS, None)
    expected_counts = expected_counts / expected_counts.sum() * observed.sum()
    chi2 = stats.chisquare(observed, expected_counts)
    new = sorted(set(counts.index) - set(ref["shares"]))
    detail = f"new categories: {', '.join(new[:5])}" if new else "same categories"
    drifted = value > config.psi_threshold
    return FeatureDrift(
        name, "psi+chi2", value, float(chi2.statistic), float(chi2.pvalue), drifted, detail
    )


def as_rows(results: list[FeatureDrift]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
