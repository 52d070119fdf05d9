"""Pipeline overhead: the training pipeline on kfp.local against the same steps in one process.

For each size, in a fresh home with its own MLflow server:
1. the steps called in-process once (warm-up; it also makes a champion, so both measured runs
   evaluate against one),
2. the pipeline on kfp.local (each step a subprocess, artifacts through files),
3. the steps in-process again (the baseline).
Prints per-step seconds, the ratio pipeline / in-process and each task's overhead against the
target; then, per task, what a fresh interpreter pays to import what that task imports, and
the floor under it: the step's third-party libraries (torch, MLflow, Feast, GX, ...) alone.

Run: make bench   (or: python -m benchmarks.run --sizes smoke,large; --imports-only: the import
table alone, no pipeline)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
# The fixed cost a task may add to its step, run in one process (issue 11).
TARGET_OVERHEAD_S = 1.5
# What each task's process imports: kfp's executor (as kfp.local starts it) and the config,
# then what its component and step load (the library imports the libraries a step uses inside
# the functions that use them, so this is per step). Kept in step with components/ and
# aiinfra.steps; `python -X importtime -c "<one of these>"` shows where the time goes.
EXECUTOR = "import kfp.dsl.executor_main; from aiinfra.project.config import config_from_json; "
LEAN_FEAST = "from aiinfra.project.feast_import import import_feast_lean; import_feast_lean(); "
TASK_IMPORTS: dict[str, str] = {
    # Feast without torch and typeguard; the FeatureStore loads its offline store (DuckDB
    # through ibis, the profiles' store) when it is built.
    "build-training-set": LEAN_FEAST + "import aiinfra.steps, aiinfra.data.feature_store, "
    "aiinfra.data.training_set, aiinfra.project.definition, aiinfra.release.metrics, "
    "feast.infra.offline_stores.duckdb",
    "validate-data": "import aiinfra.steps, aiinfra.data.training_set, aiinfra.data.validation, "
    "aiinfra.release.registry, great_expectations",
    # torch._dynamo: torch's optimizers import it when they are built and stepped.
    "train-model": "import aiinfra.steps, aiinfra.training.job, aiinfra.training.launcher, "
    "aiinfra.training.train, torch._dynamo",
    "evaluate-model": "import aiinfra.steps, aiinfra.data.training_set, aiinfra.release.gate, "
    "aiinfra.release.metrics, aiinfra.release.registry, aiinfra.training.train, sklearn.metrics",
    "register-model": "import aiinfra.steps, aiinfra.data.drift, aiinfra.data.training_set, "
    "aiinfra.monitoring.retraining, aiinfra.release.metrics, aiinfra.release.plots, "
    "aiinfra.release.pyfunc, aiinfra.release.registry, aiinfra.training.job, "
    "aiinfra.training.search",
    "promote-model": "import aiinfra.steps, aiinfra.release.registry",
}
# The third-party libraries each step cannot do without, alone: the floor of its task's import
# (what it adds on top is the platform's own modules and what they pull in beyond these).
LIBRARY_FLOOR: dict[str, str] = {
    "build-training-set": LEAN_FEAST + "import feast.infra.offline_stores.duckdb, pyarrow.parquet",
    "validate-data": "import great_expectations, mlflow, pyarrow.parquet",
    "train-model": "import torch, torch._dynamo, pyarrow.parquet",
    "evaluate-model": "import torch, mlflow, sklearn.metrics, pyarrow.parquet",
    "register-model": "import torch, mlflow, matplotlib.figure, pyarrow.parquet",
    "promote-model": "import mlflow",
}
HEAVY = ("torch", "mlflow", "feast", "great_expectations", "sklearn", "matplotlib", "scipy")


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def in_process(
    config: PlatformConfig, work: Path, run_name: str = "bench-in-process"
) -> dict[str, float]:
    """The pipeline's steps as plain calls, in one process, same inputs and outputs.

    ``run_name``: one per call, or registration finds the version the last call registered
    under that name and returns it without registering (a retried task's shortcut)."""
    ts, model = work / "training_set.parquet", work / "model"
    times: dict[str, float] = {}
    times["build-training-set"], _ = _timed(lambda: steps.build_training_set(config, ts))
    times["validate-data"], _ = _timed(
        lambda: steps.validate_training_set(config, ts, work / "v.md")
    )
    times["train-model"], summary = _timed(lambda: steps.train_model(config, ts, model))
    times["evaluate-model"], evaluation = _timed(lambda: steps.evaluate_model(config, ts, model))
    lineage = {"git_commit": "bench", "pipeline_run": run_name}
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
            in_process(config, Path(tmp) / "warmup", "bench-warmup")
            started = time.time()
            wall_pipeline, run = _timed(lambda: run_local(config, "bench"))
            per_task = pipeline_step_times(run.run_dir, started)
            baseline = in_process(config, Path(tmp) / "baseline", "bench-baseline")
        finally:
            local_servers.stop(mlflow)
    return {
        "size": name,
        "rows": rows,
        "pipeline_s": wall_pipeline,
        "in_process_s": sum(baseline.values()),
        "steps": {step: (baseline.get(step, 0.0), per_task.get(step, 0.0)) for step in STEP_NAMES},
    }


def cold_import(statements: str) -> tuple[float, list[str]]:
    """Seconds a fresh interpreter takes to start, import kfp's executor and the config, then
    run ``statements``, and the heavy libraries loaded by then."""
    list_heavy = f"import json, sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    # As kfp.local starts a task: this environment, plus the flag that keeps kfp's compile-time
    # modules out of a task.
    env = {**os.environ, "_KFP_RUNTIME": "true"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"{EXECUTOR}{statements}; {list_heavy}"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, json.loads(done.stdout.strip().splitlines()[-1])


def import_table(repeats: int = 3) -> dict[str, dict[str, Any]]:
    """Per step: what its task's imports cost, and the floor (its libraries alone). The fastest
    of ``repeats`` fresh processes each (the OS file cache warm, as in a pipeline run), taken in
    turns so that a burst of load elsewhere spreads over all of them."""
    table: dict[str, dict[str, Any]] = {
        step: {"task_s": float("inf"), "floor_s": float("inf")} for step in STEP_NAMES
    }
    for _ in range(repeats):
        for step, row in table.items():
            seconds, row["heavy"] = cold_import(TASK_IMPORTS[step])
            row["task_s"] = min(row["task_s"], seconds)
            floor, _ = cold_import(LIBRARY_FLOOR[step])
            row["floor_s"] = min(row["floor_s"], floor)
    return table


def report(result: dict[str, Any]) -> str:
    ratio = result["pipeline_s"] / result["in_process_s"]
    lines = [
        f"\n== {result['size']}: {result['rows']} label rows ({SMOKE.stem} profile's project) ==",
        f"{'step':<22}{'in-process s':>14}{'kfp.local s':>14}{'ratio':>8}{'overhead s':>12}"
        f"  target <= +{TARGET_OVERHEAD_S} s per task",
    ]
    for step, (base, piped) in result["steps"].items():
        r = f"{piped / base:8.1f}" if base > 0.001 else f"{'-':>8}"
        overhead = f"{piped - base:>+12.2f}" if piped else f"{'not run':>12}"
        verdict = ("met" if piped - base <= TARGET_OVERHEAD_S else "missed") if piped else ""
        lines.append(f"{step:<22}{base:>14.2f}{piped:>14.2f}{r}{overhead}  {verdict}")
    lines.append(
        f"{'whole run':<22}{result['in_process_s']:>14.2f}{result['pipeline_s']:>14.2f}{ratio:8.1f}"
    )
    return "\n".join(lines)


def report_imports(imports: dict[str, dict[str, Any]]) -> str:
    lines = [
        "\n== what each task's process imports (fresh interpreter, kfp executor and config "
        "included; best of 3) ==",
        f"{'step':<22}{'imports s':>10}{'floor s':>9}{'ours s':>8}  heavy libraries loaded",
    ]
    for step, found in imports.items():
        ours = found["task_s"] - found["floor_s"]
        lines.append(
            f"{step:<22}{found['task_s']:>10.2f}{found['floor_s']:>9.2f}{ours:>+8.2f}  "
            + ", ".join(found["heavy"])
        )
    lines.append(
        "(floor: the step's third-party libraries alone; the imports are part of each task's "
        f"overhead, whose target is <= +{TARGET_OVERHEAD_S} s per task)"
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
    parser.add_argument(
        "--imports-only", action="store_true", help="only the per-task import table"
    )
    args = parser.parse_args()
    sizes = [] if args.imports_only else args.sizes.split(",")
    results = [bench_size(name, SIZES[name]) for name in sizes]
    imports = import_table()
    for result in results:
        print(report(result))
    print(report_imports(imports))
    if args.json:
        args.json.write_text(json.dumps({"sizes": results, "imports": imports}, indent=2))


if __name__ == "__main__":
    main()
