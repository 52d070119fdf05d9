"""Run the training and monitoring pipelines on this machine with ``kfp.local`` (the local
profile)."""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kfp import local

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from pipelines import run_results
from pipelines.training import build_pipeline


class PipelineFailed(RuntimeError):
    """The run stopped; the message says at which step and why. ``reports``: the reports
    the run wrote before it stopped (the validation report of a run validation stopped)."""

    def __init__(self, message: str, reports: dict[str, Path] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or {}


@dataclass(frozen=True)
class LocalRun:
    version: str
    run_dir: Path
    reports: dict[str, Path] = field(default_factory=dict)


def reports_dir(config: PlatformConfig, run_dir: Path) -> Path:
    """Where a run's reports are kept, with their extensions: ``<home>/runs/<run>/``."""
    return config.home / "runs" / run_dir.name


def _quiet_local_runner() -> None:
    """kfp.local warns on every task about what it cannot do locally and we do on purpose:
    ``display_name`` (the name the Kubeflow UI shows) and the components image (the local
    runner uses this environment, where the project is installed, instead)."""
    warnings.filterwarnings("ignore", message=r"Task '.*': settings \['display_name'\]")
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_local(config: PlatformConfig, commit: str | None = None, trigger: str = "") -> LocalRun:
    """Run every step as a local subprocess; raise PipelineFailed naming the failed step.
    ``trigger``: why a monitoring rule started the run (recorded on the version)."""
    before = _init_local(config)
    pipeline = build_pipeline(config)
    try:
        task = pipeline(
            config_json=config.to_json(), git_commit=commit or git_commit(), trigger=trigger
        )
    except RuntimeError as exc:
        run_dir = _new_run(config, before)
        reports = (
            {}
            if run_dir is None
            else run_results.save_reports(run_dir, reports_dir(config, run_dir))
        )
        message = _serving_check_failure(config, run_dir) or _explain(run_dir, reports, exc)
        raise PipelineFailed(message, reports) from exc
    run_dir = _new_run(config, before) or config.pipeline_root
    return LocalRun(
        version=str(task.output),
        run_dir=run_dir,
        reports=run_results.save_reports(run_dir, reports_dir(config, run_dir)),
    )


def run_monitoring_local(config: PlatformConfig, commit: str | None = None) -> Path:
    """Run the ``monitoring`` pipeline on kfp.local (its training branch runs when a rule
    fires); returns the run's folder. Raises PipelineFailed when a task failed."""
    from pipelines.monitoring import build_monitoring_pipeline

    before = _init_local(config)
    try:
        build_monitoring_pipeline(config)(
            config_json=config.to_json(), git_commit=commit or git_commit()
        )
    except RuntimeError as exc:
        raise PipelineFailed(f"monitoring pipeline failed: {exc}") from exc
    return _new_run(config, before) or config.pipeline_root


def _init_local(config: PlatformConfig) -> set[Path]:
    """Point kfp.local at this home; returns the runs already there (the new one is the
    folder that appears)."""
    config.pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(config.pipeline_root.iterdir())
    _quiet_local_runner()
    # use_venv=False: tasks run in this environment, where the project is installed; a fresh
    # venv per task would need the network.
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(config.pipeline_root),
        enable_caching=config.kfp.enable_caching,
        raise_on_error=True,
    )
    return before


def _new_run(config: PlatformConfig, before: set[Path]) -> Path | None:
    new = sorted(set(config.pipeline_root.iterdir()) - before)
    return new[-1] if new else None


def _serving_check_failure(config: PlatformConfig, run_dir: Path | None) -> str | None:
    """Why promote-model refused the version it registered, when a serving check did."""
    from aiinfra.release import registry_view

    if run_dir is None or not (run_dir / "promote-model").exists():
        return None
    outputs = run_results.task_outputs(run_dir / "register-model")
    version = outputs.get("Output")
    if version is None:
        return None
    try:
        info = registry_view.version_info(config.mlflow.tracking_uri, config.model_name, version)
    except registry_view.RegistryUnavailable:
        return None
    if info is None or info.tags.get("serving_check") != "failed":
        return None
    return (
        f"run stopped at promote-model: version {version} failed its serving check: "
        f"{info.tags.get('serving_check_reason', '')} (@champion did not move)"
    )


def _explain(run_dir: Path | None, reports: dict[str, Path], exc: Exception) -> str:
    """Turn a failed local run into a message a person can act on."""
    summary = None if run_dir is None else run_dir / "validate-data" / "summary"
    if summary is not None and summary.exists():
        lines = summary.read_text().splitlines()
        detail = next((line for line in lines if line.startswith("validation")), "")
        if "FAILED" in detail:
            report = reports.get("validation-report.html", summary.with_name("report"))
            return f"run stopped at validate-data: {detail}\nreport: {report}"
    return f"pipeline failed: {exc}"
