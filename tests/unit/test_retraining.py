"""The drift decision behind `aiinfra retrain --if-drifted`, on data made here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiinfra.monitoring import retraining
from aiinfra.project.config import RetrainingConfig
from aiinfra.project.schema import Schema
from examples.loan_default.data import EVENT_TIMESTAMP, PURPOSES

SETTINGS = RetrainingConfig()


def requests(n: int, seed: int, amount_scale: float = 1.0, car_share: float = 0.2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    others = [p for p in PURPOSES if p != "car"]
    purposes = np.where(
        rng.random(n) < car_share, "car", rng.choice(others, size=n)
    )  # the rest spread over the other purposes
    return pd.DataFrame(
        {
            "applicant_id": rng.integers(1, 300, n),
            "zipcode": "10001",
            "loan_amount": rng.lognormal(9.3, 0.5, n) * amount_scale,
            "term_months": rng.choice([12, 24, 36, 60], n),
            "purpose": purposes,
        }
    )


def by_name(decision: retraining.DriftDecision) -> dict[str, retraining.FeatureDrift]:
    return {f.name: f for f in decision.features}


def test_same_distribution_does_not_retrain(schema: Schema) -> None:
    decision = retraining.should_retrain("3", requests(2000, 0), requests(500, 1), schema, SETTINGS)
    assert not decision.retrain
    assert set(by_name(decision)) == {"loan_amount", "term_months", "purpose"}
    assert "no drift in 3 features" in decision.reason
    assert (decision.champion, decision.reference_rows, decision.current_rows) == ("3", 2000, 500)


def test_a_shifted_numeric_feature_retrains_and_is_named(schema: Schema) -> None:
    decision = retraining.should_retrain(
        "3", requests(2000, 0), requests(500, 1, 1.6), schema, SETTINGS
    )
    assert decision.retrain
    drift = by_name(decision)
    assert drift["loan_amount"].drifted and drift["loan_amount"].test == "ks"
    assert not drift["purpose"].drifted and not drift["term_months"].drifted
    assert decision.reason.startswith("drift in 1 of 3 features: loan_amount (KS ")
    assert "DRIFT" in decision.table().splitlines()[1 + list(drift).index("loan_amount")]


def test_a_shifted_category_mix_retrains(schema: Schema) -> None:
    decision = retraining.should_retrain(
        "3", requests(2000, 0), requests(500, 1, car_share=0.7), schema, SETTINGS
    )
    drift = by_name(decision)["purpose"]
    assert decision.retrain and drift.drifted and drift.test == "chi2"
    assert drift.statistic == pytest.approx(0.5, abs=0.08)  # total variation distance


def test_significant_but_tiny_differences_are_not_drift(schema: Schema) -> None:
    # 200k rows make a 2% scale change "significant"; the effect floor keeps it quiet.
    decision = retraining.should_retrain(
        "3", requests(200_000, 0), requests(200_000, 1, 1.02), schema, SETTINGS
    )
    amount = by_name(decision)["loan_amount"]
    assert amount.p_value < SETTINGS.p_value and not amount.drifted
    assert not decision.retrain


def test_no_decision_on_too_few_rows_and_runs_without_a_champion_or_reference(
    schema: Schema,
) -> None:
    few = retraining.should_retrain("3", requests(2000, 0), requests(10, 1, 3.0), schema, SETTINGS)
    assert not few.retrain and "only 10 recent rows" in few.reason
    first = retraining.should_retrain(None, None, requests(10, 1), schema, SETTINGS)
    assert first.retrain and "no @champion" in first.reason
    legacy = retraining.should_retrain("2", None, requests(500, 1), schema, SETTINGS)
    assert legacy.retrain and "v2 has no logged reference" in legacy.reason


def test_recent_requests_reads_the_prediction_log_window(tmp_path: Path) -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def line(at: datetime, amount: float) -> str:
        return json.dumps(
            {"at": at.isoformat(), "model_version": "1", "request": {"loan_amount": amount}}
        )

    old_day = now - timedelta(days=9)
    (tmp_path / f"predictions-{old_day:%Y-%m-%d}.jsonl").write_text(line(old_day, 1.0) + "\n")
    edge = now - timedelta(days=7, hours=1)
    (tmp_path / f"predictions-{edge:%Y-%m-%d}.jsonl").write_text(
        line(edge, 2.0) + "\n" + line(edge + timedelta(hours=2), 3.0) + "\n"
    )
    (tmp_path / f"predictions-{now:%Y-%m-%d}.jsonl").write_text(line(now, 4.0) + "\n")
    recent = retraining.recent_requests(tmp_path, now - timedelta(days=7))
    assert recent["loan_amount"].tolist() == [3.0, 4.0]
    assert retraining.recent_requests(tmp_path / "none", now).empty


def test_recent_rows_keeps_the_window_of_a_training_set(schema: Schema) -> None:
    now = pd.Timestamp("2026-11-29", tz="UTC")
    assert schema.timestamp == EVENT_TIMESTAMP
    frame = pd.DataFrame(
        {schema.timestamp: [now - pd.Timedelta(days=d) for d in (1, 5, 10)], "x": [1, 2, 3]}
    )
    since = (now - pd.Timedelta(days=7)).to_pydatetime()
    assert retraining.recent_rows(frame, schema, since)["x"].tolist() == [1, 2]
