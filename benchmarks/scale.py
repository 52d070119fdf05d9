"""Scale curve: the training pipeline's steps, in one process, at growing label-table sizes.

For each size (label rows of the loan example, its generator scaled as in benchmarks/data.py),
a fresh subprocess with its own temp home and MLflow server runs:

- prepare: the generator writes the tables and the Feast repo is applied;
- the pipeline's steps as plain calls (as benchmarks/run.py's ``in_process``): build the
  training set, validate it, train, evaluate, register, promote. The home is fresh, so there is
  no champion yet: no drift tests, no champion scored;
- validate and evaluate once more, now against the champion just promoted (drift tests and the
  champion's scores: the steady state of a scheduled retraining).

Per step: wall seconds and the process's peak resident memory *during that step*. Imports and
the first MLflow request happen before the first step: one-time process costs would otherwise
land in the smallest size's figures. The MLflow server's memory is not counted (another
process). Training runs the smoke profile's settings (epochs, batch size, CPU).

Prints the figures, the growth of seconds per row between sizes, a projection to larger sizes,
and the first step to break: the one that reaches the memory or the time budget at the fewest
rows. A size whose process passes the memory budget, or 90% of the memory free when it
starts (the machine may be shared), is stopped there, and no larger size runs.

Run: python -m benchmarks.scale [--sizes 10k,100k,1m,5m] [--json out.json] [--keep-going]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, TrainingConfig, load_config
from benchmarks.run import STEP_NAMES

SMOKE = PROJECT_ROOT / "configs" / "smoke.yaml"
DEFAULT_SIZES = "10k,100k,1m,5m"
# The pipeline's steps, after preparing the data, then validation and evaluation again once the
# first version is the champion (a fresh home has none to compare with).
STEPS = ["prepare", *STEP_NAMES, "validate-vs-champion", "evaluate-vs-champion"]
MIB = 1024 * 1024


# --- sizes and config -------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'10k' -> 10_000, '1m' -> 1_000_000, '2500' -> 2500."""
    units = {"k": 1_000, "m": 1_000_000}
    text = text.strip().lower()
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def size_label(rows: int) -> str:
    for unit, scale in (("m", 1_000_000), ("k", 1_000)):
        if rows >= scale and rows % scale == 0:
            return f"{rows // scale}{unit}"
    return str(rows)


def size_config(home: Path, rows: int, mlflow_port: int) -> PlatformConfig:
    """The smoke profile with ``rows`` loans from its generator (applicants and zipcodes scaled
    as benchmarks/data.py does), its state under ``home``, its MLflow server on ``mlflow_port``."""
    project = load_config(SMOKE).project.model_dump(mode="json")
    project["generator"]["settings"] |= {
        "n_loans": rows,
        "n_applicants": max(100, rows // 4),
        "n_zipcodes": 200,
        "days": 120,
    }
    mlflow = {"port": mlflow_port, "tracking_uri": f"http://127.0.0.1:{mlflow_port}"}
    return load_config(SMOKE, home=home, project=project, mlflow=mlflow)


# --- peak memory of one step -----------------------------------------------------------------

CLEAR_REFS, STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")


def _status_mib(field: str) -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def _reset_kernel_peak() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0); False where
    that is not possible."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_rss(figures: dict[str, float]) -> Iterator[None]:
    """Sets ``figures['start_mib']`` and, on exit, ``figures['peak_mib']``: the process's
    highest RSS within the block. Linux: the kernel's mark (VmHWM), reset at the start, exact.
    Elsewhere a thread samples RSS every 20 ms (a shorter spike can be missed)."""
    process = psutil.Process()
    figures["start_mib"] = process.memory_info().rss / MIB
    if _reset_kernel_peak():
        try:
            yield
        finally:
            figures["peak_mib"] = _status_mib("VmHWM")
        return
    peak, done = [figures["start_mib"]], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss / MIB)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        figures["peak_mib"] = max(peak[0], process.memory_info().rss / MIB)


# --- one size, in the child process ----------------------------------------------------------


