"""Monitoring windows from the prediction log: how rows are cut into windows (per version and
slice of time), what each window counts and compares, how late labels are joined to the
logged rows, and the live scores computed from them. Plain frames, no servers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aiinfra.data import drift
from aiinfra.monitoring import live
from aiinfra.monitoring.live import LABEL, VersionReference, Window
from aiinfra.project.config import DriftConfig, LiveLabelsConfig
from aiinfra.project.schema import REQUEST, Feature, Key, Schema

SCHEMA = Schema(
    task="binary",
    entities=(Key("customer_id", "int"),),
    timestamp="event_timestamp",
    label="churned",
    features=(
        Feature("amount", "numeric", "orders"),  # a stored feature: only in "features"
        Feature("term", "numeric", REQUEST),
        Feature("plan", "categorical", REQUEST),
    ),
    classes=(0, 1),
)
PLANS = ("basic", "plus", "pro")
RULE = DriftConfig()
HOUR = timedelta(hours=1)
TEN = datetime(2026, 3, 2, 10, tzinfo=UTC)


def population(
    n: int, seed: int, amount_scale: float = 1.0, plan: str | None = None
) -> pd.DataFrame:
    """Customers with the model's probability, which ranks the label well."""
    rng = np.random.default_rng(seed)
    churned = (rng.random(n) < 0.3).astype(int)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(1, 500, n),
            "amount": rng.lognormal(4, 0.5, n) * amount_scale,
            "term": rng.choice([12, 24, 36], n),
            "plan": [plan] * n if plan else rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]),
            "churned": churned,
            "probability": np.clip(0.2 + 0.5 * churned + rng.normal(0, 0.08, n), 0.01, 0.99),
        }
    )


REFERENCE = population(3000, 0)
PROFILE = drift.build_profile(REFERENCE, SCHEMA, REFERENCE["probability"])
REFERENCES = {
    v: VersionReference(v, SCHEMA, PROFILE, {"roc_auc": 0.9}) for v in ("1", "2")
}  # fmt: skip


def entries(
    frame: pd.DataFrame,
    version: str,
    start: datetime,
    every: timedelta = timedelta(seconds=10),
    stored: bool = True,
) -> list[dict[str, Any]]:
    """Prediction-log lines of ``frame``'s rows, one request each, ``every`` apart: the row
    as sent (entity keys, request-time features) and, as the service logs them, the features
    the model was given (``stored``: stored and request-time, no entity keys)."""
    lines = []
    for i, row in enumerate(frame.to_dict("records")):
        probability = row["probability"]
        line = {
            "at": (start + i * every).isoformat(),
            "model_version": version,
            "request_id": f"v{version}-{i}",
            "row": 0,
            "request": {k: row[k] for k in ("customer_id", "term", "plan")},
            "answer": {"probability": probability, "predicted_class": int(probability >= 0.5)},
        }
        if stored:
            line["features"] = {f: row[f] for f in SCHEMA.feature_names}
        lines.append(line)
    return lines


def outcome(at: datetime, status: int, latency_ms: float) -> dict[str, Any]:
    """A request-outcome line (every request's, sampled or not)."""
    return {"at": at.isoformat(), "status": status, "latency_ms": latency_ms, "request_id": "r"}


def cut(
    lines: Sequence[dict[str, Any]],
    outcomes: pd.DataFrame | None = None,
    min_rows: int = 30,
    labels: Sequence[Any] | None = None,
) -> list[Window]:
    rows = live.logged_rows(lines, "probability")
    if labels is not None:
        rows[LABEL] = list(labels)
    found = outcomes if outcomes is not None else live.outcome_frame([])
    return live.windows(rows, found, REFERENCES, HOUR, RULE, min_rows)


# Windows


def test_two_versions_in_one_slice_are_two_windows() -> None:
    lines = entries(population(40, 1), "1", TEN, timedelta(seconds=30))
    lines += entries(population(50, 2), "2", TEN + timedelta(minutes=25), timedelta(seconds=30))
    found = cut(lines)
    assert [(w.version, w.start, w.end, w.rows) for w in found] == [
        ("1", TEN, TEN + HOUR, 40),
        ("2", TEN, TEN + HOUR, 50),
    ]


