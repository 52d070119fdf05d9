"""The retraining workflow (GitHub Actions): it lints clean and starts a run when it should."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiinfra.project.config import PROJECT_ROOT

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "retrain.yml"


def load() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def test_workflow_passes_actionlint() -> None:
    found = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(found).exists():
        pytest.skip("actionlint is not installed (it is in the dev dependencies: make setup)")
    done = subprocess.run([found, str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_triggers_schedule_dispatch_and_changes_to_what_the_model_learns_from() -> None:
    on = load()["on"]
    assert on["schedule"][0]["cron"]
    assert on["workflow_dispatch"]["inputs"]["if_drifted"]["type"] == "boolean"
    paths = on["push"]["paths"]
    # The project definition (schema, config), its Feast repo, its generator, its profiles.
    for watched in (
        "feature_repo/**", "examples/loan_default/**", "src/aiinfra/project/**", "configs/**"
    ):  # fmt: skip
        assert watched in paths
    for path in paths:  # each pattern names something that exists
        assert list(PROJECT_ROOT.glob(path.replace("/**", ""))), path


def test_tests_pass_before_a_run_starts_on_the_cluster_or_here() -> None:
    workflow = load()
    assert workflow["permissions"] == {"contents": "read"}
    test, retrain = workflow["jobs"]["test"], workflow["jobs"]["retrain"]
    assert any(step.get("run") == "bash .ci/run" for step in test["steps"])
    assert retrain["needs"] == "test"
    assert retrain["env"]["KFP_HOST"] == "${{ secrets.KFP_HOST }}"
    steps = {step.get("name"): step for step in retrain["steps"]}
    cluster = steps["Submit a run to the cluster"]
    assert cluster["if"] == "env.KFP_HOST != ''"
    assert "--config configs/cluster.yaml submit" in cluster["run"]
    local = steps["Run the pipeline here (smoke profile, kfp.local)"]
    assert local["if"] == "env.KFP_HOST == ''"
    assert "--config configs/smoke.yaml" in local["run"]
    assert "retrain --if-drifted" in local["run"] and "aiinfra retrain\n" in local["run"]
