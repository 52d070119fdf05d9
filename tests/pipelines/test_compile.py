"""The compiled IR YAML is what a Kubeflow cluster runs: check it holds the whole flow."""

import subprocess
import sys
from pathlib import Path

import yaml
from kfp import compiler, components

from aiinfra.project.config import load_config
from pipelines.training import build_pipeline, pipeline_name
from tests.conftest import SMOKE, run_cli

NAME = "loan-default-training"  # <project.name>-training of the smoke profile
STEPS = {
    "build-training-set",
    "validate-data",
    "train-model",
    "evaluate-model",
    "register-model",
    "promote-model",
}


def _compile(tmp_path: Path, image: str = "registry.example/aiinfra-components:1.2.3") -> dict:  # type: ignore[type-arg]
    config = load_config(SMOKE, home=tmp_path, kfp={"image": image})
    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(config), str(out))
    return yaml.safe_load(out.read_text())


def test_every_step_runs_on_the_configured_image(tmp_path: Path) -> None:
    spec = _compile(tmp_path)
    assert spec["pipelineInfo"]["name"] == NAME == pipeline_name(load_config(SMOKE))
    executors = spec["deploymentSpec"]["executors"]
    assert {e.removeprefix("exec-") for e in executors} == STEPS
    assert {e["container"]["image"] for e in executors.values()} == {
        "registry.example/aiinfra-components:1.2.3"
    }
    # Nothing is pip-installed at task start on the cluster: the image carries the project.
    assert not any(
        "pip install" in " ".join(e["container"].get("command", [])) for e in executors.values()
    )


def test_promotion_is_gated_on_the_evaluation(tmp_path: Path) -> None:
    spec = _compile(tmp_path)
    dag = spec["root"]["dag"]["tasks"]
    gate = next(t for name, t in dag.items() if name.startswith("condition"))
    assert "evaluate-model" in gate["triggerPolicy"]["condition"]
    assert "promote-model" in spec["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert set(dag["train-model"]["dependentTasks"]) >= {"validate-data"}


def test_artifacts_are_typed_for_the_ui(tmp_path: Path) -> None:
    spec = _compile(tmp_path)
    outputs = {
        name: {
            k: v["artifactType"]["schemaTitle"]
            for k, v in c.get("outputDefinitions", {}).get("artifacts", {}).items()
        }
        for name, c in spec["components"].items()
    }
    assert outputs["comp-build-training-set"] == {"training_set": "system.Dataset"}
    assert outputs["comp-validate-data"] == {"report": "system.HTML", "summary": "system.Markdown"}
    assert outputs["comp-train-model"] == {"model": "system.Model", "metrics": "system.Metrics"}
    assert outputs["comp-evaluate-model"]["classification"] == "system.ClassificationMetrics"


def test_config_is_the_default_parameter_and_loads_back(tmp_path: Path) -> None:
    spec = _compile(tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert '"n_loans":1500' in params["config_json"]["defaultValue"]
    component = components.load_component_from_file(str(tmp_path / "pipeline.yaml"))
    assert component.name == NAME


def test_cli_compile_writes_yaml(tmp_path: Path) -> None:
    out = tmp_path / "cli.yaml"
    done = run_cli(tmp_path, "compile", "-o", str(out), "--allow-local")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out.read_text())["pipelineInfo"]["name"] == NAME


def test_library_does_not_import_kfp() -> None:
    code = (
        "import sys, aiinfra.steps, aiinfra.runtime.api, aiinfra.runtime.champion,"
        " aiinfra.runtime.prediction_log, aiinfra.release.registry, aiinfra.ops.local_servers;"
        "bad = [m for m in ('kfp', 'components', 'pipelines', 'aiinfra_cli') if m in sys.modules];"
        "sys.exit(f'library imported {bad}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