def test_a_slice_boundary_splits_a_version_s_rows() -> None:
    lines = entries(population(40, 1), "1", TEN + timedelta(minutes=40), timedelta(minutes=1))
    found = cut(lines)
    assert [(w.version, w.start, w.rows) for w in found] == [("1", TEN, 20), ("1", TEN + HOUR, 20)]


def test_rows_of_a_version_without_reference_make_no_window() -> None:
    lines = entries(population(40, 1), "1", TEN) + entries(population(40, 2), "9", TEN)
    assert [w.version for w in cut(lines)] == ["1"]
    assert cut([]) == []


def test_requests_errors_and_latency_come_from_the_outcome_lines() -> None:
    lines = entries(population(60, 1), "1", TEN)  # 10:00:00 to 10:09:50
    statuses = [200] * 7 + [404, 500, 503]
    inside = [
        outcome(TEN + timedelta(minutes=i), s, 10.0 * (i + 1)) for i, s in enumerate(statuses)
    ]
    later = [outcome(TEN + 2 * HOUR, 500, 9e3)]  # another slice's request
    (window,) = cut(lines, live.outcome_frame(inside + later))
    assert (window.requests, window.errors) == (10, 3)
    assert window.error_rate == pytest.approx(0.3)
    assert window.latency_p50_ms == pytest.approx(55.0)
    assert window.latency_p95_ms == pytest.approx(95.5)
    (quiet,) = cut(lines)
    assert (quiet.requests, quiet.error_rate, quiet.latency_p95_ms) == (0, 0.0, None)


def test_a_window_with_too_few_rows_has_figures_but_no_verdict() -> None:
    lines = entries(population(10, 1, amount_scale=3.0, plan="pro"), "1", TEN)
    (window,) = cut(lines, min_rows=30, labels=[1, 0] * 5)
    assert not window.enough_rows
    assert {f.feature for f in window.features if f.drifted} == {"amount", "plan"}  # figures
    assert window.drifted == []  # but no verdict
    assert window.labelled_rows == 10 and window.live == {}


# Drift in a window


def test_shifted_features_in_a_window_are_named() -> None:
    (window,) = cut(entries(population(300, 1, amount_scale=3.0, plan="pro"), "1", TEN))
    assert window.enough_rows
    assert {f.feature for f in window.drifted} == {"amount", "plan"}
    assert {f.feature for f in window.features} == set(SCHEMA.feature_names)
    assert window.prediction is not None and window.prediction.feature == "probability"


def test_an_unshifted_window_has_no_drift() -> None:
    (window,) = cut(entries(population(300, 1), "1", TEN))
    assert window.enough_rows and window.drifted == []
    assert window.prediction is not None and not window.prediction.drifted


def test_shifted_answers_are_prediction_drift() -> None:
    shifted = population(300, 1).assign(probability=lambda f: np.clip(f["probability"] + 0.4, 0, 1))
    (window,) = cut(entries(shifted, "1", TEN))
    assert window.drifted == []
    assert window.prediction is not None and window.prediction.drifted


def with_gaps(labels: pd.Series) -> list[Any]:
    """A third of the labels not arrived yet (the column is float, as after a join)."""
    return [v if i % 3 else None for i, v in enumerate(labels)]


def test_a_window_scores_the_labels_that_arrived() -> None:
    frame = population(300, 1)
    (window,) = cut(entries(frame, "1", TEN), labels=with_gaps(frame["churned"]))
    assert window.labelled_rows == 200
    assert window.live["roc_auc"] > 0.95
    assert window.gate_scores == {"roc_auc": 0.9}


def test_a_window_compares_its_labels_with_the_reference() -> None:
    frame = population(300, 1)
    (window,) = cut(entries(frame, "1", TEN), labels=frame["churned"])
    assert window.label is not None and window.label.role == "label"
    assert window.label.feature == "churned" and not window.label.drifted
    (moved,) = cut(entries(frame, "1", TEN), labels=[1] * 300)
    assert moved.label is not None and moved.label.drifted


