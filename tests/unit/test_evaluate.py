"""The promotion gate and the metrics it reads (binary task; every task: test_model_tasks.py)."""

import numpy as np
import pandas as pd

from aiinfra.project.config import GateConfig, ModelConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.release import gate, metrics

GATE = GateConfig(metric="roc_auc", min_value=0.6, margin=0.01)


def test_first_model_needs_only_the_floor() -> None:
    assert gate.decide(GATE, "roc_auc", {"roc_auc": 0.7}, None).passed
    low = gate.decide(GATE, "roc_auc", {"roc_auc": 0.55}, None)
    assert not low.passed and "below the floor" in low.reason


def test_without_a_floor_a_first_model_passes_on_any_number() -> None:
    # gate.min_value and gate.metric are optional: the metric is then the task's default.
    plain = GateConfig()
    assert plain.metric is None and plain.min_value is None
    assert gate.decide(plain, "roc_auc", {"roc_auc": 0.55}, None).passed
    assert not gate.decide(plain, "roc_auc", {"roc_auc": 0.55}, {"roc_auc": 0.6}).passed


def test_challenger_must_beat_the_champion_by_the_margin() -> None:
    assert gate.decide(GATE, "roc_auc", {"roc_auc": 0.80}, {"roc_auc": 0.78}).passed
    tie = gate.decide(GATE, "roc_auc", {"roc_auc": 0.785}, {"roc_auc": 0.78})
    assert not tie.passed and "does not beat" in tie.reason


def test_nan_metric_never_passes() -> None:
    assert not gate.decide(GATE, "roc_auc", {"roc_auc": float("nan")}, None).passed
    unbounded = GateConfig()  # no floor to fall below: still refused
    nan = gate.decide(unbounded, "roc_auc", {"roc_auc": float("nan")}, None)
    assert not nan.passed and "not a number" in nan.reason


def test_scores_of_a_perfect_and_a_useless_ranker() -> None:
    y = np.array([0, 0, 1, 1])
    assert metrics.score_probabilities(y, np.array([0.1, 0.2, 0.8, 0.9]))["roc_auc"] == 1.0
    assert metrics.score_probabilities(y, np.array([0.9, 0.8, 0.2, 0.1]))["roc_auc"] == 0.0


def test_frame_hash_changes_with_any_value() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    changed = frame.copy()
    changed.loc[1, "b"] = "z"
    assert metrics.frame_hash(frame) == metrics.frame_hash(frame.copy())
    assert metrics.frame_hash(frame) != metrics.frame_hash(changed)


def test_gate_report_shows_both_models_and_the_decision() -> None:
    decision = gate.decide(GATE, "roc_auc", {"roc_auc": 0.8}, {"roc_auc": 0.7})
    text = gate.gate_report(decision, {"roc_auc": 0.8}, {"roc_auc": 0.7}, "4", "abc", 100)
    assert "PASSED" in text and "| roc_auc | 0.8000 | 0.7000 |" in text and "v4" in text


STRICT = GateConfig(
    metric="roc_auc", min_value=0.6, margin=0.01, min_values={"accuracy": 0.7}, max_regression=0.02
)
GOOD = {"roc_auc": 0.80, "accuracy": 0.80, "f1": 0.50, "neg_log_loss": -0.40}


def test_every_floor_is_checked() -> None:
    decision = gate.decide(STRICT, "roc_auc", {**GOOD, "accuracy": 0.65}, None)
    assert not decision.passed and "accuracy=0.6500 is below the floor 0.7" in decision.reason


def test_a_regression_on_any_metric_blocks_promotion() -> None:
    champion = {**GOOD, "roc_auc": 0.75, "f1": 0.60}
    decision = gate.decide(STRICT, "roc_auc", GOOD, champion)
    assert not decision.passed and "f1 regresses by 0.1000" in decision.reason
    assert gate.decide(STRICT, "roc_auc", GOOD, {**GOOD, "roc_auc": 0.75}).passed


def test_roc_points_are_thinned_and_finite(training_frame: pd.DataFrame, schema: Schema) -> None:
    from aiinfra.training import train

    model = train.train(
        training_frame,
        schema,
        TrainingConfig(epochs=1),
        ModelConfig(settings={"hidden_sizes": [8]}),
    ).model
    roc = metrics.roc_points(model, training_frame, schema, max_points=20)
    assert len(roc["fpr"]) <= 20 and roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    assert all(0 <= t <= 1 for t in roc["thresholds"])
