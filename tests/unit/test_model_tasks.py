"""The model for every task, on small synthetic data with a schema made by hand (no Feast):
it learns, it round-trips through its safe format, a project's own network plugs in by entry
point, and each task is scored and gated in its own metrics and directions."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiinfra.project.config import GateConfig, ModelConfig, TrainingConfig
from aiinfra.project.definition import DEFAULT_METRIC, TASK_METRICS
from aiinfra.project.schema import REQUEST, Feature, Key, Schema, Task
from aiinfra.release import gate, metrics
from aiinfra.training import train
from aiinfra.training.model import SPEC_FILE, WEIGHTS_FILE, TabularModel

ROWS = 800
COLORS = ("red", "green", "blue")
TRAINING = TrainingConfig(
    epochs=25,
    batch_size=64,
    learning_rate=1e-2,
    device="cpu",
    progress="off",
    checkpoint_every_epochs=0,
)
MODEL = ModelConfig(settings={"hidden_sizes": [16], "dropout": 0.0})
CLASSES: dict[Task, tuple[object, ...]] = {
    "binary": ("no", "yes"),
    "multiclass": ("low", "mid", "high"),
    "regression": (),
}


def schema_for(task: Task) -> Schema:
    return Schema(
        task=task,
        entities=(Key("account", "int"),),
        timestamp="at",
        label="target",
        features=(
            Feature("x1", "numeric", REQUEST),
            Feature("x2", "numeric", REQUEST),
            Feature("color", "categorical", REQUEST, categories=COLORS),
        ),
        classes=CLASSES[task],
    )


def frame_for(task: Task, seed: int = 0) -> pd.DataFrame:
    """Rows whose target is a known function of the features (plus noise)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    color = rng.choice(COLORS, ROWS)
    signal = 2 * x1 - x2 + 1.5 * (color == "red")
    if task == "binary":
        target: np.ndarray = np.where(signal + rng.normal(0, 0.5, ROWS) > 0.3, "yes", "no")
    elif task == "multiclass":
        noisy = signal + rng.normal(0, 0.3, ROWS)
        target = np.select([noisy < -0.7, noisy < 1.0], ["low", "mid"], "high")
    else:
        target = 10 + 3 * signal + rng.normal(0, 0.5, ROWS)
    return pd.DataFrame(
        {
            "account": np.arange(ROWS) % 50,
            "at": pd.date_range("2026-01-01", periods=ROWS, freq="h", tz="UTC"),
            "x1": x1,
            "x2": x2,
            "color": color,
            "target": target,
        }
    )


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def trained(request: pytest.FixtureRequest) -> tuple[Task, Schema, TabularModel, pd.DataFrame]:
    """Each task's model, trained on the older rows; the newest rows held out."""
    task: Task = request.param
    schema = schema_for(task)
    fit, held_out = train.split_by_time(frame_for(task), 0.25, schema)
    model = train.train(fit, schema, TRAINING, MODEL).model
    return task, schema, model, held_out