def test_labels_joined_with_gaps_do_not_drift_from_their_own_distribution() -> None:
    frame = population(300, 1)
    (window,) = cut(entries(frame, "1", TEN), labels=with_gaps(frame["churned"]))
    assert window.label is not None and not window.label.drifted


# Late labels


def label_spec(**overrides: Any) -> LiveLabelsConfig:
    return LiveLabelsConfig(path="labels.csv", **overrides)


def test_join_labels_by_request_id() -> None:
    rows = live.logged_rows(entries(population(4, 1), "1", TEN), "probability")
    labels = pd.DataFrame(
        {
            "request_id": ["v1-0", "v1-2", "v1-2", "v1-3", "elsewhere"],
            "churned": [1, 0, 1, 0, 1],  # v1-2 corrected later: the last one counts
        }
    )
    joined = live.join_labels(rows, labels, label_spec(), SCHEMA)
    assert joined.index.equals(rows.index)
    assert joined.tolist()[:1] + joined.tolist()[2:] == [1, 1, 0]
    assert np.isnan(joined.iloc[1])  # no label arrived for v1-1


def test_join_labels_by_request_id_and_row() -> None:
    one_request = entries(population(3, 1), "1", TEN)
    for i, line in enumerate(one_request):
        line.update(request_id="batch", row=i)
    rows = live.logged_rows(one_request, "probability")
    labels = pd.DataFrame({"request_id": ["batch"] * 3, "row": [2, 0, 1], "churned": [0, 1, 1]})
    assert live.join_labels(rows, labels, label_spec(), SCHEMA).tolist() == [1, 1, 0]


def test_a_join_column_named_by_the_spec() -> None:
    rows = live.logged_rows(entries(population(2, 1), "1", TEN), "probability")
    labels = pd.DataFrame({"rid": ["v1-1", "v1-0"], "outcome": ["yes", "no"]})
    joined = live.join_labels(rows, labels, label_spec(request_id="rid", label="outcome"), SCHEMA)
    assert joined.tolist() == ["no", "yes"]


def entity_rows(stored: bool) -> pd.DataFrame:
    frame = population(3, 1).assign(customer_id=[7, 8, 9])
    return live.logged_rows(entries(frame, "1", TEN, timedelta(minutes=1), stored), "probability")


ENTITY_LABELS = pd.DataFrame(
    {
        "customer_id": [7, 7, 8, 9],
        "event_timestamp": [
            TEN - timedelta(minutes=3),  # 7's nearest label is the one below, 1 minute away
            TEN + timedelta(minutes=1),
            TEN + timedelta(minutes=1, seconds=200),  # within 300 s of 8's row at 10:01
            TEN + timedelta(minutes=2, seconds=301),  # just outside the tolerance of 9's row
        ],
        "churned": [0, 1, 1, 1],
    }
)


def test_join_labels_by_entity_and_nearest_time_within_the_tolerance() -> None:
    rows = entity_rows(stored=False)  # a log line without stored features: the row as sent
    joined = live.join_labels(rows, ENTITY_LABELS, label_spec(request_id=None), SCHEMA)
    assert joined.tolist()[:2] == [1, 1]
    assert np.isnan(joined.iloc[2])


def test_join_labels_by_entity_on_lines_as_the_service_logs_them() -> None:
    rows = entity_rows(stored=True)
    joined = live.join_labels(rows, ENTITY_LABELS, label_spec(request_id=None), SCHEMA)
    assert joined.tolist()[:2] == [1, 1]


# Live scores


def labelled(labels: Sequence[Any], frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["probability"]].assign(**{LABEL: list(labels)})


