"""The registry and the champion slot fail closed: an outage is never read as "no champion",
a stale comparison never promotes, a transient fault is retried, and only a version that
passed its checks (or whose forced promotion is recorded) is ever served."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from aiinfra import steps
from aiinfra.data.training_set import write_training_set
from aiinfra.ops.local_servers import free_port
from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime.champion import ChampionSlot
from aiinfra.training.model import TabularModel
from tests.serving.conftest import register


@pytest.fixture()
def outage(mlflow_server: PlatformConfig, monkeypatch: pytest.MonkeyPatch) -> PlatformConfig:
    """A config whose registry is down: nothing listens on its port."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    return mlflow_server.model_copy(
        update={"mlflow": mlflow_server.mlflow.model_copy(update={"tracking_uri": uri})}
    )


def test_a_registry_outage_is_an_error_not_no_champion(outage: PlatformConfig) -> None:
    uri, name = outage.mlflow.tracking_uri, outage.model_name
    with pytest.raises(registry.RegistryUnavailable, match="could not read @champion"):
        registry.alias_version(uri, name, registry.CHAMPION)
    with pytest.raises(registry.RegistryUnavailable):
        registry.champion_schema(uri, name)
    with pytest.raises(registry.RegistryUnavailable):
        registry.champion_reference(uri, name)
    with pytest.raises(MlflowException):
        registry.history(uri, name)


def test_evaluation_stops_when_the_registry_cannot_say_who_the_champion_is(
    outage: PlatformConfig,
    training_frame: pd.DataFrame,
    schema: Schema,
    model: TabularModel,
    tmp_path: Path,
) -> None:
    """Before the fix, the gate saw "no champion yet" and passed on the floors alone."""
    training_set = tmp_path / "training_set.parquet"
    write_training_set(training_frame, schema, training_set)
    model.save(tmp_path / "model")
    with pytest.raises(registry.RegistryUnavailable):
        steps.evaluate_model(outage, training_set, tmp_path / "model")


def test_absent_models_and_aliases_are_still_none(fresh: PlatformConfig) -> None:
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    assert registry.alias_version(uri, name, registry.CHAMPION) is None
    assert registry.history(uri, name) == []


def test_a_promotion_evaluated_against_a_champion_that_has_moved_is_refused(
    fresh: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    """Two runs evaluated against v1; the first to finish promotes; the second must not."""
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    first = register(fresh, training_frame, model, champion_at_evaluation="none")
    registry.promote(uri, name, first, as_evaluated=True)
    early, late = (
        register(fresh, training_frame, model, champion_at_evaluation=first) for _ in range(2)
    )
    registry.promote(uri, name, early, as_evaluated=True)
    with pytest.raises(registry.PromotionRefused, match=f"compared with version {first}"):
        registry.promote(uri, name, late, as_evaluated=True)
    assert registry.alias_version(uri, name, registry.CHAMPION) == early
    assert "evaluate it again" in registry.version_tags(uri, name, late)["promotion_refused"]
    # A person's promotion is a decision, not a stale comparison: allowed.
    registry.promote(uri, name, late, actor="tester", reason="by hand")
    assert registry.alias_version(uri, name, registry.CHAMPION) == late


def test_rollbacks_walk_back_through_the_champions_and_never_forth(
    fresh: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    v1, v2, v3 = (register(fresh, training_frame, model) for _ in range(3))
    for version in (v1, v2, v3):
        registry.promote(uri, name, version)
    assert registry.rollback(uri, name) == v2
    assert registry.rollback(uri, name) == v1  # before the fix: back to v3
    with pytest.raises(registry.PromotionRefused, match="no previous version"):
        registry.rollback(uri, name)
    assert registry.alias_version(uri, name, registry.CHAMPION) == v1


def test_a_retried_register_task_returns_the_version_it_registered(
    fresh: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    c = registry.client(fresh.mlflow.tracking_uri)
    assert registry.version_of_run(c, fresh.model_name, "run-a") is None
    version = register(fresh, training_frame, model, pipeline_run="run-a")
    register(fresh, training_frame, model, pipeline_run="run-b")
    assert registry.version_of_run(c, fresh.model_name, "run-a") == version


def test_a_champion_that_did_not_pass_its_checks_is_not_served(
    fresh: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    """@champion moved by hand (the MLflow UI) onto a failed version: the service refuses it;
    once a person forces the promotion (recorded), it is served."""
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    failed = register(fresh, training_frame, model, gate="failed")
    registry.client(uri).set_registered_model_alias(name, registry.CHAMPION, failed)
    slot = ChampionSlot(fresh)
    assert not slot.refresh() and slot.served is None
    assert "did not pass validation and the gate" in (slot.last_error or "")
    assert "gate=failed" in registry.version_tags(uri, name, failed)["deployment_error"]
    registry.promote(uri, name, failed, actor="tester", reason="accepted risk", force=True)
    assert slot.refresh() and slot.served is not None and slot.served.version == failed


def test_a_transient_fetch_failure_is_retried_not_remembered(
    fresh: PlatformConfig,
    training_frame: pd.DataFrame,
    model: TabularModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    version = register(fresh, training_frame, model)
    registry.promote(uri, name, version)
    real = registry.download_version
    failures = iter([MlflowException("API request failed: 503 Service Unavailable")])

    def flaky(*args: object, **kwargs: object) -> Path:
        for exc in failures:
            raise exc
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "download_version", flaky)
    slot = ChampionSlot(fresh)
    assert not slot.refresh() and "will retry" in (slot.last_error or "")
    assert "deployment_error" not in registry.version_tags(uri, name, version)
    assert slot.refresh() and slot.served is not None and slot.served.version == version


def test_a_saved_model_is_checked_before_anything_is_built_from_it(
    model: TabularModel, tmp_path: Path
) -> None:
    folder = model.save(tmp_path / "saved")
    spec_path = folder / "model.json"
    spec = json.loads(spec_path.read_text())
    # Weights of another network: refused from the file's header, before allocation (an
    # unchecked spec of this size would allocate tens of GB).
    spec["settings"] = {**spec["settings"], "hidden_sizes": [200_000, 200_000]}
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="weights do not fit the network of the spec"):
        TabularModel.load(folder)
    # A spec naming code this project does not use is not imported.
    spec["entry_point"] = "os:system"
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="not one this project uses"):
        TabularModel.load(folder, trusted={"builtin:mlp"})


def test_a_rollback_to_a_forced_champion_stays_servable(
    fresh: PlatformConfig, training_frame: pd.DataFrame, model: TabularModel
) -> None:
    """v2 failed its gate and served by a forced promotion; after v3 and a rollback it is
    champion again, and a service (re)started now still serves it."""
    uri, name = fresh.mlflow.tracking_uri, fresh.model_name
    v1 = register(fresh, training_frame, model)
    v2 = register(fresh, training_frame, model, gate="failed")
    v3 = register(fresh, training_frame, model)
    registry.promote(uri, name, v1)
    registry.promote(uri, name, v2, force=True)
    registry.promote(uri, name, v3)
    assert registry.rollback(uri, name) == v2
    assert registry.version_tags(uri, name, v2)["promotion_forced"] == "true"
    assert registry.history(uri, name)[-1].forced
    slot = ChampionSlot(fresh)
    assert slot.refresh() and slot.served is not None and slot.served.version == v2
