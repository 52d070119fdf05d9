"""The spec a Kubeflow cluster runs, for the cluster profile: a golden file per pipeline
(training, monitoring) plus the checks that matter, spelled out. Regenerate the goldens after an
intended change with `make golden` (AIINFRA_UPDATE_GOLDEN=1) and review their diff like code."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, config_from_json, load_config
from pipelines.monitoring import build_monitoring_pipeline
from pipelines.training import build_pipeline, pipeline_name
from tests.conftest import SMOKE
from tests.pipelines.test_compile import STEPS

CLUSTER = PROJECT_ROOT / "configs" / "cluster.yaml"
GOLDENS = Path(__file__).with_name("golden")
PIPELINES: dict[str, Callable[[PlatformConfig], Any]] = {
    "training": build_pipeline,
    "monitoring": build_monitoring_pipeline,
}
PROFILE_PLACEHOLDER = "<configs/cluster.yaml as JSON: checked in test_the_profile_is_the_default>"
# Read before clean_env removes every AIINFRA_* variable.
UPDATE = os.environ.get("AIINFRA_UPDATE_GOLDEN") == "1"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The golden is the profile as committed: no developer's AIINFRA_* overrides.
    for name in list(os.environ):
        if name.startswith("AIINFRA_"):
            monkeypatch.delenv(name)


def compile_docs(
    config: PlatformConfig, tmp_path: Path, build: Callable[[PlatformConfig], Any] = build_pipeline
) -> list[dict[str, Any]]:
    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build(config), str(out))
    return [d for d in yaml.safe_load_all(out.read_text()) if d]


def normalise(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what changes without the spec changing: the SDK version, the Python bodies of the
    components (their interfaces stay: inputs, outputs, images, resources) and the profile
    JSON (config fields come and go with other work; its content is checked separately), also
    where a nested pipeline declares it."""
    spec = json.loads(json.dumps(docs[0]))
    spec["sdkVersion"] = "<kfp>"
    for component in [spec["root"], *spec["components"].values()]:
        profile = component.get("inputDefinitions", {}).get("parameters", {}).get("config_json")
        if profile and "defaultValue" in profile:
            profile["defaultValue"] = PROFILE_PLACEHOLDER
    for executor in spec["deploymentSpec"]["executors"].values():
        command = executor["container"]["command"]
        executor["container"]["command"] = [
            re.sub(r"(?s).*\ndef (\w+)\(.*", r"<component source: \1>", part) for part in command
        ]
    return [spec, *docs[1:]]


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=True, width=100)


@pytest.fixture
def cluster(clean_env: None, tmp_path: Path) -> tuple[PlatformConfig, dict[str, Any], dict]:  # type: ignore[type-arg]
    config = load_config(CLUSTER)
    docs = compile_docs(config, tmp_path)
    assert len(docs) == 2, "the cluster spec has a Kubernetes platform document"
    return config, docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_compiled_spec_matches_the_golden(clean_env: None, tmp_path: Path, pipeline: str) -> None:
    golden = GOLDENS / f"{pipeline}-cluster.yaml"
    text = dump(normalise(compile_docs(load_config(CLUSTER), tmp_path, PIPELINES[pipeline])))
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    expected = golden.read_text()
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(True), text.splitlines(True), str(golden), "compiled now"
        )
    )
    assert not diff, f"the compiled cluster spec changed (intended? `make golden`):\n{diff}"


