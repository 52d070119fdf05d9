"""Retraining without a person: has recent data moved far enough from what the champion was
trained on to start a run? (``aiinfra retrain --if-drifted``)

Deliberately small and separate from the validation gate's drift checks (``aiinfra.data.drift``,
written at the same time): one two-sample test per schema feature on raw values, KS for
numeric features and chi-square for categorical ones. The two should become one module.

- Reference: a sample of the champion's training set, logged with every version at
  registration (:func:`log_reference`), so any machine that reaches MLflow can compare.
- Recent data: the logged prediction requests (request-time features only: that is what
  callers send) or the rows of the last days of a freshly built training set (every feature).

A feature drifts when its test rejects "same distribution" (``p < p_value``) *and* the effect
is large enough (KS statistic or total variation distance >= ``min_effect``): with thousands
of rows a p-value alone flags differences too small to matter.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from scipy import stats

import aiinfra.release.mlflow_plugins  # noqa: F401 (before any MLflow call)
from aiinfra.project.config import PlatformConfig, RetrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime import prediction_log

REFERENCE_DIR = "drift_reference"
REFERENCE_FILE = "training_sample.parquet"
MAX_REFERENCE_ROWS = 5000
Source = Literal["requests", "data"]


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    test: Literal["ks", "chi2"]
    statistic: float  # KS statistic, or total variation distance for categories
    p_value: float
    drifted: bool


@dataclass(frozen=True)
class DriftDecision:
    retrain: bool
    reason: str
    champion: str | None
    reference_rows: int
    current_rows: int
    features: tuple[FeatureDrift, ...] = ()

    def table(self) -> str:
        """One line per compared feature, drifted ones marked."""
        lines = [f"{'feature':<24} {'test':<5} {'effect':>7} {'p-value':>9}  drift"]
        for f in self.features:
            mark = "DRIFT" if f.drifted else ""
            line = f"{f.name:<24} {f.test:<5} {f.statistic:>7.3f} {f.p_value:>9.2e}  {mark}"
            lines.append(line.rstrip())
        return "\n".join(lines)


def log_reference(
    c: MlflowClient, run_id: str, frame: pd.DataFrame, schema: Schema, seed: int = 0
) -> None:
    """Attach a sample of the training set (features and event time) to a version's run."""
    columns = [col for col in (schema.timestamp, *schema.feature_names) if col in frame]
    sample = frame[columns]
    if len(sample) > MAX_REFERENCE_ROWS:
        sample = sample.sample(MAX_REFERENCE_ROWS, random_state=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_FILE
        sample.to_parquet(path, index=False)
        c.log_artifact(run_id, str(path), REFERENCE_DIR)


def champion_reference(
    tracking_uri: str, model_name: str, into: Path
) -> tuple[str | None, pd.DataFrame | None]:
    """The champion's version and its reference sample (None where either is missing)."""
    version = registry.alias_version(tracking_uri, model_name, registry.CHAMPION)
    if version is None:
        return None, None
    run_id = registry.client(tracking_uri).get_model_version(model_name, version).run_id
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=f"{REFERENCE_DIR}/{REFERENCE_FILE}",
            dst_path=str(into),
            tracking_uri=tracking_uri,
        )
    except (MlflowException, OSError):
        return version, None  # registered before references were logged
    return version, pd.read_parquet(local)


def recent_requests(log_dir: Path, since: datetime) -> pd.DataFrame:
    """The request rows logged by the service since ``since`` (see runtime.prediction_log)."""
    return pd.DataFrame([entry["request"] for entry in prediction_log.read_entries(log_dir, since)])


def recent_rows(frame: pd.DataFrame, schema: Schema, since: datetime) -> pd.DataFrame:
    times = pd.to_datetime(frame[schema.timestamp], utc=True)
    return frame[times >= pd.Timestamp(since)]


