from pathlib import Path

import pytest
from pydantic import ValidationError

from aiinfra.project.config import config_from_json, load_config
from tests.conftest import SMOKE


def test_smoke_profile_loads_with_overrides(tmp_path: Path) -> None:
    config = load_config(SMOKE, home=tmp_path)
    assert config.training.device == "cpu"
    assert config.data.n_loans == 1500
    assert config.data_dir == tmp_path / "data"


def test_environment_overrides_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIINFRA_TRAINING__EPOCHS", "3")
    assert load_config(SMOKE, home=tmp_path).training.epochs == 3


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: 0\n  epoch: 3\n")
    with pytest.raises(ValidationError) as err:
        load_config(bad)
    message = str(err.value)
    assert "training.epochs" in message and "training.epoch" in message


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_json_round_trip_ignores_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_config(SMOKE, home=tmp_path)
    monkeypatch.setenv("AIINFRA_TRAINING__EPOCHS", "99")
    assert config_from_json(config.to_json()) == config
