"""Distribution drift: the one implementation the validation gate, ``retrain --if-drifted`` and
monitoring share.

The reference is a compact profile of the data a version was trained on, stored with the
version (``reference/profile.json``): per feature, the label and the model's own predictions,
either decile bins with their shares and a value sample (numeric values) or the share of each
value (categories, and numbers with few distinct values, such as a term in months).

New data is compared with it column by column, with two figures and one rule:

- the population stability index over the reference's bins (how far the shares moved);
- a two-sample test with its p-value and effect size: Kolmogorov-Smirnov for numeric values
  (effect: the KS statistic), chi-squared for the others (effect: total variation distance).

A column has drifted when its PSI passes ``drift.psi_threshold`` *and* its test rejects "same
distribution" at ``drift.p_value``. PSI alone flags the noise of a small sample; a p-value alone
flags differences too small to matter once there are thousands of rows. The test counts the
current rows as independent draws only as far as their values are distinct: a feature kept per
region and updated weekly repeats one value for every row of that region that week, so a week
of rows holds about one observation per region, not one per row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from aiinfra.project.schema import Schema

if TYPE_CHECKING:
    from aiinfra.project.config import DriftConfig

PROFILE_VERSION = 2
SAMPLE_SIZE = 2000
MAX_DISCRETE = 20  # numbers with at most this many distinct values are compared value by value
_EPS = 1e-4  # floor on a bin's share, so an empty bin does not make PSI infinite
Role = Literal["feature", "label", "prediction"]


def build_profile(
    frame: pd.DataFrame,
    schema: Schema,
    predictions: pd.Series | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Statistics of ``frame`` that later data is compared with (JSON-serializable): each
    feature's, the label's and, when given, the model's answers on those rows (``predictions``,
    named by the answer's field: ``probability``, ``predicted_class`` or ``value``)."""
    profile: dict[str, Any] = {
        "version": PROFILE_VERSION,
        "rows": len(frame),
        "features": {f.name: column_profile(frame[f.name], f.kind, seed) for f in schema.features},
        "label": {schema.label: column_profile(frame[schema.label], label_kind(schema), seed)},
    }
    if predictions is not None:
        kind = "numeric" if pd.api.types.is_numeric_dtype(predictions) else "categorical"
        profile["prediction"] = {str(predictions.name): column_profile(predictions, kind, seed)}
    return profile


def label_kind(schema: Schema) -> str:
    return "numeric" if schema.task == "regression" else "categorical"


def column_profile(column: pd.Series, kind: str, seed: int = 0) -> dict[str, Any]:
    values = column.dropna()
    if kind == "numeric":
        numeric = pd.to_numeric(values, errors="coerce").dropna().astype("float64")
        if numeric.nunique() > MAX_DISCRETE:
            return _numeric_profile(numeric, seed)
        return {"kind": "discrete", "shares": _value_shares(numeric.map(_number_key))}
    return {"kind": "categorical", "shares": _value_shares(values.astype(str))}


def _numeric_profile(numeric: pd.Series, seed: int) -> dict[str, Any]:
    edges = np.unique(np.quantile(numeric, np.linspace(0, 1, 11)))
    sample = numeric.sample(min(SAMPLE_SIZE, len(numeric)), random_state=seed)
    return {
        "kind": "numeric",
        "edges": [float(e) for e in edges],
        "shares": _bin_shares(numeric.to_numpy(), edges).tolist(),
        "sample": sample.round(6).tolist(),
        "mean": float(numeric.mean()),
    }


def _value_shares(values: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.value_counts(normalize=True).items()}