def test_every_step_runs_on_the_configured_image(cluster) -> None:  # type: ignore[no-untyped-def]
    config, spec, _ = cluster
    executors = spec["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == STEPS
    assert {e["container"]["image"] for e in executors.values()} == {config.kfp.image}
    assert config.kfp.image.startswith("ghcr.io/ai-infrastructure/aiinfra-components:")
    assert spec["pipelineInfo"]["name"] == pipeline_name(config) == "loan-default-training"


def test_training_asks_for_a_gpu_and_nothing_else_does(cluster) -> None:  # type: ignore[no-untyped-def]
    config, spec, _ = cluster
    executors = spec["deploymentSpec"]["executors"]
    resources = executors["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == config.training.accelerator_type
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["resourceCpuRequest"] == "4"
    assert resources["resourceMemoryRequest"] == "16Gi"
    others = [n for n, e in executors.items() if n != "exec-train-model"]
    assert not any("accelerator" in executors[n]["container"].get("resources", {}) for n in others)


def test_promotion_runs_only_inside_the_gate_condition(cluster) -> None:  # type: ignore[no-untyped-def]
    _, spec, _ = cluster
    root = spec["root"]["dag"]["tasks"]
    assert "promote-model" not in root
    gate = next(t for t in root.values() if t["taskInfo"]["name"] == "gate-passed")
    condition = gate["triggerPolicy"]["condition"]
    assert "pipelinechannel--evaluate-model-Output" in condition and "== true" in condition
    body = spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == {"promote-model"}
    assert set(gate["dependentTasks"]) >= {"evaluate-model", "register-model"}


def _task(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for component in [spec["root"], *spec["components"].values()]:
        tasks = component.get("dag", {}).get("tasks", {})
        if name in tasks:
            return dict(tasks[name])
    raise KeyError(name)


def test_only_reading_the_stores_is_retried(cluster) -> None:  # type: ignore[no-untyped-def]
    config, spec, _ = cluster
    retry = _task(spec, "build-training-set")["retryPolicy"]
    assert retry["maxRetryCount"] == config.kfp.build_retries == 2
    assert retry["backoffDuration"] == "30s" and retry["backoffFactor"] == 2.0
    for name in STEPS - {"build-training-set"}:
        assert "retryPolicy" not in _task(spec, name), f"{name} must not be retried"


def test_caching_never_reuses_data_comparisons_or_registry_changes(cluster) -> None:  # type: ignore[no-untyped-def]
    config, spec, _ = cluster
    assert config.kfp.enable_caching
    never = {"build-training-set", "evaluate-model", "register-model", "promote-model"}
    for name in never:
        assert not _task(spec, name)["cachingOptions"].get("enableCache"), name
    for name in STEPS - never:
        assert _task(spec, name)["cachingOptions"] == {"enableCache": True}, name


def test_every_task_mounts_the_volume_and_gets_the_secrets(cluster) -> None:  # type: ignore[no-untyped-def]
    config, _, platform = cluster
    assert {name.removeprefix("exec-") for name in platform} == STEPS
    for executor in platform.values():
        assert executor["pvcMount"][0]["constant"] == config.kfp.pvc == "aiinfra-home"
        assert executor["pvcMount"][0]["mountPath"] == str(config.home) == "/var/lib/aiinfra"
        secret = executor["secretAsEnv"][0]
        assert secret["secretName"] == "aiinfra-secrets"
        assert {k["secretKey"]: k["envVar"] for k in secret["keyToEnv"]} == {
            "db-password": "PGPASSWORD",
            "redis-password": "AIINFRA_REDIS_PASSWORD",
        }


def test_the_profile_is_the_default_parameter_and_holds_no_secret(cluster) -> None:  # type: ignore[no-untyped-def]
    config, spec, _ = cluster
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"config_json", "git_commit", "trigger"}
    assert params["trigger"]["defaultValue"] == "", "a run a person starts has no trigger"
    default = params["config_json"]["defaultValue"]
    assert default == config.to_json()
    loaded = config_from_json(default)
    assert loaded.profile == "cluster" and loaded.features.online_store["type"] == "redis"
    # The project travels whole: where it lives in the image, its data, its model.
    assert loaded.project.root == Path("/opt/aiinfra")
    assert loaded.repo_path == Path("/opt/aiinfra/feature_repo")
    assert loaded.project.name == "loan-default" and loaded.project.task == "binary"
    assert loaded.features.feature_service == "loan_default_v1"
    assert loaded.project.generator is not None
    assert loaded.project.generator.entry_point == "examples.loan_default.data:write"
    assert loaded.model == config.model and loaded.model.entry_point == "builtin:mlp"
    assert loaded.gate == config.gate
    assert loaded.mlflow.tracking_uri.startswith("http://mlflow.aiinfra.svc")
    # Passwords stay references, expanded from the task's environment (the Secret).
    assert "password=${AIINFRA_REDIS_PASSWORD}" in default
    assert not re.search(r"postgresql(\+\w+)?://[^@/]*:[^@/]*@", default), "no password in a DB URI"


def test_the_local_profile_spec_stays_plain(tmp_path: Path) -> None:
    """Without a cluster, nothing Kubernetes-specific and nothing cached."""
    docs = compile_docs(load_config(SMOKE, home=tmp_path), tmp_path)
    assert len(docs) == 1
    for name in STEPS:
        assert not _task(docs[0], name)["cachingOptions"].get("enableCache"), name
