"""Data-path benchmarks: validation, point-in-time retrieval and online reads, each as a ratio
against a plain baseline measured in the same run.

1. validation: the GX suite against the same checks as vectorized pandas (100k, 1M rows);
   GX's import time apart;
2. historical retrieval: Feast ``get_historical_features`` (file and duckdb offline stores)
   against pandas ``merge_asof`` with the same TTL rule, at 10k, 100k and 1M entity rows, each
   in a fresh subprocess so its peak memory is its own;
3. online retrieval: p50/p99 of ``get_online_features`` for 1 and 50 entities against a raw
   query of the same sqlite online store.

Run: make bench-data   (or: python -m benchmarks.data --quick for the small sizes only)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.data import feature_store
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config
from aiinfra.project.definition import load_project, read_label_table
from aiinfra.project.feature_repo import FeatureRepo
from aiinfra.project.schema import Schema
from benchmarks.pandas_checks import pandas_checks

SMOKE = PROJECT_ROOT / "configs" / "smoke.yaml"


def _config(home: Path, loans: int, offline: str = "file") -> PlatformConfig:
    """The loan example's smoke profile with ``loans`` label rows from its generator."""
    sizes = {"n_loans": loans, "n_applicants": max(100, loans // 4), "n_zipcodes": 200, "days": 120}
    project = load_config(SMOKE).project.model_dump(mode="json")
    project["generator"]["settings"] |= sizes
    features = load_config(SMOKE).features.model_dump(mode="json")
    if offline != "file":
        features["offline_store"] = {"type": offline}
    return load_config(SMOKE, home=home, project=project, features=features)


def _prepared(
    home: Path, loans: int, offline: str = "file"
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
    """Run in a child process: one retrieval, its time and the process's peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        offline = method if method != "pandas" else "file"
        config, schema, store, repo = _prepared(Path(tmp), rows, offline)
        entities = _labels(config, schema)
        if method == "pandas":
            before = _rss_mb()
            start = time.perf_counter()
            result = reference_join(entities, schema, repo)
        else:
            before = _rss_mb()
            start = time.perf_counter()
            result = feature_store.historical_features(store, schema, entities)
        seconds = time.perf_counter() - start
    assert len(result) == rows
    return {"seconds": seconds, "peak_mb": _rss_mb(), "setup_mb": before}


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

    from aiinfra.data import validation as gx_validation
    from aiinfra.data.training_set import build_training_set

    import_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        config, schema, _, _ = _prepared(Path(tmp), 20_000)
        base = build_training_set(config)
    rows = []
    for n in sizes:
        frame = pd.concat([base] * (n // len(base) + 1), ignore_index=True).head(n)
        if schema.row_id:
            frame[schema.row_id] = np.arange(n)
        frame[schema.timestamp] += pd.to_timedelta(np.arange(n) % 1000, unit="ms")
        t0 = time.perf_counter()
        gx_report = gx_validation.validate(frame, schema, config.validation)
        t1 = time.perf_counter()
        pd_failed = pandas_checks(frame, schema, config.validation)
        t2 = time.perf_counter()
        same = sorted(c.name for c in gx_report.failed) == sorted(pd_failed)
        rows.append({"rows": n, "gx_s": t1 - t0, "pandas_s": t2 - t1, "same_verdicts": same})
    return {"import_s": import_seconds, "rows": rows}


def online(iterations: int = 300) -> list[dict[str, Any]]:
    import sqlite3

    with tempfile.TemporaryDirectory() as tmp:
        config, schema, store, repo = _prepared(Path(tmp), 5000)
        feature_store.materialize(store, repo, schema.feature_service, datetime.now(UTC))
        keys_of_rows = list(schema.entity_names)
        rows = _labels(config, schema).drop_duplicates(keys_of_rows)[keys_of_rows]
        rows = rows.to_dict("records")
        db = sqlite3.connect(str(config.feast_dir / "online_store.db"))
        table = f"{store.project}_{next(iter(schema.views()))}"
        keys = [r[0] for r in db.execute(f"SELECT DISTINCT entity_key FROM {table}")]
        out = []
        for n in (1, 50):
            feast_t, raw_t = [], []
            for i in range(iterations):
                batch = rows[(i * n) % (len(rows) - n) :][:n]
                t0 = time.perf_counter()
                feature_store.online_features(store, schema, batch)
                feast_t.append(time.perf_counter() - t0)
                chosen = keys[(i * n) % (len(keys) - n) :][:n]
                t0 = time.perf_counter()
                marks = ",".join("?" * len(chosen))
                db.execute(
                    f"SELECT entity_key, feature_name, value FROM {table} "
                    f"WHERE entity_key IN ({marks})",
                    chosen,
                ).fetchall()
                raw_t.append(time.perf_counter() - t0)
            out.append({"entities": n, "feast": feast_t, "raw": raw_t})
        db.close()
    return out


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def report(val: dict[str, Any], hist: list[dict[str, Any]], onl: list[dict[str, Any]]) -> str:
    lines = [
        "\n== validation: GX suite vs the same checks in vectorized pandas ==",
        f"great_expectations import (apart): {val['import_s']:.2f} s",
        f"{'rows':>10}{'GX s':>9}{'pandas s':>10}{'ratio':>8}  same verdicts",
    ]
    for r in val["rows"]:
        lines.append(
            f"{r['rows']:>10}{r['gx_s']:>9.2f}{r['pandas_s']:>10.3f}"
            f"{r['gx_s'] / r['pandas_s']:>8.1f}  {r['same_verdicts']}"
        )
    lines += [
        "\n== historical retrieval: Feast point-in-time join vs pandas merge_asof ==",
        f"{'rows':>10}{'method':>8}{'s':>9}{'peak MB':>9}{'ratio':>8}",
    ]
    for r in hist:
        if "error" in r:
            lines.append(f"{r['rows']:>10}{r['method']:>8}  failed: {r['error'].splitlines()[-1]}")
            continue
        base = next(
            (
                b
                for b in hist
                if b["rows"] == r["rows"] and b["method"] == "pandas" and "seconds" in b
            ),
            None,
        )
        ratio = r["seconds"] / base["seconds"] if base else float("nan")
        lines.append(
            f"{r['rows']:>10}{r['method']:>8}{r['seconds']:>9.2f}{r['peak_mb']:>9.0f}{ratio:>8.1f}"
        )
    lines += [
        "\n== online retrieval: get_online_features vs a raw query of the sqlite store ==",
        f"{'entities':>9}{'feast p50':>11}{'p99 ms':>8}{'raw p50':>9}{'p99 ms':>8}",
    ]
    for r in onl:
        lines.append(
            f"{r['entities']:>9}{_ms(r['feast'], 50):>11.2f}{_ms(r['feast'], 99):>8.2f}"
            f"{_ms(r['raw'], 50):>9.3f}{_ms(r['raw'], 99):>8.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_historical(args.rows, args.one)))
        return
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    val = validation([100_000] if args.quick else [100_000, 1_000_000])
    hist = historical(sizes, ["pandas", "file", "duckdb"])
    print(report(val, hist, online()))


if __name__ == "__main__":
    main()