def _number_key(value: float) -> str:
    """How a number with few distinct values is named: 36.0 and 36 are the same value."""
    return f"{float(value):g}"


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each interior bin of ``edges`` (outer bins open-ended); all zero
    when there are no values."""
    if len(edges) < 2:
        return np.ones(1) if len(values) else np.zeros(1)
    if len(values) == 0:
        return np.zeros(len(edges) - 1)
    inner = edges[1:-1]
    bins = np.searchsorted(inner, values, side="right")
    return np.bincount(bins, minlength=len(inner) + 1) / len(values)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Histogram:
    """Shares of the reference and of the current data over the same bins, for a plot."""

    bins: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


@dataclass(frozen=True)
class FeatureDrift:
    """One column compared with its reference."""

    feature: str
    role: Role
    test: Literal["ks", "chi2"]
    psi: float
    effect: float  # KS statistic (numeric) or total variation distance (values)
    p_value: float
    rows: int  # current values compared
    effective_rows: int  # what the p-value counts as independent draws
    drifted: bool
    detail: str
    histogram: Histogram

    @property
    def effect_name(self) -> str:
        return "KS" if self.test == "ks" else "TVD"

    def describe(self) -> str:
        """One line: the figures the rule read."""
        return (
            f"PSI {self.psi:.3f}, {self.effect_name} {self.effect:.3f}, p={self.p_value:.2g} "
            f"({self.effective_rows} independent of {self.rows} rows); {self.detail}"
        )


def compare(
    profile: dict[str, Any],
    frame: pd.DataFrame,
    config: DriftConfig,
    roles: Sequence[Role] = ("feature", "label"),
) -> list[FeatureDrift]:
    """Drift of every profiled column of ``roles`` that ``frame`` has (features under their
    names, the label under its name, predictions under their answer's field name)."""
    sections = {"feature": "features", "label": "label", "prediction": "prediction"}
    results = []
    for role in roles:
        for name, reference in profile.get(sections[role], {}).items():
            if name in frame:
                results.append(compare_column(name, reference, frame[name], config, role))
    return results


def compare_column(
    name: str, reference: dict[str, Any], column: pd.Series, config: DriftConfig, role: Role
) -> FeatureDrift:
    values = column.dropna()
    if reference["kind"] == "numeric":
        numeric = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64")
        return _numeric(name, role, reference, numeric, config)
    keys = (
        pd.to_numeric(values, errors="coerce").dropna().map(_number_key)
        if reference["kind"] == "discrete"
        else values.astype(str)
    )
    return _values(name, role, reference, keys, config)


def _numeric(
    name: str, role: Role, ref: dict[str, Any], values: np.ndarray, config: DriftConfig
) -> FeatureDrift:
    edges = np.asarray(ref["edges"])
    histogram = Histogram(
        _bin_labels(edges), tuple(ref["shares"]), tuple(_bin_shares(values, edges).tolist())
    )
    if len(values) == 0 or not ref["sample"]:
        return _no_values(name, role, "ks", histogram)
    sample = np.asarray(ref["sample"])
    statistic = float(stats.ks_2samp(values, sample).statistic)
    effective = min(len(values), len(np.unique(values)))
    # The asymptotic two-sample KS distribution, with the current side's independent draws.
    scale = np.sqrt(effective * len(sample) / (effective + len(sample)))
    p_value = float(stats.kstwobign.sf(statistic * scale))
    value = psi(np.asarray(histogram.reference), np.asarray(histogram.current))
    detail = f"mean {ref['mean']:.4g} -> {float(values.mean()):.4g}"
    drifted = _rule(value, p_value, config)
    return FeatureDrift(
        name, role, "ks", value, statistic, p_value, len(values), effective, drifted, detail,
        histogram,
    )  # fmt: skip


def _values(
    name: str, role: Role, ref: dict[str, Any], keys: pd.Series, config: DriftConfig
) -> FeatureDrift:
    shares: dict[str, float] = ref["shares"]
    counts = keys.value_counts()
    categories = [*shares, *sorted(set(counts.index) - set(shares))]
    expected = np.asarray([shares.get(c, 0.0) for c in categories])
    observed = np.asarray([counts.get(c, 0) for c in categories], dtype="float64")
    total = observed.sum()
    current = observed / total if total else np.zeros(len(categories))
    histogram = Histogram(tuple(categories), tuple(expected.tolist()), tuple(current.tolist()))
    if total == 0:
        return _no_values(name, role, "chi2", histogram)
    value = psi(expected, current)
    effect = float(0.5 * np.abs(expected - current).sum())
    if len(categories) < 2:
        p_value = 1.0
    else:
        floor = np.clip(expected, _EPS, None)
        p_value = float(stats.chisquare(observed, floor / floor.sum() * total).pvalue)
    new = [c for c in categories if c not in shares]
    detail = f"new values: {', '.join(new[:5])}" if new else "same values"
    drifted = _rule(value, p_value, config)
    return FeatureDrift(
        name, role, "chi2", value, effect, p_value, int(total), int(total), drifted, detail,
        histogram,
    )  # fmt: skip


def _rule(psi_value: float, p_value: float, config: DriftConfig) -> bool:
    return bool(psi_value > config.psi_threshold and p_value < config.p_value)


def _no_values(name: str, role: Role, test: Literal["ks", "chi2"], h: Histogram) -> FeatureDrift:
    nan = float("nan")
    return FeatureDrift(name, role, test, nan, nan, nan, 0, 0, False, "no values", h)


def _bin_labels(edges: np.ndarray) -> tuple[str, ...]:
    """Names of the bins of ``edges`` (the outer ones open-ended)."""
    if len(edges) < 2:
        return ("all",)
    inner = [f"{e:.3g}" for e in edges[1:-1]]
    if not inner:
        return ("all",)
    middle = [f"{a}-{b}" for a, b in itertools.pairwise(inner)]
    return (f"<{inner[0]}", *middle, f">={inner[-1]}")


def drifted(results: Sequence[FeatureDrift], role: Role = "feature") -> list[FeatureDrift]:
    return [r for r in results if r.drifted and r.role == role]
