"""The retraining workflow (GitHub Actions): it lints clean and starts a run when it should."""

from __future__ import annotations

import re
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


def _steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec["steps"]]


def test_actions_are_pinned_by_commit() -> None:
    """A tag of an action can be moved to other code; a commit cannot. The tag stays in a
    comment for people and update tools."""
    uses = [step["uses"] for _, step in _steps(load()) if "uses" in step]
    assert {u.split("@")[0] for u in uses} >= {"actions/checkout", "actions/upload-artifact"}
    text = WORKFLOW.read_text()
    for use in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", use), use
        assert re.search(rf"{re.escape(use)}  # v\d+\.\d+\.\d+$", text, re.MULTILINE), use


def test_checkouts_leave_no_token_behind() -> None:
    """Without persist-credentials: false, checkout writes the job's GitHub token into
    .git/config, where every later step (and what it installs) can read it."""
    workflow = load()
    checkouts = [
        (job, step)
        for job, step in _steps(workflow)
        if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert {job for job, _ in checkouts} == set(workflow["jobs"])
    for job, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, job


def test_the_kfp_token_reaches_only_the_step_that_submits() -> None:
    workflow = load()
    assert "KFP_TOKEN" not in workflow.get("env", {})
    for job, spec in workflow["jobs"].items():
        assert "KFP_TOKEN" not in spec.get("env", {}), job
    holders = [
        (job, step.get("name"))
        for job, step in _steps(workflow)
        if "KFP_TOKEN" in step.get("env", {})
    ]
    assert holders == [("retrain", "Submit a run to the cluster")]
    steps = {step.get("name"): step for _, step in _steps(workflow)}
    assert steps["Submit a run to the cluster"]["env"]["KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"
    assert WORKFLOW.read_text().count("secrets.KFP_TOKEN") == 1