def test_each_task_learns_more_than_a_trivial_baseline(
    trained: tuple[Task, Schema, TabularModel, pd.DataFrame],
) -> None:
    task, schema, model, held_out = trained
    scores = metrics.score(model, held_out, schema)
    assert set(scores) - set(metrics.INFORMATIONAL) >= set(TASK_METRICS[task]) - {"neg_log_loss"}
    y = held_out[schema.label]
    predicted = model.predict(held_out)
    if task == "binary":
        assert predicted.shape == (len(held_out),) and ((predicted >= 0) & (predicted <= 1)).all()
        # Baseline: the base rate for every row (roc_auc 0.5, log loss = label entropy).
        rate = float((y == "yes").mean())
        baseline = metrics.score_predictions(task, y, np.full(len(y), rate), list(CLASSES[task]))
        assert scores["roc_auc"] > 0.85 > baseline["roc_auc"] + 0.3
        assert scores["log_loss"] < baseline["log_loss"] - 0.2
    elif task == "multiclass":
        assert predicted.shape == (len(held_out), 3)
        np.testing.assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-5)
        assert model.classes == ["low", "mid", "high"]  # the schema's order: the output order
        # Baseline: the class shares for every row (accuracy of the majority class).
        shares = np.array([(y == c).mean() for c in CLASSES[task]])
        prior = np.tile(shares, (len(y), 1))
        baseline = metrics.score_predictions(task, y, prior, list(CLASSES[task]))
        assert scores["accuracy"] > baseline["accuracy"] + 0.2
        assert scores["log_loss"] < baseline["log_loss"] - 0.3
        matrix = metrics.confusion(model, held_out, schema)
        assert len(matrix) == 3 and sum(map(sum, matrix)) == len(held_out)
        assert np.trace(np.array(matrix)) > 0.7 * len(held_out)
    else:
        assert predicted.shape == (len(held_out),)
        # Baseline: the training mean for every row (r2 about 0).
        baseline = metrics.score_predictions(task, y, np.full(len(y), y.mean()), [])
        assert scores["rmse"] < 0.5 * baseline["rmse"]
        assert scores["mae"] < 0.5 * baseline["mae"]
        assert scores["r2"] > 0.8 and abs(baseline["r2"]) < 1e-9
        res = metrics.residuals(model, held_out, schema)
        assert len(res["actual"]) == len(res["predicted"]) == len(held_out)


def test_save_load_round_trip_gives_identical_predictions(
    trained: tuple[Task, Schema, TabularModel, pd.DataFrame], tmp_path: Path
) -> None:
    task, schema, model, held_out = trained
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    loaded = TabularModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(held_out), model.predict(held_out))
    assert (loaded.task, loaded.classes, loaded.schema) == (task, model.classes, schema)
    if task == "regression":  # the label's standardization travels with the model
        assert (loaded.target.mean, loaded.target.std) == (model.target.mean, model.target.std)


def _network_module(root: Path) -> str:
    """A project's own network in a module file of its own (unique name: imports are cached
    per process); returns its entry point."""
    name = f"team_tabnet_{uuid.uuid4().hex[:8]}"
    (root / f"{name}.py").write_text(
        "from torch import nn\n\n\n"
        "def build(input_width, output_width, width=8):\n"
        "    return nn.Sequential(\n"
        "        nn.Linear(input_width, width), nn.Tanh(), nn.Linear(width, output_width)\n"
        "    )\n"
    )
    return f"{name}:build"


def test_a_custom_network_is_saved_by_entry_point_and_reloaded_by_import(tmp_path: Path) -> None:
    entry = _network_module(tmp_path)
    custom = ModelConfig(entry_point=entry, settings={"width": 12})
    schema = schema_for("multiclass")
    frame = frame_for("multiclass")
    model = train.train(frame, schema, TRAINING, custom, root=tmp_path).model
    assert type(model.network).__name__ == "Sequential" and model.network[0].out_features == 12
    saved = model.save(tmp_path / "saved")
    # No pickle anywhere: the JSON description names the code, the weights are tensors only.
    assert sorted(p.name for p in saved.iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    description = json.loads((saved / SPEC_FILE).read_text())
    assert (description["entry_point"], description["settings"]) == (entry, {"width": 12})
    assert (description["input_width"], description["output_width"]) == (5, 3)
    raw = (saved / WEIGHTS_FILE).read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert {k for k in header if k != "__metadata__"} == set(model.network.state_dict())

    loaded = TabularModel.load(saved, root=tmp_path)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    assert loaded.model == custom and loaded.network[0].out_features == 12

    # Loading imports the named module: without it, nothing can be loaded.
    module = entry.partition(":")[0]
    sys.modules.pop(module, None)
    (tmp_path / f"{module}.py").rename(tmp_path / "moved.py.txt")
    with pytest.raises(ImportError, match=f"model.entry_point: cannot import '{module}'"):
        TabularModel.load(saved, root=tmp_path)


def test_metrics_per_task() -> None:
    binary = metrics.score_predictions(
        "binary",
        pd.Series(["no", "yes", "yes", "no"]),
        np.array([0.1, 0.8, 0.6, 0.7]),
        ["no", "yes"],
    )
    assert set(binary) == {"roc_auc", "accuracy", "f1", "log_loss", "neg_log_loss", "positive_rate"}
    assert binary["roc_auc"] == 0.75 and binary["accuracy"] == 0.75
    assert binary["positive_rate"] == 0.5 and binary["neg_log_loss"] == -binary["log_loss"]

    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    labels = np.array(["a", "b", "c", "a"])
    multi = metrics.score_predictions("multiclass", labels, probabilities, ["a", "b", "c"])
    assert set(multi) == {"accuracy", "f1", "log_loss", "neg_log_loss"}
    assert multi["accuracy"] == 0.75
    assert multi["log_loss"] == pytest.approx(-(3 * np.log(0.8) + np.log(0.1)) / 4)
    assert multi["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)  # macro average

    regression = metrics.score_predictions(
        "regression", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]), []
    )
    assert regression["rmse"] == pytest.approx(0.5) and regression["mae"] == pytest.approx(0.25)
    assert regression["r2"] == pytest.approx(0.8) and regression["label_mean"] == 2.5


