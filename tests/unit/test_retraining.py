"""The drift decision behind `aiinfra retrain --if-drifted`, on data made here: recent rows
against the champion's reference profile, with the platform's one drift rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.data import drift
from aiinfra.monitoring import retraining
from aiinfra.project.config import DriftConfig
from aiinfra.project.schema import REQUEST, Feature, Key, Schema
from examples.loan_default.data import EVENT_TIMESTAMP, PURPOSES

RULE = DriftConfig()
# The loan example's request-time features (the service's request log holds them).
SCHEMA = Schema(
    task="binary",
    entities=(Key("applicant_id", "int"),),
    timestamp=EVENT_TIMESTAMP,
    label="defaulted",
    features=(
        Feature("loan_amount", "numeric", REQUEST),
        Feature("term_months", "numeric", REQUEST, integer=True),
        Feature("purpose", "categorical", REQUEST, categories=tuple(PURPOSES)),
    ),
    classes=(0, 1),
)


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
            "defaulted": (rng.random(n) < 0.2).astype(int),
        }
    )


def profile(n: int = 2000) -> dict[str, Any]:
    """The champion's reference: the profile of the data it was trained on."""
    return drift.build_profile(requests(n, 0), SCHEMA)


def decide(
    current: pd.DataFrame, min_drifted: int = 1, reference: int = 2000
) -> retraining.DriftDecision:
    return retraining.should_retrain("3", profile(reference), current, RULE, min_drifted)


def by_name(decision: retraining.DriftDecision) -> dict[str, drift.FeatureDrift]:
    return {f.feature: f for f in decision.features}


def test_same_distribution_does_not_retrain() -> None:
    decision = decide(requests(500, 1))
    assert not decision.retrain
    assert set(by_name(decision)) == {"loan_amount", "term_months", "purpose"}
    assert decision.reason.startswith("drift in 0 of 3 features, 1 needed (largest PSI: ")
    assert (decision.champion, decision.reference_rows, decision.current_rows) == ("3", 2000, 500)


def test_a_shifted_numeric_feature_retrains_and_is_named() -> None:
    decision = decide(requests(500, 1, 1.6))
    assert decision.retrain
    found = by_name(decision)
    assert found["loan_amount"].drifted and found["loan_amount"].test == "ks"
    assert not found["purpose"].drifted and not found["term_months"].drifted
    assert decision.reason.startswith("drift in 1 of 3 features: loan_amount (PSI ")
    table = decision.table().splitlines()
    assert [line.split()[0] for line in table if line.endswith("DRIFT")] == ["loan_amount"]


def test_a_shifted_category_mix_retrains() -> None:
    decision = decide(requests(500, 1, car_share=0.7))
    found = by_name(decision)["purpose"]
    assert decision.retrain and found.drifted and found.test == "chi2"
    assert found.effect_name == "TVD" and abs(found.effect - 0.5) < 0.08


def test_fewer_drifted_features_than_the_rule_needs_do_not_retrain() -> None:
    decision = decide(requests(500, 1, 1.6), min_drifted=2)
    assert not decision.retrain and by_name(decision)["loan_amount"].drifted
    assert decision.reason.startswith(
        "drift in 1 of 3 features, 2 needed (largest PSI: loan_amount"
    )


def test_a_small_sample_s_large_psi_alone_is_not_drift() -> None:
    # 40 rows of the same distribution leave a decile bin empty: PSI passes its threshold,
    # the test does not reject, so the rule keeps quiet.
    amount = by_name(decide(requests(40, 3)))["loan_amount"]
    assert amount.psi > RULE.psi_threshold and amount.p_value > RULE.p_value
    assert not amount.drifted


def test_significant_but_tiny_differences_are_not_drift() -> None:
    # 200k rows make a tiny change of the category mix "significant"; PSI keeps it quiet.
    decision = decide(requests(200_000, 1), reference=200_000)
    purpose = by_name(decision)["purpose"]
    assert purpose.p_value < RULE.p_value and purpose.psi < RULE.psi_threshold
    assert not purpose.drifted and not decision.retrain


def test_no_decision_on_too_few_rows_and_runs_without_a_champion_or_reference() -> None:
    few = decide(requests(10, 1, 3.0))
    assert not few.retrain and few.reason.startswith("only 10 recent rows (fewer than 30)")
    first = retraining.should_retrain(None, None, requests(10, 1), RULE)
    assert first.retrain and "no @champion" in first.reason and first.champion is None
    legacy = retraining.should_retrain("2", None, requests(500, 1), RULE)
    assert legacy.retrain and "v2 has no reference profile" in legacy.reason
    assert (legacy.champion, legacy.current_rows) == ("2", 500)


def test_recent_data_without_a_schema_feature_decides_nothing() -> None:
    unrelated = pd.DataFrame({"other": range(100)})
    decision = retraining.should_retrain("3", profile(), unrelated, RULE)
    assert (
        not decision.retrain
        and decision.reason == "no schema feature in the recent data to compare"
    )


def test_recent_requests_reads_the_prediction_log_window(tmp_path: Path) -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def line(at: datetime, amount: float, stored: float | None = None) -> str:
        entry: dict[str, Any] = {
            "at": at.isoformat(),
            "model_version": "1",
            "request": {"loan_amount": amount},
        }
        if stored is not None:  # the service's line: what the model was given, which counts
            entry["features"] = {"loan_amount": amount * 10, "annual_income": stored}
        return json.dumps(entry)

    old_day = now - timedelta(days=9)
    (tmp_path / f"predictions-{old_day:%Y-%m-%d}.jsonl").write_text(line(old_day, 1.0) + "\n")
    edge = now - timedelta(days=7, hours=1)
    (tmp_path / f"predictions-{edge:%Y-%m-%d}.jsonl").write_text(
        line(edge, 2.0) + "\n" + line(edge + timedelta(hours=2), 3.0) + "\n"
    )
    (tmp_path / f"predictions-{now:%Y-%m-%d}.jsonl").write_text(line(now, 4.0, 5e4) + "\n")
    recent = retraining.recent_requests(tmp_path, now - timedelta(days=7))
    assert recent["loan_amount"].tolist() == [3.0, 40.0]
    # A stored feature comes from the service's "features"; an older line has none.
    assert recent["annual_income"].isna().tolist() == [True, False]
    assert retraining.recent_requests(tmp_path / "none", now).empty


def test_recent_rows_keeps_the_window_of_a_training_set() -> None:
    now = pd.Timestamp("2026-11-29", tz="UTC")
    frame = pd.DataFrame(
        {SCHEMA.timestamp: [now - pd.Timedelta(days=d) for d in (1, 5, 10)], "x": [1, 2, 3]}
    )
    since = (now - pd.Timedelta(days=7)).to_pydatetime()
    assert retraining.recent_rows(frame, SCHEMA, since)["x"].tolist() == [1, 2]
