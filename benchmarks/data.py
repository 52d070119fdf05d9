"""Data-path benchmarks: validation and point-in-time retrieval, each as a ratio
against a plain baseline measured in the same run.

1. validation: the GX suite against the same checks as vectorized pandas (100k, 1M rows,
   clean and with five checks failing; target <= 3x at 1M), both giving the same verdicts;
   GX's import time and its cost at any size apart;
2. historical retrieval: Feast ``get_historical_features`` (its file and duckdb offline stores,
   and ours answering with an ASOF join, ``aiinfra.data.asof_store``) against pandas
   ``merge_asof`` with the same TTL rule, at 10k, 100k and 1M entity rows, each in a fresh
   subprocess so its peak memory is its own (its first call, paying the imports, apart);
   target <= 3x at 1M, and linear: time per row at 1M over that at 100k. Each store's values
   are compared with those of Feast's duckdb store (a digest of the features, in row order).
Online reads are in benchmarks/online.py.

Run: make bench-data   (or: python -m benchmarks.data --quick for the small sizes only;
--only historical --sizes 100000 1000000 for the retrieval part at chosen sizes)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.data import feature_store
from aiinfra.data.asof_store import STORE_TYPE as ASOF_STORE
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config
from aiinfra.project.definition import load_project, read_label_table
from aiinfra.project.feature_repo import FeatureRepo
from aiinfra.project.schema import Schema
from benchmarks.pandas_checks import pandas_checks

SMOKE = PROJECT_ROOT / "configs" / "smoke.yaml"
# The Feast offline store each measured method names (pandas: none, the baseline).
OFFLINE_STORES = {"file": "file", "duckdb": "duckdb", "asof": ASOF_STORE}
HISTORICAL_METHODS = ["pandas", *OFFLINE_STORES]


def _config(home: Path, loans: int, offline: str | None = None) -> PlatformConfig:
    """The loan example's smoke profile with ``loans`` label rows from its generator, on the
    ``offline`` Feast store (default: its repo's)."""
    sizes = {"n_loans": loans, "n_applicants": max(100, loans // 4), "n_zipcodes": 200, "days": 120}
    project = load_config(SMOKE).project.model_dump(mode="json")
    project["generator"]["settings"] |= sizes
    features = load_config(SMOKE).features.model_dump(mode="json")
    if offline:
        features["offline_store"] = {"type": offline}
    return load_config(SMOKE, home=home, project=project, features=features)


def _prepared(
    home: Path, loans: int, offline: str | None = None
) -> tuple[PlatformConfig, Schema, Any, FeatureRepo]:
    """The example's tables with ``loans`` label rows written under ``home``, its schema, and
    its applied feature store."""
    from aiinfra_cli.workflow import generate_data

    config = _config(home, loans, offline)
    generate_data(config, force=True)
    schema = load_project(config).schema
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    return config, schema, store, repo


def _labels(config: PlatformConfig, schema: Schema) -> pd.DataFrame:
    """The entity frame of a training set: keys and event time of every label row."""
    labels = read_label_table(config.labels_path, schema.timestamp)
    labels[schema.timestamp] = pd.to_datetime(labels[schema.timestamp], utc=True)
    return labels[list(schema.key_columns)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_join(entity_df: pd.DataFrame, schema: Schema, repo: FeatureRepo) -> pd.DataFrame:
    """The baseline: pandas merge_asof per feature view of the schema (its file source, join
    keys and timestamp field), values older than the view's TTL nulled."""
    ts = schema.timestamp
    out = entity_df.sort_values(ts)
    for view_name, features in schema.views().items():
        view = repo.views[view_name]
        source = view.batch_source
        path = Path(source.path) if Path(source.path).is_absolute() else repo.path / source.path
        cols = [f.name for f in features]
        table = pd.read_parquet(path, columns=[*view.join_keys, source.timestamp_field, *cols])
        right = table.rename(columns={source.timestamp_field: "_ts"})
        right["_ts"] = pd.to_datetime(right["_ts"], utc=True)
        out = pd.merge_asof(
            out, right.sort_values("_ts"), left_on=ts, right_on="_ts", by=list(view.join_keys)
        )
        stale = out["_ts"] < out[ts] - view.ttl
        out.loc[stale, cols] = np.nan
        out = out.drop(columns="_ts")
    return out


def one_historical(rows: int, method: str) -> dict[str, float]:
    """Run in a child process: one retrieval, its time and the process's peak memory. A first
    call on 10 rows is timed apart: it pays the imports a fresh process needs (Feast loads its
    store's modules on first use), a cost per process, not per row."""
    with tempfile.TemporaryDirectory() as tmp:
        offline = OFFLINE_STORES.get(method)
        config, schema, store, repo = _prepared(Path(tmp), rows, offline)
        entities = _labels(config, schema)
        retrieve: Callable[[pd.DataFrame], pd.DataFrame] = (
            partial(reference_join, schema=schema, repo=repo)
            if method == "pandas"
            else partial(feature_store.historical_features, store, schema)
        )
        start = time.perf_counter()
        retrieve(entities.head(10))
        first = time.perf_counter() - start
        before = _rss_mb()
        start = time.perf_counter()
        result = retrieve(entities)
        seconds = time.perf_counter() - start
    assert len(result) == rows
    features = result[[f.name for f in schema.stored_features]]
    missing = int(features.isna().any(axis=1).sum())
    return {
        "seconds": seconds,
        "digest": _digest(features),
        "first_call_s": first,
        "rows_with_nulls": missing,
        "peak_mb": _rss_mb(),
        "setup_mb": before,
    }


def _digest(features: pd.DataFrame) -> int:
    """A digest of the values in row order (the Feast stores answer in input order), numbers as
    floats: equal digests, equal values, whether a store gives an integer column or floats."""
    numeric = features.select_dtypes("number").columns
    values = features.astype({c: "float64" for c in numeric})
    return int(pd.util.hash_pandas_object(values, index=False).sum())


def historical(sizes: list[int], methods: list[str]) -> list[dict[str, Any]]:
    results = []
    for rows in sizes:
        for method in methods:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.data", "--one", method, "--rows", str(rows)],
                capture_output=True,
                text=True,
                timeout=3600,
                cwd=PROJECT_ROOT,
            )
            if child.returncode != 0:
                results.append({"rows": rows, "method": method, "error": child.stderr[-300:]})
                continue
            results.append(
                {"rows": rows, "method": method, **json.loads(child.stdout.splitlines()[-1])}
            )
    return results


def validation(sizes: list[int]) -> dict[str, Any]:
    start = time.perf_counter()
    import great_expectations  # noqa: F401 - the import is what is measured

    from aiinfra.data.training_set import build_training_set

    import_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        config, schema, _, _ = _prepared(Path(tmp), 20_000)
        base = build_training_set(config)
    rows = []
    for n in sizes:
        clean = _clean_frame(base, schema, n)
        for case, frame in (("clean", clean), ("bad", _bad_frame(clean, schema))):
            rows.append({"rows": n, "case": case, **_validation_timed(frame, schema, config)})
    return {
        "import_s": import_seconds,
        **_validation_fixed_cost(base, schema, config),
        "rows": rows,
    }


def _validation_fixed_cost(
    base: pd.DataFrame, schema: Schema, config: PlatformConfig
) -> dict[str, Any]:
    """The suite on 1,000 rows: GX's cost whatever the size (building the metric graph of every
    expectation), the floor under the 1M-row ratio."""
    from aiinfra.data import validation as gx_validation

    times, checks = [], 0
    for _ in range(VALIDATION_REPEATS):
        start = time.perf_counter()
        checks = len(gx_validation.validate(base.head(1000), schema, config.validation).checks)
        times.append(time.perf_counter() - start)
    return {"fixed_s": min(times), "checks": checks}


VALIDATION_TARGET = 3.0  # GX suite time over the same checks in pandas, at 1M rows
VALIDATION_REPEATS = 3  # best of: the machine is shared, a single run is noisy


def _clean_frame(base: pd.DataFrame, schema: Schema, n: int) -> pd.DataFrame:
    """``n`` rows of copies of a clean training set: fresh row ids, and each copy's event times
    shifted by its copy number in ms, so that the keys stay unique and every check passes."""
    frame = pd.concat([base] * (n // len(base) + 1), ignore_index=True).head(n)
    if schema.row_id:
        frame[schema.row_id] = np.arange(n)
    frame[schema.timestamp] += pd.to_timedelta(np.arange(n) // len(base), unit="ms")
    return frame


def _bad_frame(clean: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """``clean`` with 1% of its rows broken five ways (a value out of its declared range, nulls,
    an unknown category, duplicate row ids, rows from the future): five checks fail."""
    out = clean.copy()
    rows = out.index[::100]
    bounded = [f for f in schema.features if f.kind == "numeric" and f.max_value is not None]
    category = next(f.name for f in schema.features if f.categories)
    too_high = bounded[0].max_value + 1
    out.loc[rows, bounded[0].name] = int(too_high) if bounded[0].integer else too_high
    out.loc[rows, bounded[1].name] = np.nan
    out.loc[rows, category] = "not-a-category"
    out.loc[rows[:10], schema.timestamp] += pd.Timedelta(days=365)
    if schema.row_id:
        out.loc[rows[:10], schema.row_id] = out[schema.row_id].iloc[-1]
    return out


def _validation_timed(
    frame: pd.DataFrame, schema: Schema, config: PlatformConfig
) -> dict[str, Any]:
    """Best-of times of the GX suite and of the pandas checks, alternated, and whether both
    failed the same checks."""
    from aiinfra.data import validation as gx_validation

    gx_times, pandas_times = [], []
    for _ in range(VALIDATION_REPEATS):
        t0 = time.perf_counter()
        gx_report = gx_validation.validate(frame, schema, config.validation)
        t1 = time.perf_counter()
        pd_failed = pandas_checks(frame, schema, config.validation)
        pandas_times.append(time.perf_counter() - t1)
        gx_times.append(t1 - t0)
    gx_failed = sorted(c.name for c in gx_report.failed)
    return {
        "gx_s": min(gx_times),
        "pandas_s": min(pandas_times),
        "failed": len(gx_failed),
        "same_verdicts": gx_failed == sorted(pd_failed),
    }


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def _validation_lines(val: dict[str, Any]) -> list[str]:
    lines = [
        "\n== validation: GX suite vs the same checks in vectorized pandas (best of "
        f"{VALIDATION_REPEATS}) ==",
        f"great_expectations import (apart): {val['import_s']:.2f} s",
        f"GX suite on 1,000 rows (its cost at any size): {val['fixed_s']:.2f} s, "
        f"{val['fixed_s'] / val['checks'] * 1000:.1f} ms for each of its {val['checks']} checks",
        f"{'rows':>10}{'data':>7}{'GX s':>9}{'pandas s':>10}{'ratio':>8}  target"
        "  failed  same verdicts",
    ]
    for r in val["rows"]:
        ratio = r["gx_s"] / r["pandas_s"]
        lines.append(
            f"{r['rows']:>10}{r['case']:>7}{r['gx_s']:>9.2f}{r['pandas_s']:>10.3f}{ratio:>8.1f}"
            f"  <= {VALIDATION_TARGET:g}x{'':>3}{r['failed']:>6}  {r['same_verdicts']}"
        )
    return lines


HISTORICAL_TARGET = 3.0  # Feast retrieval time over pandas merge_asof, at 1M rows


def _seconds_of(hist: list[dict[str, Any]], rows: int, method: str) -> float | None:
    found = [r["seconds"] for r in hist if (r["rows"], r["method"]) == (rows, method)]
    return found[0] if found else None


def _historical_lines(hist: list[dict[str, Any]]) -> list[str]:
    lines = [
        "\n== historical retrieval: Feast point-in-time join vs pandas merge_asof ==",
        f"{'rows':>10}{'method':>8}{'s':>9}{'1st call s':>11}{'peak MB':>9}{'ratio':>8}  target"
        "  rows with nulls  same values as duckdb",
    ]
    for r in hist:
        if "error" in r:
            lines.append(f"{r['rows']:>10}{r['method']:>8}  failed: {r['error'].splitlines()[-1]}")
            continue
        base = _seconds_of(hist, r["rows"], "pandas")
        ratio = r["seconds"] / base if base else float("nan")
        target, nulls = f"<= {HISTORICAL_TARGET:g}x", r["rows_with_nulls"]
        lines.append(
            f"{r['rows']:>10}{r['method']:>8}{r['seconds']:>9.2f}{r['first_call_s']:>11.2f}"
            f"{r['peak_mb']:>9.0f}{ratio:>8.1f}  {target}{nulls:>17}  {_same_as_duckdb(hist, r)}"
        )
    return lines + _linearity_lines(hist)


def _same_as_duckdb(hist: list[dict[str, Any]], r: dict[str, Any]) -> str:
    """Whether a Feast store's features equal the duckdb store's at that size ("-" for the
    pandas baseline, whose frame is in time order, and where duckdb did not run)."""
    found = [d for d in hist if (d["rows"], d["method"]) == (r["rows"], "duckdb") and "digest" in d]
    if r["method"] == "pandas" or not found:
        return "-"
    return "yes" if found[0]["digest"] == r["digest"] else "NO"


def _linearity_lines(hist: list[dict[str, Any]]) -> list[str]:
    """Time per row at the largest size over time per row at the one 10x smaller (1.0: linear)."""
    sizes = sorted({r["rows"] for r in hist})
    pairs = [(small, large) for small in sizes for large in sizes if large == 10 * small]
    if not pairs:
        return []
    small, large = pairs[-1]
    lines = [f"linearity: time per row at {large:,} / at {small:,} rows (1.0 = linear)"]
    for method in dict.fromkeys(r["method"] for r in hist):
        t_small, t_large = _seconds_of(hist, small, method), _seconds_of(hist, large, method)
        if t_small and t_large:
            lines.append(f"{method:>18}{(t_large / large) / (t_small / small):>8.2f}")
    return lines


def report(val: dict[str, Any] | None, hist: list[dict[str, Any]] | None) -> str:
    lines = _validation_lines(val) if val is not None else []
    return "\n".join(lines + (_historical_lines(hist) if hist is not None else []))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--only", choices=["validation", "historical"], help="one part only")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="entity rows of the retrieval part (default: 10k..1M)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=HISTORICAL_METHODS,
        default=HISTORICAL_METHODS,
        help="retrieval methods to measure (pandas is the baseline of the ratios)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_historical(args.rows, args.one)))
        return
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    val = hist = None
    if args.only != "historical":
        val = validation([100_000] if args.quick else [100_000, 1_000_000])
    if args.only != "validation":
        hist = historical(sizes, args.methods)
    print(report(val, hist))


if __name__ == "__main__":
    main()