def _error(step: str, exc: Exception) -> dict[str, str]:
    return {"step": step, "error": f"{type(exc).__name__}: {exc}"[:2000]}


class StepRecorder:
    """Times each step and its peak memory; writes the record to ``path`` before and after
    each step, so that the parent knows which step was running if this process gets killed."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path = path
        self.record: dict[str, Any] = {"rows": rows, "steps": {}, "running": None}
        self._save()

    def _save(self) -> None:
        self.path.write_text(json.dumps(self.record, indent=1))

    def step(
        self, name: str, fn: Callable[[], Any], tolerate: tuple[type[Exception], ...] = ()
    ) -> Any:
        """``fn()``'s value, timed; an error of a ``tolerate`` type is noted (None returned),
        any other is noted and raised. A step that raised keeps its figures (up to the error)."""
        self.record["running"] = name
        self._save()
        figures: dict[str, float] = {}
        start = time.perf_counter()
        try:
            with peak_rss(figures):
                return fn()
        except tolerate as exc:
            self.record.setdefault("tolerated", []).append(_error(name, exc))
            return None
        except Exception as exc:
            self.record["failed"] = _error(name, exc)
            raise
        finally:
            figures["seconds"] = time.perf_counter() - start
            self.record["steps"][name] = figures
            self.record["running"] = None
            self._save()
            self._log(name, figures)

    def _log(self, name: str, figures: dict[str, float]) -> None:
        print(
            f"[scale {size_label(self.record['rows'])}] {name}: {figures['seconds']:.1f} s, "
            f"peak {figures['peak_mib']:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )

    def note(self, **values: Any) -> None:
        self.record |= values
        self._save()


def _warm_up(config: PlatformConfig) -> None:
    """Import what the steps import and make the first MLflow request (it imports Feast, through
    a plugin): paid once per process, not per row."""
    import feast  # noqa: F401
    import great_expectations  # noqa: F401

    from aiinfra import steps  # noqa: F401 - torch, mlflow
    from aiinfra.release import registry

    registry.alias_version(config.mlflow.tracking_uri, config.model_name, registry.CHAMPION)


def _prepare(config: PlatformConfig) -> int:
    """Generate the tables and apply the Feast repo; the number of label rows."""
    import pyarrow.parquet as pq

    from aiinfra.data import feature_store
    from aiinfra_cli.workflow import generate_data

    generate_data(config, force=True)
    feature_store.apply(feature_store.open_store(config), feature_store.repo_objects(config))
    return int(pq.read_metadata(config.labels_path).num_rows)


def run_steps(
    config: PlatformConfig, work: Path, recorder: StepRecorder, keep_going: bool = False
) -> None:
    """The pipeline's steps in one process, then validate and evaluate against the champion.
    ``keep_going``: the steps after a failed validation run all the same (the failure is
    noted), as the pipeline would not."""
    from aiinfra import steps
    from aiinfra.data.validation import DataValidationError

    ts, model = work / "training_set.parquet", work / "model"
    tolerate = (DataValidationError,) if keep_going else ()
    step = recorder.step
    recorder.note(label_rows=step("prepare", lambda: _prepare(config)))
    info = step("build-training-set", lambda: steps.build_training_set(config, ts))
    recorder.note(training_rows=info.rows)
    step(
        "validate-data",
        lambda: steps.validate_training_set(config, ts, work / "v.md"),
        tolerate,
    )
    summary = step("train-model", lambda: steps.train_model(config, ts, model))
    evaluation = step("evaluate-model", lambda: steps.evaluate_model(config, ts, model))
    lineage = {"git_commit": "bench", "pipeline_run": "bench-scale"}
    version = step(
        "register-model",
        lambda: steps.register_model(config, ts, model, evaluation, summary, lineage),
    )
    if not evaluation.passed:  # no champion: the last two steps would repeat the first ones
        recorder.note(stopped=f"gate failed: {evaluation.reason}")
        return
    step("promote-model", lambda: steps.promote_model(config, version, "bench-scale"))
    step(
        "validate-vs-champion",
        lambda: steps.validate_training_set(config, ts, work / "c.md"),
        tolerate,
    )
    step("evaluate-vs-champion", lambda: steps.evaluate_model(config, ts, model))


def child(rows: int, home: Path, mlflow_port: int, result: Path, keep_going: bool) -> None:
    config = size_config(home, rows, mlflow_port)
    _warm_up(config)
    run_steps(config, home / "work", StepRecorder(result, rows), keep_going)


# --- one size, from the parent ---------------------------------------------------------------


def _tree_rss(process: psutil.Process) -> int:
    """RSS of a process and its descendants, in bytes (0 once it is gone)."""
    total = 0
    with contextlib.suppress(psutil.Error):
        for p in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def _watch(process: subprocess.Popen[bytes], memory_limit: int, timeout: float) -> str | None:
    """Wait for the child; kill it past the memory limit or the timeout. Why it was killed, if
    it was."""
    watched, deadline = psutil.Process(process.pid), time.monotonic() + timeout
    while process.poll() is None:
        if _tree_rss(watched) > memory_limit:
            process.kill()
            process.wait()
            return f"stopped at the memory limit ({memory_limit / 2**30:.1f} GiB)"
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            return f"stopped at the timeout ({timeout / 60:.0f} min)"
        time.sleep(0.1)
    return None


def _outcome(record: dict[str, Any], returncode: int, stopped: str | None) -> dict[str, Any]:
    """Where and why the size ended early, if it did; ``killed``: by a budget or a signal (a
    larger size would end there too), not by an error of the step."""
    if "failed" in record:
        return {**record["failed"], "killed": False}
    if returncode == 0:
        return {}
    why = stopped or (
        "killed by SIGKILL (the OOM killer?)" if returncode == -9 else f"exit code {returncode}"
    )
    return {"step": record.get("running") or "start-up", "error": why, "killed": True}


def bench_size(rows: int, memory_limit: int, timeout: float, keep_going: bool) -> dict[str, Any]:
    """One size in a fresh subprocess, with its own home and MLflow server."""
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{size_label(rows)}-") as tmp:
        home, port = Path(tmp), local_servers.free_port()
        result = home / "result.json"
        mlflow = local_servers.mlflow_service(size_config(home, rows, port))
        local_servers.start(mlflow)
        # The machine may have less free than the budget: stop the size before the OOM killer
        # picks a process of someone else's.
        limit = min(memory_limit, int(psutil.virtual_memory().available * 0.9))
        started = time.perf_counter()
        try:
            command = [sys.executable, "-m", "benchmarks.scale", "--child", str(rows)]
            command += ["--home", tmp, "--port", str(port), "--result", str(result)]
            command += ["--keep-going"] if keep_going else []
            # The child's logs go to stderr: stdout is the report.
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=sys.stderr)
            stopped = _watch(process, limit, timeout)
        finally:
            local_servers.stop(mlflow)
        record = json.loads(result.read_text()) if result.exists() else {"rows": rows, "steps": {}}
    record["wall_s"] = time.perf_counter() - started
    if failure := _outcome(record, process.returncode, stopped):
        record["failed"] = failure
    record.pop("running", None)
    return record


# --- report ----------------------------------------------------------------------------------


def _completed(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "failed" not in r and "stopped" not in r]


def figures_table(results: list[dict[str, Any]]) -> list[str]:
    head = f"{'step':<22}" + "".join(f"{size_label(r['rows']):>18}" for r in results)
    sub = f"{'':<22}" + f"{'s':>9}{'peak MiB':>9}" * len(results)
    lines = [head, sub]
    for step in STEPS:
        cells = []
        for r in results:
            f = r["steps"].get(step)
            cells.append(f"{f['seconds']:>9.2f}{f['peak_mib']:>9.0f}" if f else f"{'-':>18}")
        lines.append(f"{step:<22}" + "".join(cells))
    lines.append(
        f"{'size wall (process)':<22}" + "".join(f"{r['wall_s']:>9.0f}{'':>9}" for r in results)
    )
    return lines


def growth_table(results: list[dict[str, Any]]) -> list[str]:
    """Per step and pair of consecutive sizes: time x, seconds per row x (1.0: linear), and
    the peak's growth per million more rows."""
    done = _completed(results)
    pairs = list(itertools.pairwise(done))
    if not pairs:
        return []
    head = f"{'step':<22}" + "".join(
        f"{size_label(a['rows']) + '->' + size_label(b['rows']):>24}" for a, b in pairs
    )
    sub = f"{'':<22}" + f"{'time x':>7}{'s/row x':>8}{'MiB/1M':>9}" * len(pairs)
    lines = [head, sub]
    for step in STEPS:
        cells = []
        for a, b in pairs:
            fa, fb = a["steps"].get(step), b["steps"].get(step)
            if not (fa and fb) or fa["seconds"] <= 0:
                cells.append(f"{'-':>24}")
                continue
            time_x = fb["seconds"] / fa["seconds"]
            per_row_x = time_x * a["rows"] / b["rows"]
            mib_per_m = (fb["peak_mib"] - fa["peak_mib"]) / (b["rows"] - a["rows"]) * 1e6
            cells.append(f"{time_x:>7.1f}{per_row_x:>8.2f}{mib_per_m:>9.0f}")
        lines.append(f"{step:<22}" + "".join(cells))
    return lines


