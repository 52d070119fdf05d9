"""The train task asks the cluster for what the config says (accelerator, CPU, memory), and
the optional search task sits between validation and training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kfp import compiler

from aiinfra.project.config import load_config
from pipelines.training import build_pipeline
from tests.conftest import SMOKE

GPU = {
    "accelerator_type": "nvidia.com/gpu",
    "accelerator_limit": 2,
    "cpu_request": "8",
    "memory_request": "32Gi",
}


def _compile(tmp_path: Path, **training: Any) -> dict[str, Any]:
    config = load_config(SMOKE, home=tmp_path, training=training)
    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(config), str(out))
    spec: dict[str, Any] = next(yaml.safe_load_all(out.read_text()))
    return spec


def _resources(spec: dict[str, Any], task: str) -> dict[str, Any] | None:
    container = spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]
    resources: dict[str, Any] | None = container.get("resources")
    return resources


def test_train_task_requests_the_configured_accelerator(tmp_path: Path) -> None:
    resources = _resources(_compile(tmp_path, **GPU), "train-model")
    assert resources is not None
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert resources["resourceCpuRequest"] == "8"
    assert resources["resourceMemoryRequest"] == "32Gi"


def test_nothing_requested_unless_configured(tmp_path: Path) -> None:
    spec = _compile(tmp_path)
    assert all(
        e["container"].get("resources") is None
        for e in spec["deploymentSpec"]["executors"].values()
    )
    assert "search-hyperparameters" not in spec["root"]["dag"]["tasks"]
    train_inputs = spec["root"]["dag"]["tasks"]["train-model"]["inputs"]["parameters"]
    assert train_inputs["search"]["runtimeValue"]["constant"] == "{}"


def test_search_task_feeds_training_and_gets_the_same_resources(tmp_path: Path) -> None:
    spec = _compile(tmp_path, search={"trials": 5}, **GPU)
    tasks = spec["root"]["dag"]["tasks"]
    search = tasks["search-hyperparameters"]
    assert "validate-data" in search["dependentTasks"]
    train_inputs = tasks["train-model"]["inputs"]["parameters"]
    assert train_inputs["search"]["taskOutputParameter"]["producerTask"] == "search-hyperparameters"
    assert _resources(spec, "search-hyperparameters") == _resources(spec, "train-model")
