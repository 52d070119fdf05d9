"""The monitoring pipeline as a Kubeflow cluster runs it: the monitor task, never cached, then
the training pipeline itself, nested under the condition that a rule fired, with the reason as
its ``trigger``. Also the component's own wiring, the CLI's ``compile --pipeline monitoring``
and scheduling it beside the training pipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler
from kfp.dsl import HTML, Markdown, Metrics

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, config_from_json, load_config
from components.monitoring import monitor_model
from pipelines import submit
from pipelines.monitoring import build_monitoring_pipeline, monitoring_pipeline_name
from pipelines.training import pipeline_name
from tests.conftest import SMOKE, run_cli
from tests.pipelines.test_compile import STEPS
from tests.pipelines.test_submit import FakeClient

CLUSTER = PROJECT_ROOT / "configs" / "cluster.yaml"
IMAGE = "registry.example/aiinfra-components:1.2.3"
MONITOR_OUTPUT = "pipelinechannel--monitor-model-Output"
# The training steps that are told why they run.
TOLD_THE_TRIGGER = {"validate-data", "evaluate-model", "register-model"}


def _compile(config: PlatformConfig, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "monitoring.yaml"
    compiler.Compiler().compile(build_monitoring_pipeline(config), str(out))
    return [d for d in yaml.safe_load_all(out.read_text()) if d]


@pytest.fixture
def spec(tmp_path: Path) -> dict[str, Any]:
    config = load_config(SMOKE, home=tmp_path, kfp={"image": IMAGE})
    docs = _compile(config, tmp_path)
    assert len(docs) == 1, "the local profile's spec has no Kubernetes document"
    return docs[0]


def _rules_fired(spec: dict[str, Any]) -> dict[str, Any]:
    root = spec["root"]["dag"]["tasks"]
    return dict(next(t for t in root.values() if t["taskInfo"]["name"] == "rules-fired"))


def _nested_training(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The training pipeline's task inside the condition, and its component (a DAG)."""
    body = spec["components"][_rules_fired(spec)["componentRef"]["name"]]["dag"]["tasks"]
    assert len(body) == 1, f"only the training pipeline runs when a rule fires: {list(body)}"
    (task,) = body.values()
    return task, spec["components"][task["componentRef"]["name"]]


def test_the_monitor_runs_first_uncached_on_the_configured_image(spec: dict[str, Any]) -> None:
    assert spec["pipelineInfo"]["name"] == "loan-default-monitoring"
    assert monitoring_pipeline_name(load_config(SMOKE)) == "loan-default-monitoring"
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"monitor-model", "condition-1"}
    monitor = root["monitor-model"]
    assert "dependentTasks" not in monitor
    assert not monitor["cachingOptions"].get("enableCache"), "a cached verdict would be stale"
    assert monitor["inputs"]["parameters"]["config"] == {"componentInputParameter": "config_json"}
    outputs = spec["components"]["comp-monitor-model"]["outputDefinitions"]
    artifacts = {k: v["artifactType"]["schemaTitle"] for k, v in outputs["artifacts"].items()}
    assert artifacts == {
        "report": "system.HTML",
        "summary": "system.Markdown",
        "metrics": "system.Metrics",
    }
    assert outputs["parameters"] == {"Output": {"parameterType": "STRING"}}
    executors = spec["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == STEPS | {"monitor-model"}
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"config_json", "git_commit"}
    assert config_from_json(params["config_json"]["defaultValue"]).kfp.image == IMAGE


def test_training_runs_only_when_a_rule_fired(spec: dict[str, Any]) -> None:
    gate = _rules_fired(spec)
    assert gate["dependentTasks"] == ["monitor-model"]
    assert (
        gate["triggerPolicy"]["condition"] == f"inputs.parameter_values['{MONITOR_OUTPUT}'] != ''"
    )
    assert gate["inputs"]["parameters"][MONITOR_OUTPUT] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "monitor-model"}
    }


def test_the_nested_training_pipeline_gets_the_trigger(spec: dict[str, Any]) -> None:
    task, training = _nested_training(spec)
    assert task["componentRef"]["name"] == f"comp-{pipeline_name(load_config(SMOKE))}"
    assert task["taskInfo"]["name"] == "retrain"
    assert not task["cachingOptions"].get("enableCache"), "a retraining run is never replayed"
    assert task["inputs"]["parameters"] == {
        "config_json": {"componentInputParameter": "pipelinechannel--config_json"},
        "git_commit": {"componentInputParameter": "pipelinechannel--git_commit"},
        "trigger": {"componentInputParameter": MONITOR_OUTPUT},
    }
    # The whole training pipeline, its gate included, and its steps read the trigger it got.
    steps = training["dag"]["tasks"]
    assert set(steps) == (STEPS - {"promote-model"}) | {"condition-1"}
    for name in TOLD_THE_TRIGGER:
        assert steps[name]["inputs"]["parameters"]["trigger"] == {
            "componentInputParameter": "trigger"
        }, name
    assert set(training["inputDefinitions"]["parameters"]) == {
        "config_json",
        "git_commit",
        "trigger",
    }


