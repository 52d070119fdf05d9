"""Registry and hot-swap behaviour against a real MLflow server."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime.champion import ChampionSlot
from aiinfra.training import train
from aiinfra.training.model import TabularModel
from tests.serving.conftest import FAST, SMALL
from tests.serving.conftest import register as _register


def test_register_tags_and_challenger_alias(
    config: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel, tmp_path: Path
) -> None:
    version = _register(config, training_frame, model)
    uri = config.mlflow.tracking_uri
    assert registry.alias_version(uri, "slot-model", registry.CHALLENGER) == version
    assert registry.version_tags(uri, "slot-model", version)["data_hash"] == "test"
    loaded = registry.load_version(uri, "slot-model", version, tmp_path)
    assert (loaded.predict(training_frame) == model.predict(training_frame)).all()
    assert loaded.schema == model.schema and loaded.classes == model.classes


def test_promotion_refuses_a_failed_gate_unless_forced(
    config: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
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
    config: PlatformConfig, training_frame: pd.DataFrame, schema: Schema, model: TabularModel
) -> None:
    uri = config.mlflow.tracking_uri
    good = _register(config, training_frame, model)
    registry.promote(uri, "slot-model", good)
    slot = ChampionSlot(config)
    assert slot.refresh() and slot.served is not None and slot.served.version == good

    broken = train.train(training_frame, schema, FAST, SMALL).model
    with torch.no_grad():
        for p in broken.network.parameters():
            p.fill_(float("nan"))
    bad = _register(config, training_frame, broken)
    registry.promote(uri, "slot-model", bad)
    assert not slot.refresh()
    assert slot.served.version == good
    assert slot.last_error is not None and f"version {bad}" in slot.last_error
    tags = registry.version_tags(uri, "slot-model", bad)
    assert "smoke check" in tags["deployment_error"]
    assert not slot.refresh()  # a rejected version is not reloaded on every poll


def test_every_champion_move_is_recorded_and_can_be_rolled_back(
    config: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    uri = config.mlflow.tracking_uri
    first, second = (_register(config, training_frame, model) for _ in range(2))
    registry.promote(uri, "slot-model", first, actor="alice", reason="first")
    registry.promote(uri, "slot-model", second, actor="bob", reason="better")
    assert registry.rollback(uri, "slot-model", actor="carol", reason="latency") == first
    assert registry.alias_version(uri, "slot-model", registry.CHAMPION) == first
    last_three = registry.history(uri, "slot-model")[-3:]
    assert [(m.to_version, m.by, m.kind) for m in last_three] == [
        (first, "alice", "promote"),
        (second, "bob", "promote"),
        (first, "carol", "rollback"),
    ]
    assert last_three[2].from_version == second and last_three[2].reason == "latency"


def test_concurrent_registrations_get_distinct_versions_and_one_passed_champion(
    config: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    uri = config.mlflow.tracking_uri

    def register_and_maybe_promote(i: int) -> str:
        gate = "passed" if i % 2 == 0 else "failed"
        version = _register(config, training_frame, model, gate=gate)
        if gate == "passed":
            registry.promote(uri, "slot-model", version, actor=f"run-{i}")
        return version

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(register_and_maybe_promote, range(6)))
    assert len(set(versions)) == 6
    champion = registry.alias_version(uri, "slot-model", registry.CHAMPION)
    assert champion in versions
    assert registry.version_tags(uri, "slot-model", str(champion))["gate"] == "passed"
    assert champion in {m.to_version for m in registry.history(uri, "slot-model")}


def test_a_champion_with_another_serving_contract_is_not_swapped_in(
    config: PlatformConfig, training_frame: pd.DataFrame, schema: Schema, model: TabularModel
) -> None:
    """A running service's request and response types were built from one schema: a champion
    trained with other request fields or classes is refused, and the reason recorded."""
    uri = config.mlflow.tracking_uri
    version = _register(config, training_frame, model)
    registry.promote(uri, "slot-model", version, actor="tester", reason="contract test")
    fewer = schema.with_features(tuple(f for f in schema.features if f.name != "purpose"))
    slot = ChampionSlot(config, fewer)
    assert not slot.refresh() and slot.served is None
    assert "restart the service" in (slot.last_error or "")
    assert (
        "restart the service"
        in registry.version_tags(uri, "slot-model", version)["deployment_error"]
    )
    same = ChampionSlot(config, schema)
    assert same.refresh() and same.served is not None and same.served.version == version


def test_a_service_without_the_label_table_serves_the_champions_recorded_schema(
    config: PlatformConfig, training_frame: pd.DataFrame, schema: Schema, model: TabularModel
) -> None:
    """A serving pod has the registry but not the label table: its types come from the schema
    recorded with @champion; with neither, the error names both."""
    import json

    from aiinfra.project.definition import ProjectError
    from aiinfra.runtime.api import serving_schema

    uri, c = config.mlflow.tracking_uri, registry.client(config.mlflow.tracking_uri)
    texts = {registry.REFERENCE_SCHEMA: json.dumps(schema.to_dict(), default=str)}
    tags = {"validation": "passed", "gate": "passed"}
    version = registry.log_and_register(
        c, "slot-tests", "slot-model", model, training_frame, {}, {}, tags, texts
    ).version
    registry.promote(uri, "slot-model", version, actor="tester", reason="schema test")
    assert not config.labels_path.exists()  # this home holds no label table
    assert serving_schema(config) == schema
    nobody = config.model_copy(
        update={"mlflow": config.mlflow.model_copy(update={"model_name": "no-such-model"})}
    )
    with pytest.raises(ProjectError, match="does not exist; and no @champion"):
        serving_schema(nobody)