def test_every_task_has_a_default_gate_metric_of_its_own() -> None:
    for task, metric in DEFAULT_METRIC.items():
        assert metric in TASK_METRICS[task]
    assert metrics.better("rmse", 0.8, 1.0) == pytest.approx(0.2)  # lower is better
    assert metrics.better("r2", 0.8, 1.0) == pytest.approx(-0.2)  # higher is better
    assert {"rmse", "mae", "log_loss"} <= metrics.LOWER_IS_BETTER
    assert not {"r2", "roc_auc", "accuracy", "neg_log_loss"} & metrics.LOWER_IS_BETTER


def test_an_rmse_limit_is_a_ceiling_and_lower_beats_the_champion() -> None:
    config = GateConfig(metric="rmse", min_value=1.0, margin=0.05)
    assert gate.decide(config, "rmse", {"rmse": 0.8}, None).passed
    high = gate.decide(config, "rmse", {"rmse": 1.2}, None)
    assert not high.passed and "rmse=1.2000 is above the ceiling 1.0" in high.reason
    assert gate.decide(config, "rmse", {"rmse": 0.9}, {"rmse": 1.0}).passed
    close = gate.decide(config, "rmse", {"rmse": 0.98}, {"rmse": 1.0})
    assert not close.passed and "does not beat the champion's 1.0000" in close.reason
    worse = gate.decide(config, "rmse", {"rmse": 0.9, "mae": 0.9}, {"rmse": 1.0, "mae": 0.5})
    assert not worse.passed and "mae regresses by 0.4000" in worse.reason  # mae went up


def test_an_r2_limit_is_a_floor_and_higher_beats_the_champion() -> None:
    config = GateConfig(metric="r2", min_value=0.5, margin=0.01)
    assert gate.decide(config, "r2", {"r2": 0.6}, None).passed
    low = gate.decide(config, "r2", {"r2": 0.4}, None)
    assert not low.passed and "r2=0.4000 is below the floor 0.5" in low.reason
    assert gate.decide(config, "r2", {"r2": 0.7}, {"r2": 0.65}).passed
    assert not gate.decide(config, "r2", {"r2": 0.6}, {"r2": 0.65}).passed


def test_log_loss_is_lower_is_better_in_the_gate() -> None:
    config = GateConfig(metric="log_loss", margin=0.01, min_values={"log_loss": 0.6})
    assert gate.decide(config, "log_loss", {"log_loss": 0.40}, {"log_loss": 0.45}).passed
    worse = gate.decide(config, "log_loss", {"log_loss": 0.50}, {"log_loss": 0.45})
    assert not worse.passed and "does not beat" in worse.reason
    ceiling = gate.decide(config, "log_loss", {"log_loss": 0.7}, None)
    assert not ceiling.passed and "log_loss=0.7000 is above the ceiling 0.6" in ceiling.reason
    report = gate.gate_report(worse, {"log_loss": 0.5}, {"log_loss": 0.45}, "2", "h", 10)
    assert "| log_loss (lower is better) | 0.5000 | 0.4500 |" in report
