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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.data import demo_data, feature_store
from aiinfra.project import schema
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, load_config
from aiinfra.data.feature_definitions import TTL
from benchmarks.pandas_checks import pandas_checks


def _config(home: Path, loans: int, offline: str = "file") -> PlatformConfig:
    data = {"n_loans": loans, "n_applicants": max(100, loans // 4), "n_zipcodes": 200, "days": 120}
    features = {} if offline == "file" else {"offline_store": {"type": offline}}
    return load_config(
        PROJECT_ROOT / "configs" / "smoke.yaml", home=home, data=data, features=features
    )


def _prepared(
    home: Path, loans: int, offline: str = "file"
) -> tuple[PlatformConfig, demo_data.DemoData, Any, Any]:
    """Demo data of ``loans`` rows written under ``home``, and its applied feature store."""
    config = _config(home, loans, offline)
    data = demo_data.generate(config.data)
    data.write(config.data_dir)
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    return config, data, store, repo


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_join(loans: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The baseline: pandas merge_asof per view, values older than the TTL nulled."""
    out = loans.sort_values(schema.EVENT_TIMESTAMP)
    for key, table in (
        (schema.APPLICANT_ID, tables["applicants"]),
        (schema.ZIPCODE, tables["zipcodes"]),
    ):
        cols = [
            c for c in table.columns if c not in (schema.APPLICANT_ID, schema.ZIPCODE, "created")
        ]
        right = table[[key, *cols]].rename(columns={schema.EVENT_TIMESTAMP: "_ts"})
        out = pd.merge_asof(
            out, right.sort_values("_ts"), left_on=schema.EVENT_TIMESTAMP, right_on="_ts", by=key
        )
        stale = out["_ts"] < out[schema.EVENT_TIMESTAMP] - TTL
        out.loc[stale, [c for c in cols if c != schema.EVENT_TIMESTAMP]] = np.nan
        out = out.drop(columns="_ts")
    return out


def one_historical(rows: int, method: str) -> dict[str, float]:
    """Run in a child process: one retrieval, its time and the process's peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        _, data, store, repo = _prepared(Path(tmp), rows, method if method != "pandas" else "file")
        loans = data.loans[
            [schema.LOAN_ID, schema.APPLICANT_ID, schema.ZIPCODE, schema.EVENT_TIMESTAMP]
        ]
        if method == "pandas":
            tables = {"applicants": data.applicants, "zipcodes": data.zipcodes}
            before = _rss_mb()
            start = time.perf_counter()
            result = reference_join(loans, tables)
        else:
            before = _rss_mb()
            start = time.perf_counter()
            result = feature_store.historical_features(store, repo, loans)
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

    from aiinfra import validation as gx_validation

    import_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        config, data, store, repo = _prepared(Path(tmp), 20_000)
        base = feature_store.historical_features(store, repo, data.loans)
    rows = []
    for n in sizes:
        frame = pd.concat([base] * (n // len(base) + 1), ignore_index=True).head(n)
        frame[schema.LOAN_ID] = np.arange(n)
        frame[schema.EVENT_TIMESTAMP] += pd.to_timedelta(np.arange(n) % 1000, unit="ms")
        t0 = time.perf_counter()
        gx_report = gx_validation.validate(frame, config.validation)
        t1 = time.perf_counter()
        pd_failed = pandas_checks(frame, config.validation)
        t2 = time.perf_counter()
        same = sorted(c.name for c in gx_report.failed) == sorted(pd_failed)
        rows.append({"rows": n, "gx_s": t1 - t0, "pandas_s": t2 - t1, "same_verdicts": same})
    return {"import_s": import_seconds, "rows": rows}


def online(iterations: int = 300) -> list[dict[str, Any]]:
    import sqlite3

    with tempfile.TemporaryDirectory() as tmp:
        config, data, store, repo = _prepared(Path(tmp), 5000)
        feature_store.materialize(store, repo, demo_data.default_end())
        apps = data.applicants.drop_duplicates(schema.APPLICANT_ID)
        rows = apps[[schema.APPLICANT_ID, schema.ZIPCODE]].to_dict("records")
        db = sqlite3.connect(str(config.feast_dir / "online_store.db"))
        table = f"{store.project}_{repo.applicant_profile.name}"
        keys = [r[0] for r in db.execute(f"SELECT DISTINCT entity_key FROM {table}")]
        out = []
        for n in (1, 50):
            feast_t, raw_t = [], []
            for i in range(iterations):
                batch = rows[(i * n) % (len(rows) - n) :][:n]
                t0 = time.perf_counter()
                feature_store.online_features(store, repo, batch)
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
