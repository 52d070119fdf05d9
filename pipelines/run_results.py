"""What a finished local run left behind, in words and files a person opens.

kfp.local writes each task's outputs under ``<pipeline_root>/<run>/<task>/``: the task's
``executor_output.json`` (returned values and artifact metadata) and its artifacts as files
named after the output, without an extension. :func:`task_summary` turns a task's outputs
into the one result that matters; :func:`save_reports` copies the reports to
``<home>/runs/<run>/`` with the extensions a browser or an editor needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

# Report artifacts of the training pipeline, and the names they are saved under.
REPORTS = {
    ("validate-data", "report"): "validation-report.html",
    ("validate-data", "summary"): "validation-summary.md",
    ("evaluate-model", "report"): "gate-report.md",
    ("register-model", "card"): "model-card.md",
}


def latest_run(pipeline_root: Path) -> Path | None:
    """The most recently started run under ``pipeline_root``."""
    runs = [p for p in pipeline_root.glob("*/") if p.is_dir()] if pipeline_root.exists() else []
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def task_summary(task_dir: Path) -> str:
    """The result of one finished task, in a few words ("" when it has none to show)."""
    outputs = task_outputs(task_dir)
    describe = _SUMMARIES.get(task_dir.name)
    return describe(task_dir, outputs) if describe else ""


def save_reports(run_dir: Path, into: Path) -> dict[str, Path]:
    """Copy the run's reports into ``into``; returns them by saved name."""
    saved: dict[str, Path] = {}
    for (task, output), name in REPORTS.items():
        source = run_dir / task / output
        if source.is_file():
            into.mkdir(parents=True, exist_ok=True)
            saved[name] = Path(shutil.copyfile(source, into / name))
    return saved


def task_outputs(task_dir: Path) -> dict[str, Any]:
    """Returned values and artifact metadata of a task, by output name."""
    path = task_dir / "executor_output.json"
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    found: dict[str, Any] = dict(raw.get("parameterValues", {}))
    for name, listed in raw.get("artifacts", {}).items():
        artifacts = listed.get("artifacts", [])
        found[name] = artifacts[0].get("metadata", {}) if artifacts else {}
    return found


def _built(task_dir: Path, outputs: dict[str, Any]) -> str:
    meta = outputs.get("training_set", {})
    return f"{int(meta.get('rows', 0))} rows, data {meta.get('data_hash', '?')}"


def _validated(task_dir: Path, outputs: dict[str, Any]) -> str:
    summary = task_dir / "summary"
    lines = summary.read_text().splitlines() if summary.exists() else []
    verdict = next((line for line in lines if line.startswith("validation")), "")
    return verdict.removeprefix("validation ").strip()


def _searched(task_dir: Path, outputs: dict[str, Any]) -> str:
    found = json.loads(outputs.get("Output") or "{}")
    best = ", ".join(f"{k}={v}" for k, v in (found.get("hyperparameters") or {}).items())
    return f"{found.get('trials', 0)} trials; best {best or 'the configured settings'}"


def _trained(task_dir: Path, outputs: dict[str, Any]) -> str:
    summary = json.loads(outputs.get("Output") or "{}")
    return (
        f"{summary.get('epochs_run', '?')} epochs on {summary.get('device', '?')}, "
        f"best val loss {summary.get('best_val_loss', float('nan')):.4f}"
    )


def _evaluated(task_dir: Path, outputs: dict[str, Any]) -> str:
    gate = outputs.get("evaluation", {})
    verdict = "gate passed" if gate.get("passed") else "gate failed"
    return f"{verdict}: {gate.get('reason', '')}".rstrip(": ")


def _registered(task_dir: Path, outputs: dict[str, Any]) -> str:
    return f"version {outputs.get('Output', '?')}"


def _promoted(task_dir: Path, outputs: dict[str, Any]) -> str:
    previous = str(outputs.get("Output", "?"))
    return (
        f"not promoted: {previous}"
        if previous.startswith("awaiting")
        else f"@champion was {previous}"
    )


_SUMMARIES = {
    "build-training-set": _built,
    "validate-data": _validated,
    "search-hyperparameters": _searched,
    "train-model": _trained,
    "evaluate-model": _evaluated,
    "register-model": _registered,
    "promote-model": _promoted,
}