def step_model(small: dict[str, Any], large: dict[str, Any], step: str) -> dict[str, float]:
    """Extrapolation of a step from its two largest measured sizes: time ~ rows^exponent (at
    least 1: beyond the measured range fixed costs no longer hide the per-row cost), memory
    linear in rows (the marginal bytes per row, at least 0)."""
    fs, fl = small["steps"][step], large["steps"][step]
    ratio = large["rows"] / small["rows"]
    exponent = math.log(max(fl["seconds"], 1e-6) / max(fs["seconds"], 1e-6)) / math.log(ratio)
    return {
        "rows": large["rows"],
        "seconds": fl["seconds"],
        "peak_mib": fl["peak_mib"],
        "exponent": max(exponent, 1.0),
        "mib_per_row": max((fl["peak_mib"] - fs["peak_mib"]) / (large["rows"] - small["rows"]), 0),
    }


def project(model: dict[str, float], rows: int) -> tuple[float, float]:
    """Projected (seconds, peak MiB) at ``rows``."""
    seconds = model["seconds"] * (rows / model["rows"]) ** model["exponent"]
    return seconds, model["peak_mib"] + model["mib_per_row"] * (rows - model["rows"])


def rows_at_budget(model: dict[str, float], memory_mib: float, seconds: float) -> dict[str, float]:
    """Label rows at which the step reaches each budget (inf: never, by this model)."""
    by_time = model["rows"] * (seconds / model["seconds"]) ** (1 / model["exponent"])
    by_memory = (
        model["rows"] + (memory_mib - model["peak_mib"]) / model["mib_per_row"]
        if model["mib_per_row"] > 0
        else math.inf
    )
    return {"time": by_time, "memory": by_memory}


