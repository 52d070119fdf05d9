"""Nothing built from a registry tag, an artifact URI, a request or a config value lands
outside the directory it belongs in. Tried with ``..`` steps and absolute paths against the
real MLflow server (whose own checks we rely on, so a test pins them) and our own code."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from aiinfra.project.config import PlatformConfig, load_config
from aiinfra.release import registry
from aiinfra.training.model import TabularModel
from tests.serving.conftest import register


def test_a_version_cannot_name_a_source_outside_its_runs_artifacts(
    fresh: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    """A version's source is where serving downloads from: it may not be another place on
    the registry's disk, nor climb out of the run's artifacts."""
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    version = register(fresh, training_frame, model)
    c = registry.client(uri)
    run = c.get_run(c.get_model_version(name, version).run_id)
    for source in (
        "/etc",
        "file:///etc",
        f"{run.info.artifact_uri}/../../../../etc",
        f"{run.info.artifact_uri}/model/%2e%2e/%2e%2e/%2e%2e",
    ):
        with pytest.raises(MlflowException, match=r"(?i)invalid|not allowed|relative"):
            c.create_model_version(name, source=source, run_id=run.info.run_id)


@pytest.mark.parametrize("path", ["../../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt"])
def test_an_artifact_path_cannot_climb_out_of_the_run(fresh: PlatformConfig, path: str) -> None:
    c = registry.client(fresh.mlflow.tracking_uri)
    run = c.create_run(registry.experiment_id(c, "paths"))
    with pytest.raises(MlflowException):
        c.log_text(run.info.run_id, "x", path)
    assert not (fresh.mlflow_dir / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()


def test_a_download_that_lands_outside_its_folder_is_refused(
    fresh: PlatformConfig,
    training_frame: pd.DataFrame,
    model: TabularModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the artifact store answers, a version is only read from inside ``into``."""
    version = register(fresh, training_frame, model)
    outside = tmp_path / "elsewhere"
    model.save(outside / "model")
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda **_: str(outside))
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(ValueError, match="downloaded outside"):
        registry.download_version(fresh.mlflow.tracking_uri, fresh.model_name, version, into)


@pytest.mark.parametrize("home", ["../elsewhere/./home", "/tmp/a/../b/home"])
def test_home_is_resolved_and_all_state_stays_under_it(
    home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = load_config(home=home)
    assert config.home == config.home.resolve() and ".." not in config.home.parts
    for state in (
        config.data_dir,
        config.feast_dir,
        config.mlflow_dir,
        config.prediction_log_dir,
        config.run_dir,
    ):
        assert state.resolve().is_relative_to(config.home), state
