from pathlib import Path

import pytest

from aiinfra.project.config import PROJECT_ROOT, config_from_json, load_config
from aiinfra.project.config_errors import ConfigError
from tests.conftest import SMOKE, demo_settings


def test_smoke_profile_loads_with_overrides(tmp_path: Path) -> None:
    config = load_config(SMOKE, home=tmp_path)
    assert config.training.device == "cpu"
    assert demo_settings().n_loans == 1500  # the loan generator's settings of the profile
    assert config.data_dir == tmp_path / "data"


def test_environment_overrides_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIINFRA_TRAINING__EPOCHS", "3")
    assert load_config(SMOKE, home=tmp_path).training.epochs == 3


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: 0\n  epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    lines = str(err.value).splitlines()
    assert f"{bad}:2: training.epochs = 0: Input should be greater than or equal to 1" in lines
    assert f"{bad}:3: unknown setting 'training.epoch'; did you mean 'epochs'?" in lines


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_json_round_trip_ignores_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_config(SMOKE, home=tmp_path)
    monkeypatch.setenv("AIINFRA_TRAINING__EPOCHS", "99")
    assert config_from_json(config.to_json()) == config


def test_project_paths_and_names_are_derived_from_the_project(tmp_path: Path) -> None:
    config = load_config(SMOKE, home=tmp_path)
    assert config.project.root == PROJECT_ROOT  # "root: .." starts at configs/
    assert config.labels_path == tmp_path / "data" / "loans.parquet"  # {home} filled in
    assert config.repo_path == PROJECT_ROOT / "feature_repo"
    assert config.model_name == config.experiment == config.project.name == "loan-default"
    assert config.kfp.experiment == "loan-default"


def test_a_relative_project_root_starts_at_the_profile_folder(tmp_path: Path) -> None:
    folder = tmp_path / "team-project"
    folder.mkdir()
    profile = folder / "profile.yaml"
    profile.write_text(
        "project:\n  name: churn\n  labels: {path: labels.csv, entities: [id], label: y}\n"
        "features: {feature_service: churn_v1}\nmlflow: {model_name: churn-model}\n"
    )
    config = load_config(profile, home=tmp_path / "home")
    assert config.project.root == folder
    assert config.labels_path == folder / "labels.csv"
    assert config.repo_path == folder / "feature_repo"
    assert (config.model_name, config.experiment) == ("churn-model", "churn")