def compare(
    reference: pd.DataFrame, current: pd.DataFrame, schema: Schema, settings: RetrainingConfig
) -> tuple[FeatureDrift, ...]:
    """Test every schema feature present in both frames."""
    found = []
    for feature in schema.features:
        if feature.name not in reference or feature.name not in current:
            continue
        ref, cur = reference[feature.name].dropna(), current[feature.name].dropna()
        if ref.empty or cur.empty:
            continue
        if feature.kind == "numeric":
            result = stats.ks_2samp(ref.astype(float), cur.astype(float))
            test: Literal["ks", "chi2"] = "ks"
            effect, p_value = float(result.statistic), float(result.pvalue)
        else:
            test = "chi2"
            effect, p_value = _categorical(ref.astype(str), cur.astype(str))
        drifted = p_value < settings.p_value and effect >= settings.min_effect
        found.append(FeatureDrift(feature.name, test, effect, p_value, drifted))
    return tuple(found)


def _categorical(ref: pd.Series, cur: pd.Series) -> tuple[float, float]:
    """Total variation distance of the category shares, and the chi-square test's p-value."""
    categories = sorted(set(ref) | set(cur))
    counts = np.array(
        [[int((ref == c).sum()) for c in categories], [int((cur == c).sum()) for c in categories]]
    )
    shares = counts / counts.sum(axis=1, keepdims=True)
    distance = float(0.5 * np.abs(shares[0] - shares[1]).sum())
    if len(categories) < 2:
        return distance, 1.0
    p_value = float(stats.chi2_contingency(counts).pvalue)
    return distance, p_value


def should_retrain(
    champion: str | None,
    reference: pd.DataFrame | None,
    current: pd.DataFrame,
    schema: Schema,
    settings: RetrainingConfig,
) -> DriftDecision:
    if champion is None:
        return DriftDecision(True, "no @champion yet: a first model is needed", None, 0, 0)
    if reference is None:
        return DriftDecision(
            True,
            f"@champion v{champion} has no logged reference data (registered before drift "
            "references): retraining gives the next champion one",
            champion,
            0,
            len(current),
        )
    sizes = (champion, len(reference), len(current))
    if len(current) < settings.min_rows:
        return DriftDecision(
            False,
            f"only {len(current)} recent rows (fewer than {settings.min_rows}): no decision, "
            "no run",
            *sizes,
        )
    features = compare(reference, current, schema, settings)
    if not features:
        return DriftDecision(False, "no schema feature in the recent data to compare", *sizes)
    drifted = [f for f in features if f.drifted]
    if len(drifted) >= settings.min_drifted_features:
        reason = f"drift in {len(drifted)} of {len(features)} features: " + _describe(drifted)
        return DriftDecision(True, reason, *sizes, features)
    largest = max(features, key=lambda f: f.statistic)
    reason = (
        f"no drift in {len(features)} features (largest effect: {_describe([largest])}; "
        f"drift needs p < {settings.p_value} and effect >= {settings.min_effect})"
    )
    return DriftDecision(False, reason, *sizes, features)


def _describe(features: Sequence[FeatureDrift]) -> str:
    return ", ".join(
        f"{f.name} ({'KS' if f.test == 'ks' else 'TVD'} {f.statistic:.3f}, p={f.p_value:.1e})"
        for f in features
    )


def check(config: PlatformConfig, source: Source, now: datetime | None = None) -> DriftDecision:
    """Compare recent ``source`` data of ``config``'s home with the champion's reference."""
    from aiinfra.data.training_set import build_training_set  # Feast: only here
    from aiinfra.project.definition import load_project

    since = (now or datetime.now(UTC)) - timedelta(days=config.retraining.window_days)
    uri, name = config.mlflow.tracking_uri, config.model_name
    project = load_project(config)
    with tempfile.TemporaryDirectory() as tmp:
        champion, reference = champion_reference(uri, name, Path(tmp))
        if source == "requests":
            current = recent_requests(config.prediction_log_dir, since)
        else:
            current = recent_rows(build_training_set(config, project), project.schema, since)
    return should_retrain(champion, reference, current, project.schema, config.retraining)
