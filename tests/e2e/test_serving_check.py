"""Serve before promote, through real BentoML processes: the platform's first promotion was
checked (recorded on the version and in its gate report); a version that answers otherwise
than the evaluated model, or too slowly, is refused with the reason."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from aiinfra.ops import local_servers, serving_check
from aiinfra.project.config import PlatformConfig
from aiinfra.release import registry
from aiinfra.steps import sample_rows
from aiinfra.training.model import TabularModel
from aiinfra_cli.workflow import TrainingOutcome

pytestmark = pytest.mark.e2e


def _registered(platform: PlatformConfig, version: str) -> TabularModel:
    with tempfile.TemporaryDirectory() as tmp:
        return registry.load_version(
            platform.mlflow.tracking_uri, platform.model_name, version, Path(tmp), None
        )


def test_the_pipelines_promotion_was_served_and_checked_first(
    loan_platform: PlatformConfig, loan_first_run: TrainingOutcome, tmp_path: Path
) -> None:
    assert loan_first_run.promoted
    uri, name = loan_platform.mlflow.tracking_uri, loan_platform.model_name
    tags = registry.version_tags(uri, name, loan_first_run.version)
    assert tags["serving_check"] == "passed", tags
    assert "as evaluated" in tags["serving_check_reason"]
    c = registry.client(uri)
    run_id = c.get_model_version(name, loan_first_run.version).run_id
    gate_report = Path(c.download_artifacts(run_id, "reports/gate.md", str(tmp_path))).read_text()
    assert "## Serving check: PASSED" in gate_report and "p95" in gate_report
    assert gate_report.index("## Serving check") > 0  # appended to the gate's own report
    # The check's server is gone; the home's own service (if any) is another one.
    check = local_servers.Service(
        "bentoml-check-v1", [], {}, "http://127.0.0.1:1/", loan_platform.run_dir
    )
    assert local_servers.running_pid(check) is None


def test_a_version_that_answers_otherwise_than_evaluated_is_refused(
    loan_platform: PlatformConfig, loan_first_run: TrainingOutcome
) -> None:
    """The served artifact is version 1; "as evaluated" is a model whose weights differ (what
    a packaging or artifact fault looks like from outside)."""
    evaluated = _registered(loan_platform, loan_first_run.version)
    with torch.no_grad():
        for parameter in evaluated.network.parameters():
            parameter.add_(0.05)
    rows = sample_rows(loan_platform, evaluated.schema, 20)
    outcome = serving_check.check_version(loan_platform, loan_first_run.version, evaluated, rows)
    assert not outcome.passed
    assert "differ from the evaluated model's by up to" in outcome.reason, outcome.reason
    assert outcome.max_difference is not None and outcome.max_difference > 1e-5


def test_a_version_slower_than_the_budget_is_refused(
    loan_platform: PlatformConfig, loan_first_run: TrainingOutcome
) -> None:
    check = loan_platform.gate.serving_check.model_copy(update={"p95_ms": 0.01})
    strict = loan_platform.model_copy(
        update={"gate": loan_platform.gate.model_copy(update={"serving_check": check})}
    )
    evaluated = _registered(loan_platform, loan_first_run.version)
    rows = sample_rows(loan_platform, evaluated.schema, 10)
    outcome = serving_check.check_version(strict, loan_first_run.version, evaluated, rows)
    assert not outcome.passed
    assert "is over the budget of 0.01 ms (gate.serving_check.p95_ms)" in outcome.reason
    assert outcome.max_difference is not None and outcome.max_difference <= 1e-5  # same answers
