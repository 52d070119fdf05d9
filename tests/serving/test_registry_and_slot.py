"""Registry and hot-swap behaviour against a real MLflow server."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from aiinfra import registry, train
from aiinfra.config import PlatformConfig, TrainingConfig
from aiinfra.model import LoanModel
from aiinfra.serving import ChampionSlot

FAST = TrainingConfig(hidden_sizes=[8], epochs=2, device="cpu")


def _register(
    config: PlatformConfig, frame: pd.DataFrame, model: LoanModel, gate: str = "passed"
) -> str:
    tags = {"validation": "passed", "gate": gate, "data_hash": "test", "git_commit": "test"}
    return registry.log_and_register(
        config.mlflow.tracking_uri,
        "slot-tests",
        "slot-model",
        model,
        frame,
        {"epochs": 2},
        {"eval_roc_auc": 0.7},
        tags,
        {"gate.md": "# test"},
    ).version


@pytest.fixture(scope="module")
def model(training_frame: pd.DataFrame) -> LoanModel:
    return train.train(training_frame, FAST).model


@pytest.fixture()
def config(mlflow_server: PlatformConfig) -> PlatformConfig:
    return mlflow_server.model_copy(
        update={"mlflow": mlflow_server.mlflow.model_copy(update={"model_name": "slot-model"})}
    )


def test_register_tags_and_challenger_alias(
    config: PlatformConfig, training_frame: pd.DataFrame, model: LoanModel, tmp_path: Path
) -> None:
    version = _register(config, training_frame, model)
    uri = config.mlflow.tracking_uri
    assert registry.alias_version(uri, "slot-model", registry.CHALLENGER) == version
    assert registry.version_tags(uri, "slot-model", version)["data_hash"] == "test"
    loaded = registry.load_version(uri, "slot-model", version, tmp_path)
    assert (loaded.predict_proba(training_frame) == model.predict_proba(training_frame)).all()


def test_promotion_refuses_a_failed_gate_unless_forced(
    config: PlatformConfig, training_frame: pd.DataFrame, model: LoanModel
) -> None:
    uri = config.mlflow.tracking_uri
    version = _register(config, training_frame, model, gate="failed")
    before = registry.alias_version(uri, "slot-model", registry.CHAMPION)
    with pytest.raises(registry.PromotionRefused, match="gate=failed"):
        registry.promote(uri, "slot-model", version)
    assert registry.alias_version(uri, "slot-model", registry.CHAMPION) == before
    registry.promote(uri, "slot-model", version, actor="tester", reason="test", force=True)
    tags = registry.version_tags(uri, "slot-model", version)
    assert tags["promotion_forced"] == "true" and tags["promoted_by"] == "tester"
    with pytest.raises(registry.PromotionRefused, match="no version 999"):
        registry.promote(uri, "slot-model", "999")


def test_slot_swaps_to_a_good_champion_and_keeps_it_when_the_next_is_broken(
    config: PlatformConfig, training_frame: pd.DataFrame, model: LoanModel
) -> None:
    uri = config.mlflow.tracking_uri
    good = _register(config, training_frame, model)
    registry.promote(uri, "slot-model", good)
    slot = ChampionSlot(config)
    assert slot.refresh() and slot.served is not None and slot.served.version == good

    broken = train.train(training_frame, FAST).model
    with torch.no_grad():
        for p in broken.network.parameters():
            p.fill_(float("nan"))
    bad = _register(config, training_frame, broken)
    registry.promote(uri, "slot-model", bad)
    assert not slot.refresh()
    assert slot.served.version == good
    assert slot.last_error is not None and f"version {bad}" in slot.last_error