def test_live_scores_of_labels_that_agree_and_that_disagree() -> None:
    frame = population(400, 3)
    agree = live.live_scores(labelled(frame["churned"], frame), SCHEMA)
    inverted = live.live_scores(labelled(1 - frame["churned"], frame), SCHEMA)
    assert agree["roc_auc"] > 0.95 and inverted["roc_auc"] < 0.05
    assert agree["accuracy"] > inverted["accuracy"]
    assert agree["positive_rate"] == pytest.approx(frame["churned"].mean())


def test_live_scores_map_csv_and_float_labels_to_the_schema_s_classes() -> None:
    frame = population(400, 3)
    exact = live.live_scores(labelled(frame["churned"], frame), SCHEMA)
    as_text = live.live_scores(labelled(frame["churned"].astype(str), frame), SCHEMA)  # a CSV
    as_float = live.live_scores(labelled(frame["churned"].astype(float), frame), SCHEMA)  # gaps
    assert as_text == pytest.approx(exact) and as_float == pytest.approx(exact)
    assert exact["roc_auc"] > 0.95


def test_the_gate_retraining_and_monitoring_agree_on_the_same_data() -> None:
    """One drift rule: the same rows get the same verdict from the validation gate, from
    `retrain --if-drifted` and from a monitoring window."""
    from aiinfra.data.validation import validate
    from aiinfra.monitoring import retraining
    from aiinfra.project.config import ValidationConfig

    shifted = population(400, 7, amount_scale=1.6, plan="pro")
    frame = shifted.assign(event_timestamp=pd.Timestamp(TEN))
    gate = validate(frame, SCHEMA, ValidationConfig(min_rows=10), PROFILE, now=TEN)
    decision = retraining.should_retrain("1", PROFILE, shifted, RULE, 1)
    rows = live.logged_rows(entries(shifted, "1", TEN, timedelta(seconds=1)), "probability")
    (window,) = live.windows(rows, live.outcome_frame([]), REFERENCES, HOUR, RULE, 30)

    def verdicts(found: Sequence[drift.FeatureDrift]) -> dict[str, tuple[bool, float]]:
        return {d.feature: (d.drifted, round(d.psi, 9)) for d in found if d.role == "feature"}

    expected = verdicts(window.features)
    assert {name for name, (drifted, _) in expected.items() if drifted} == {"amount", "plan"}
    assert verdicts(gate.drift) == expected
    assert verdicts(decision.features) == expected


def _answers_frame(task: str, labels: list[Any], answers: list[dict[str, Any]]) -> pd.DataFrame:
    """Logged rows of a ``task`` model with their labels, as live_scores reads them."""
    from aiinfra.release.metrics import ANSWER_FIELDS

    lines = [
        {"at": TEN.isoformat(), "model_version": "1", "request_id": str(i), "answer": a}
        for i, a in enumerate(answers)
    ]
    rows = live.logged_rows(lines, ANSWER_FIELDS[task])  # type: ignore[index]
    rows[LABEL] = labels
    return rows


def test_live_scores_for_multiclass_and_regression_use_their_own_metrics() -> None:
    """Any project's task: the gate's metrics of that task, from its answers' fields."""
    classes = ("red", "white", "rose")
    multi = Schema(
        task="multiclass", entities=SCHEMA.entities, timestamp="t", label="kind",
        features=SCHEMA.features, classes=classes,
    )  # fmt: skip
    truth = ["red", "white", "rose", "red"] * 10
    answers = [
        {"probabilities": {c: (0.8 if c == t else 0.1) for c in classes}, "predicted_class": t}
        for t in truth
    ]
    scores = live.live_scores(_answers_frame("multiclass", truth, answers), multi)
    assert scores["accuracy"] == 1.0 and scores["log_loss"] < 0.3
    regression = Schema(
        task="regression", entities=SCHEMA.entities, timestamp="t", label="y",
        features=SCHEMA.features,
    )  # fmt: skip
    values = [float(v) for v in range(40)]
    frame = _answers_frame("regression", values, [{"value": v + 0.5} for v in values])
    scores = live.live_scores(frame, regression)
    assert scores["mae"] == pytest.approx(0.5) and scores["r2"] > 0.99
