"""Pipeline overhead: the training pipeline on kfp.local against the same steps in one process.

For each size, in a fresh home with its own MLflow server:
1. the steps called in-process once (warm-up; it also makes a champion, so both measured runs
   evaluate against one),
2. the pipeline on kfp.local (each step a subprocess, artifacts through files),
3. the steps in-process again (the baseline).
Prints per-step seconds and the ratio pipeline / in-process.

Run: make bench   (or: python -m benchmarks.run --sizes smoke,large)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiinfra import steps
from aiinfra.data import feature_store
from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config
from aiinfra.project.definition import load_project
from pipelines.local import run_local

SMOKE = PROJECT_ROOT / "configs" / "smoke.yaml"
# The loan example's generator settings per size (merged into the smoke profile's).
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {},
    "large": {"n_applicants": 20_000, "n_zipcodes": 200, "n_loans": 100_000, "days": 180},
}
STEP_NAMES = [
    "build-training-set",
    "validate-data",
    "train-model",
    "evaluate-model",
    "register-model",
    "promote-model",
]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def in_process(config: PlatformConfig, work: Path) -> dict[str, float]:
    """The pipeline's steps as plain calls, in one process, same inputs and outputs."""
    ts, model = work / "training_set.parquet", work / "model"
    times: dict[str, float] = {}
    times["build-training-set"], _ = _timed(lambda: steps.build_training_set(config, ts))
    times["validate-data"], _ = _timed(
        lambda: steps.validate_training_set(config, ts, work / "v.md")
    )
    times["train-model"], summary = _timed(lambda: steps.train_model(config, ts, model))
    times["evaluate-model"], evaluation = _timed(lambda: steps.evaluate_model(config, ts, model))
    lineage = {"git_commit": "bench", "pipeline_run": "bench-in-process"}
    times["register-model"], version = _timed(
        lambda: steps.register_model(config, ts, model, evaluation, summary, lineage)
    )
    times["promote-model"], _ = _timed(
        lambda: steps.promote_model(config, version, "bench") if evaluation.passed else None
    )
    return times


def pipeline_step_times(run_dir: Path, started: float) -> dict[str, float]:
    """Per task: time from the previous task's end to this one's (subprocess start included)."""
    ends = {
        name: (run_dir / name / "executor_output.json").stat().st_mtime
        for name in STEP_NAMES
        if (run_dir / name / "executor_output.json").exists()
    }
    times, previous = {}, started
    for name in sorted(ends, key=ends.__getitem__):
        times[name] = ends[name] - previous
        previous = ends[name]
    return times


def bench_size(name: str, generator: dict[str, Any]) -> dict[str, Any]:
    from aiinfra_cli.workflow import generate_data

    project = load_config(SMOKE).project.model_dump(mode="json")
    project["generator"]["settings"] |= generator
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        port = local_servers.free_port()
        config = load_config(
            SMOKE,
            home=Path(tmp),
            project=project,
            mlflow={"port": port, "tracking_uri": f"http://127.0.0.1:{port}"},
        )
        mlflow = local_servers.mlflow_service(config)
        local_servers.start(mlflow)
        try:
            generate_data(config, force=True)
            rows = load_project(config).label_rows
            store = feature_store.open_store(config)
            feature_store.apply(store, feature_store.repo_objects(config))
            in_process(config, Path(tmp) / "warmup")
            started = time.time()
            wall_pipeline, run = _timed(lambda: run_local(config, "bench"))
            per_task = pipeline_step_times(run.run_dir, started)
            baseline = in_process(config, Path(tmp) / "baseline")
        finally:
            local_servers.stop(mlflow)
    return {
        "size": name,
        "rows": rows,
        "pipeline_s": wall_pipeline,
        "in_process_s": sum(baseline.values()),
        "steps": {step: (baseline.get(step, 0.0), per_task.get(step, 0.0)) for step in STEP_NAMES},
    }


def report(result: dict[str, Any]) -> str:
    ratio = result["pipeline_s"] / result["in_process_s"]
    lines = [
        f"\n== {result['size']}: {result['rows']} label rows ({SMOKE.stem} profile's project) ==",
        f"{'step':<22}{'in-process s':>14}{'kfp.local s':>14}{'ratio':>8}",
    ]
    for step, (base, piped) in result["steps"].items():
        r = f"{piped / base:8.1f}" if base > 0.001 else f"{'-':>8}"
        lines.append(f"{step:<22}{base:>14.2f}{piped:>14.2f}{r}")
    lines.append(
        f"{'whole run':<22}{result['in_process_s']:>14.2f}{result['pipeline_s']:>14.2f}{ratio:8.1f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="smoke,large", help="comma-separated: " + ",".join(SIZES)
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = [bench_size(name, SIZES[name]) for name in args.sizes.split(",")]
    for result in results:
        print(report(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