def _rows_text(rows: float) -> str:
    return "never" if math.isinf(rows) else f"{rows / 1e6:,.1f}M"


def projection_lines(
    results: list[dict[str, Any]], targets: list[int], memory_mib: float, seconds: float
) -> tuple[list[str], dict[str, dict[str, float]]]:
    done = _completed(results)
    if len(done) < 2:
        return [], {}
    small, large = done[-2], done[-1]
    models = {s: step_model(small, large, s) for s in STEPS if s in large["steps"]}
    targets = [t for t in targets if t > large["rows"]]
    head = f"{'step':<22}{'exp':>5}{'MiB/1M rows':>12}" + "".join(
        f"{'@' + size_label(t) + ' s':>11}{'MiB':>8}" for t in targets
    )
    lines = [head + f"{'rows at time':>14}{'at memory':>11}"]
    limits = {}
    for step, m in models.items():
        cells = "".join(f"{s:>11.0f}{mib:>8.0f}" for s, mib in (project(m, t) for t in targets))
        limits[step] = rows_at_budget(m, memory_mib, seconds)
        lines.append(
            f"{step:<22}{m['exponent']:>5.2f}{m['mib_per_row'] * 1e6:>12.0f}{cells}"
            f"{_rows_text(limits[step]['time']):>14}{_rows_text(limits[step]['memory']):>11}"
        )
    return lines, limits


