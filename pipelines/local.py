"""Run the training pipeline on this machine with ``kfp.local`` (the local profile)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kfp import local

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from pipelines.training import build_pipeline


class PipelineFailed(RuntimeError):
    """The run stopped; the message says at which step and why."""


@dataclass(frozen=True)
class LocalRun:
    version: str
    run_dir: Path


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


def run_local(config: PlatformConfig, commit: str | None = None) -> LocalRun:
    """Run every step as a local subprocess; raise PipelineFailed naming the failed step."""
    config.pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(config.pipeline_root.iterdir())
    # use_venv=False: tasks run in this environment, where the project is installed; a fresh
    # venv per task would need the network.
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(config.pipeline_root),
        enable_caching=config.kfp.enable_caching,
        raise_on_error=True,
    )
    pipeline = build_pipeline(config)
    try:
        task = pipeline(config_json=config.to_json(), git_commit=commit or git_commit())
    except RuntimeError as exc:
        raise PipelineFailed(_explain(config, before, exc)) from exc
    run_dirs = sorted(set(config.pipeline_root.iterdir()) - before)
    return LocalRun(
        version=str(task.output), run_dir=run_dirs[-1] if run_dirs else config.pipeline_root
    )


def _explain(config: PlatformConfig, before: set[Path], exc: Exception) -> str:
    """Turn a failed local run into a message a person can act on."""
    new = sorted(set(config.pipeline_root.iterdir()) - before)
    for run_dir in reversed(new):
        summary = run_dir / "validate-data" / "summary"
        if summary.exists():
            first = summary.read_text().splitlines()
            detail = next((line for line in first if line.startswith("validation")), "")
            if "FAILED" in detail:
                report = run_dir / "validate-data" / "report"
                return f"run stopped at validate-data: {detail}\nreport: {report}"
    return f"pipeline failed: {exc}"
