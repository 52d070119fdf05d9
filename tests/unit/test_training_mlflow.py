"""What MLflow gets from training: per-epoch series, device, precision, throughput, wall time,
peak memory, energy (or "unavailable"), cost; and the hyper-parameter search, one child run per
trial, whose best settings the train step then uses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from aiinfra import steps
from aiinfra.data.training_set import write_training_set
from aiinfra.project.config import PlatformConfig, TrainingConfig, load_config
from aiinfra.project.schema import Schema
from aiinfra.training.job import TrainingSummary
from aiinfra.training.model import TabularModel
from tests.conftest import SMOKE


@pytest.fixture
def local_mlflow(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    training_frame: pd.DataFrame,
    schema: Schema,
) -> tuple[PlatformConfig, Path]:
    """A sqlite tracking store in tmp_path (artifacts land in the working directory: there too)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = load_config(SMOKE, home=tmp_path)
    config.mlflow.tracking_uri = uri
    search = {"trials": 4, "epochs": 3, "hidden_sizes": [[16], [32, 16]]}
    config.training = TrainingConfig.model_validate(
        {**config.training.model_dump(), "price_per_device_hour": 2.0, "search": search}
    )
    training_set = tmp_path / "training_set.parquet"
    write_training_set(training_frame, schema, training_set)
    return config, training_set


def test_the_run_records_epochs_hardware_and_usage(
    local_mlflow: tuple[PlatformConfig, Path], tmp_path: Path
) -> None:
    config, training_set = local_mlflow
    model_dir = tmp_path / "model"
    summary = steps.train_model(config, training_set, model_dir)
    evaluation = steps.evaluate_model(config, training_set, model_dir)
    through_json = TrainingSummary.from_json(summary.to_json())  # as the pipeline passes it on
    assert through_json == summary
    version = steps.register_model(
        config, training_set, model_dir, evaluation, through_json, {"pipeline_run": "t-1"}
    )
    client = MlflowClient(config.mlflow.tracking_uri)
    run_id = client.get_model_version(config.mlflow.model_name, version).run_id
    run = client.get_run(run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["device"] == "cpu" and params["precision"] == "fp32"
    assert params["device_name"] == summary.usage["device_name"] != ""
    assert params["energy_source"] in {"rapl", "unavailable"}
    assert params["training.price_per_device_hour"] == "2.0"
    for key in ("samples_per_second", "wall_seconds", "train_seconds", "peak_memory_mb"):
        assert metrics[key] > 0, key
    # 1 device x wall hours x 2.0 per device-hour (wall_seconds is rounded to ms in the summary)
    wall_seconds = summary.usage["wall_seconds"]
    assert metrics["estimated_cost"] == pytest.approx(wall_seconds / 1800, rel=0.02)
    assert ("energy_joules" in metrics) == (params["energy_source"] != "unavailable")
    epochs = config.training.epochs
    for key in ("train_loss", "val_loss", "lr", "epoch_seconds"):
        series = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in series) == list(range(epochs)), key
    last = max(client.get_metric_history(run_id, "val_loss"), key=lambda m: m.step)
    assert last.value == pytest.approx(summary.val_loss)


def test_search_logs_child_runs_and_hands_the_best_to_training(
    local_mlflow: tuple[PlatformConfig, Path], tmp_path: Path
) -> None:
    config, training_set = local_mlflow
    outcome = steps.search_hyperparameters(config, training_set, "run-7")
    client = MlflowClient(config.mlflow.tracking_uri)
    parent = client.get_run(outcome["run_id"])
    assert parent.info.run_name == "search-run-7"
    assert parent.data.tags["aiinfra.kind"] == "search"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{outcome['run_id']}'"
    )
    assert len(children) == outcome["trials"] == 4
    complete = [c for c in children if c.data.tags["trial_state"] == "complete"]
    assert complete and outcome["pruned"] == 4 - len(complete)
    assert outcome["best_val_loss"] == pytest.approx(
        min(c.data.metrics["best_val_loss"] for c in complete)
    )
    steps_logged = client.get_metric_history(complete[0].info.run_id, "val_loss")
    assert sorted(m.step for m in steps_logged) == [0, 1, 2]

    best = outcome["hyperparameters"]
    space = config.training.search
    assert best["hidden_sizes"] in space.hidden_sizes
    assert space.learning_rate[0] <= best["learning_rate"] <= space.learning_rate[1]
    assert space.dropout[0] <= best["dropout"] <= space.dropout[1]

    summary = steps.train_model(config, training_set, tmp_path / "model", outcome)
    assert summary.hyperparameters == best and summary.search_run_id == outcome["run_id"]
    model = TabularModel.load(tmp_path / "model")
    assert model.model.entry_point == "builtin:mlp"
    assert model.model.settings["hidden_sizes"] == best["hidden_sizes"]
    assert model.model.settings["dropout"] == pytest.approx(best["dropout"])