def first_break(results: list[dict[str, Any]], limits: dict[str, dict[str, float]]) -> str:
    """A size stopped by a budget or killed names the step; else a step that failed (an error,
    not a scale limit, but the first thing that broke); else the step projected to reach a
    budget first, and the first to reach the other budget."""
    failed = [r for r in results if "failed" in r]
    for r in sorted(failed, key=lambda r: not r["failed"]["killed"]):
        f = r["failed"]
        return f"{f['step']} at {size_label(r['rows'])} rows: {f['error']}"
    if not limits:
        return "unknown: fewer than two sizes completed"
    firsts = [(min(limits, key=lambda s: limits[s][r]), r) for r in ("time", "memory")]
    firsts.sort(key=lambda sr: limits[sr[0]][sr[1]])
    (step, resource), (other, other_resource) = firsts
    if math.isinf(limits[step][resource]):
        return "none projected"
    return (
        f"{step}, by {resource}, at about {_rows_text(limits[step][resource])} label rows "
        f"(projected); by {other_resource}: {other} at "
        f"{_rows_text(limits[other][other_resource])}"
    )


def note_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per size: steps that failed, failed validations the run went past, a gate that failed."""
    lines = []
    for r in results:
        size = size_label(r["rows"])
        for t in r.get("tolerated", []):
            lines.append(f"{size}: {t['step']} failed, later steps ran all the same: {t['error']}")
        if "failed" in r:
            lines.append(f"{size}: FAILED in {r['failed']['step']}: {r['failed']['error']}")
        if "stopped" in r:
            lines.append(f"{size}: {r['stopped']}")
    return [line[:400] for line in lines]


def report(
    results: list[dict[str, Any]],
    t: TrainingConfig,
    targets: list[int],
    memory_mib: float,
    seconds: float,
) -> tuple[str, str]:
    lines = [
        "\n== scale curve: loan example, steps in one process, fresh home per size ==",
        f"training: {t.epochs} epochs, batch {t.batch_size}, {t.device} (smoke profile)",
        *figures_table(results),
        "\n== growth between sizes (s/row x: 1.0 linear, > 1 superlinear) ==",
        *growth_table(results),
    ]
    proj, limits = projection_lines(results, targets, memory_mib, seconds)
    if proj:
        lines += [
            f"\n== projection from the two largest completed sizes; budgets: "
            f"{memory_mib / 1024:.0f} GiB, {seconds / 60:.0f} min per step ==",
            *proj,
        ]
    if notes := note_lines(results):
        lines += ["", *notes]
    verdict = first_break(results, limits)
    lines.append(f"\nfirst step to break: {verdict}")
    return "\n".join(lines), verdict


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="label rows, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--memory-gib", type=float, default=24, help="memory budget; a size past it is stopped"
    )
    parser.add_argument("--step-budget-min", type=float, default=60, help="time budget per step")
    parser.add_argument("--timeout-min", type=float, default=180, help="per size")
    parser.add_argument("--project", default="5m,10m", help="sizes to project the steps to")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run the steps after a failed validation all the same (the failure is reported)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.home, args.port, args.result, args.keep_going)
        return
    memory = int(args.memory_gib * 2**30)
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    results = []
    for rows in sizes:
        results.append(bench_size(rows, memory, args.timeout_min * 60, args.keep_going))
        if results[-1].get("failed", {}).get("killed"):  # a larger size would too, or sooner
            break
    targets = [parse_size(s) for s in args.project.split(",") if s]
    training = load_config(SMOKE).training
    text, verdict = report(results, training, targets, memory / MIB, args.step_budget_min * 60)
    print(text)
    if args.json:
        payload = {"training": training.model_dump(), "sizes": results, "verdict": verdict}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