def test_on_the_cluster_the_monitor_gets_the_volume_and_training_keeps_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):  # the profile as committed, no AIINFRA_* overrides
        if name.startswith("AIINFRA_"):
            monkeypatch.delenv(name)
    config = load_config(CLUSTER)
    spec, platform = _compile(config, tmp_path)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == STEPS | {"monitor-model"}
    monitor = executors["exec-monitor-model"]
    assert monitor["pvcMount"][0]["mountPath"] == str(config.home)
    assert monitor["secretAsEnv"][0]["secretName"] == config.kfp.secret
    assert not spec["root"]["dag"]["tasks"]["monitor-model"]["cachingOptions"].get("enableCache")
    _, training = _nested_training(spec)
    steps = training["dag"]["tasks"]
    assert steps["validate-data"]["cachingOptions"] == {"enableCache": True}
    assert steps["build-training-set"]["retryPolicy"]["maxRetryCount"] == config.kfp.build_retries
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == config.training.accelerator_type


def test_the_component_returns_the_trigger_and_logs_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The component's own wiring; what the step finds is tested with the monitor."""
    config = load_config(SMOKE, home=tmp_path)
    seen: dict[str, Any] = {}

    def monitor_serving(cfg: PlatformConfig, html_out: Path, markdown_out: Path) -> Any:
        seen.update(config=cfg, html=html_out, markdown=markdown_out)
        return "error rate 0.2 > 0.05", {"monitor_rows": 120.0, "live_accuracy": 0.71}

    monkeypatch.setattr("aiinfra.steps.monitor_serving", monitor_serving)
    report, summary = HTML(uri=str(tmp_path / "report.html")), Markdown(uri=str(tmp_path / "s.md"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    trigger = monitor_model(config.to_json(), report, summary, metrics)
    assert trigger == "error rate 0.2 > 0.05"
    assert metrics.metadata == {"monitor_rows": 120.0, "live_accuracy": 0.71}
    assert seen["config"] == config
    assert (seen["html"], seen["markdown"]) == (tmp_path / "report.html", tmp_path / "s.md")


def test_cli_compiles_the_monitoring_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "monitoring.yaml"
    done = run_cli(tmp_path, "compile", "--pipeline", "monitoring", "-o", str(out), "--allow-local")
    assert done.returncode == 0, done.stderr
    spec = yaml.safe_load(out.read_text())
    assert spec["pipelineInfo"]["name"] == "loan-default-monitoring"
    assert "monitor-model" in spec["root"]["dag"]["tasks"]
    wrong = run_cli(tmp_path, "compile", "--pipeline", "serving", "-o", str(out), "--allow-local")
    assert wrong.returncode != 0 and "serving" in wrong.stderr


def test_compile_still_refuses_a_local_profile_for_the_monitoring_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "monitoring.yaml"
    done = run_cli(tmp_path, "compile", "--pipeline", "monitoring", "-o", str(out))
    assert done.returncode == 1 and "--allow-local" in done.stderr
    assert not out.exists()


def test_scheduling_monitoring_leaves_the_training_schedule_alone() -> None:
    config = load_config(CLUSTER)
    training_schedule = f"{pipeline_name(config)}-scheduled"
    fake = FakeClient(
        known=False, schedules=(training_schedule, "loan-default-monitoring-scheduled")
    )
    done = submit.schedule(config, "abc123", cron="0 0 * * * *", client=fake, which="monitoring")
    assert fake.call("get_pipeline_id") == {"name": "loan-default-monitoring"}
    assert fake.call("upload_pipeline")["pipeline_name"] == "loan-default-monitoring"
    assert fake.packages[0][0]["pipelineInfo"]["name"] == "loan-default-monitoring"
    assert fake.call("delete_recurring_run") == {"recurring_run_id": "rec-1"}
    assert fake.names().count("delete_recurring_run") == 1, "the training schedule stays"
    created = fake.call("create_recurring_run")
    assert created["job_name"] == "loan-default-monitoring-scheduled"
    assert created["cron_expression"] == "0 0 * * * *"
    # The monitoring pipeline declares no trigger: the API refuses a run given one.
    assert set(created["params"]) == {"config_json", "git_commit"}
    assert config_from_json(created["params"]["config_json"]) == config
    assert done.run_id == "rec-new"
