"""Retraining without a person: has recent data moved far enough from what the champion was
trained on to start a run? (``aiinfra retrain --if-drifted``)

The comparison is the platform's one drift rule (:mod:`aiinfra.data.drift`) against the
champion's reference profile, the one the validation gate and monitoring read, so the three
cannot disagree about the same data. Recent data is either the features the service gave the
model (the prediction log: stored and request-time features) or the last days of a freshly
built training set. A run starts when at least ``monitoring.rules.drifted_features`` features
drifted (one when that rule is off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from aiinfra.data import drift
from aiinfra.data.drift import FeatureDrift
from aiinfra.project.config import DriftConfig, PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.runtime import prediction_log

Source = Literal["requests", "data"]


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
        lines = [f"{'feature':<24} {'PSI':>6} {'effect':>10} {'p-value':>9}  drift"]
        for f in self.features:
            mark = "DRIFT" if f.drifted else ""
            effect = f"{f.effect_name} {f.effect:.3f}"
            line = f"{f.feature:<24} {f.psi:>6.3f} {effect:>10} {f.p_value:>9.2e}  {mark}"
            lines.append(line.rstrip())
        return "\n".join(lines)


def recent_requests(log_dir: Path, since: datetime) -> pd.DataFrame:
    """What the model was given for the requests logged since ``since``: the features the
    service read for each row (stored and request-time), or the row as sent by older logs."""
    return pd.DataFrame(
        [e.get("features") or e["request"] for e in prediction_log.read_entries(log_dir, since)]
    )


def recent_rows(frame: pd.DataFrame, schema: Schema, since: datetime) -> pd.DataFrame:
    times = pd.to_datetime(frame[schema.timestamp], utc=True)
    return frame[times >= pd.Timestamp(since)]


def should_retrain(
    champion: str | None,
    profile: dict[str, Any] | None,
    current: pd.DataFrame,
    rule: DriftConfig,
    min_drifted: int = 1,
    min_rows: int = 30,
) -> DriftDecision:
    if champion is None:
        return DriftDecision(True, "no @champion yet: a first model is needed", None, 0, 0)
    if profile is None:
        return DriftDecision(
            True,
            f"@champion v{champion} has no reference profile (registered before drift "
            "references): retraining gives the next champion one",
            champion,
            0,
            len(current),
        )
    sizes = (champion, int(profile["rows"]), len(current))
    if len(current) < min_rows:
        return DriftDecision(
            False, f"only {len(current)} recent rows (fewer than {min_rows}): no decision, no run",
            *sizes,
        )  # fmt: skip
    features = tuple(drift.compare(profile, current, rule, roles=("feature",)))
    if not features:
        return DriftDecision(False, "no schema feature in the recent data to compare", *sizes)
    drifted = [f for f in features if f.drifted]
    if len(drifted) >= min_drifted:
        reason = f"drift in {len(drifted)} of {len(features)} features: " + describe(drifted)
        return DriftDecision(True, reason, *sizes, features)
    largest = max(features, key=lambda f: f.psi if f.psi == f.psi else -1.0)
    reason = (
        f"drift in {len(drifted)} of {len(features)} features, {min_drifted} needed (largest "
        f"PSI: {describe([largest])}; drift needs PSI > {rule.psi_threshold} and "
        f"p < {rule.p_value})"
    )
    return DriftDecision(False, reason, *sizes, features)


def describe(features: Sequence[FeatureDrift]) -> str:
    return ", ".join(
        f"{f.feature} (PSI {f.psi:.3f}, {f.effect_name} {f.effect:.3f}, p={f.p_value:.1e})"
        for f in features
    )


def check(config: PlatformConfig, source: Source, now: datetime | None = None) -> DriftDecision:
    """Compare recent ``source`` data of ``config``'s home with the champion's reference."""
    from aiinfra.data.training_set import build_training_set  # Feast: only here
    from aiinfra.project.definition import load_project
    from aiinfra.release import registry

    since = (now or datetime.now(UTC)) - timedelta(days=config.monitoring.recent_days)
    uri, name = config.mlflow.tracking_uri, config.model_name
    found = registry.champion_reference(uri, name)
    # A champion without a profile (registered before profiles existed) is still a champion.
    champion = found[0] if found else registry.alias_version(uri, name, registry.CHAMPION)
    if source == "requests":
        current = recent_requests(config.prediction_log_dir, since)
    else:
        project = load_project(config)
        current = recent_rows(build_training_set(config, project), project.schema, since)
    rules = config.monitoring.rules
    return should_retrain(
        champion,
        None if found is None else found[1],
        current,
        config.drift,
        rules.drifted_features or 1,
        config.monitoring.min_rows,
    )
