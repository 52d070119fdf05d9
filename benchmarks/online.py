"""Online feature reads, as serving does them, against Feast's full API and the bare store.

For the sqlite store (local profile) and Redis (team profile; skipped when `redis-server` is
not installed), on the loan example with 5,000 loans, materialized:
- `get_online_features(...).to_df()` (the baseline: the registry is resolved on every call),
- `OnlineReader` (the serving path: the feature service resolved once, then the store's own
  `online_read`; tests/unit/test_online_reader.py checks both answer the same), as the values
  by feature the service reads, and as the DataFrame `to_df()` gives,
- the raw store query of the same keys (sqlite only): the floor.
One and 50 entities per read. Targets (issue 11): one entity, p99 <= 1 ms on sqlite and
<= 2 ms on Redis.

Run: make bench-online   (python -m benchmarks.online [--iterations N])
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from aiinfra.data import feature_store
from aiinfra.data.online_reader import OnlineReader
from aiinfra.ops.local_servers import free_port
from aiinfra.project.config import PlatformConfig, load_config
from aiinfra.project.definition import load_project, read_label_table
from benchmarks.data import SMOKE

LOANS = 5000
TARGET_P99_MS = {"sqlite": 1.0, "redis": 2.0}


def _config(home: Path, online_store: dict[str, Any]) -> PlatformConfig:
    project = load_config(SMOKE).project.model_dump(mode="json")
    project["generator"]["settings"] |= {"n_loans": LOANS, "n_applicants": LOANS // 4}
    features = load_config(SMOKE).features.model_dump(mode="json")
    features["online_store"] = online_store
    return load_config(SMOKE, home=home, project=project, features=features)


def _materialized(config: PlatformConfig) -> tuple[Any, Any, list[dict[str, Any]]]:
    """The example's store, applied and materialized, and one entity row per applicant."""
    from aiinfra_cli.workflow import generate_data

    generate_data(config, force=True)
    schema = load_project(config).schema
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    labels = read_label_table(config.labels_path, schema.timestamp)
    end = labels[schema.timestamp].max().to_pydatetime() + timedelta(days=1)
    feature_store.materialize(store, repo, schema.feature_service, end)
    keys = list(schema.entity_names)
    rows = labels.drop_duplicates(keys)[keys].to_dict("records")
    return store, schema, rows


@contextmanager
def _redis() -> Iterator[int | None]:
    """A throwaway redis-server on a free loopback port (None where it is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _timings(read: Callable[[list[Any]], Any], rows: list[Any], n: int, k: int) -> list[float]:
    out = []
    for i in range(k):
        batch = rows[(i * n) % (len(rows) - n) :][:n]
        start = time.perf_counter()
        read(batch)
        out.append(time.perf_counter() - start)
    return out


def _raw_sqlite(config: PlatformConfig, store: Any, schema: Any) -> Callable[[list[Any]], Any]:
    """The floor: the online table queried by serialized key, values left as bytes."""
    db = sqlite3.connect(str(config.feast_dir / "online_store.db"), check_same_thread=False)
    table = f"{store.project}_{next(iter(schema.views()))}"
    keys = [r[0] for r in db.execute(f"SELECT DISTINCT entity_key FROM {table}")]

    def read(batch: list[Any]) -> Any:
        chosen = keys[: len(batch)]
        marks = ",".join("?" * len(chosen))
        sql = f"SELECT entity_key, feature_name, value FROM {table} WHERE entity_key IN ({marks})"
        return db.execute(sql, chosen).fetchall()

    return read


def measure(store_kind: str, online_store: dict[str, Any], iterations: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), online_store)
        store, schema, rows = _materialized(config)
        reader = OnlineReader(store, schema.feature_service)
        ways: dict[str, Callable[[list[Any]], Any]] = {
            "get_online_features": lambda b: feature_store.online_features(store, schema, b),
            # What the service reads: values by feature (its request columns join them).
            "OnlineReader": reader.columns,
            "OnlineReader.read": reader.read,  # the same as a DataFrame, as to_df() gives
        }
        if store_kind == "sqlite":
            ways["raw query"] = _raw_sqlite(config, store, schema)
        results = []
        for n in (1, 50):
            for way, read in ways.items():
                _timings(read, rows, n, 20)  # warm-up: connections, caches
                k = iterations if way != "get_online_features" else max(50, iterations // 10)
                times = np.array(_timings(read, rows, n, k)) * 1000
                results.append(
                    {
                        "store": store_kind,
                        "entities": n,
                        "way": way,
                        "p50": float(np.percentile(times, 50)),
                        "p99": float(np.percentile(times, 99)),
                    }
                )
        return results


def report(results: list[dict[str, Any]]) -> str:
    lines = ["== online reads (ms; loan example, 5,000 loans) =="]
    lines.append(f"{'store':<7} {'entities':>8}  {'way':<20} {'p50':>8} {'p99':>8}  vs Feast p50")
    for r in results:
        base = next(
            b["p50"]
            for b in results
            if b["store"] == r["store"]
            and b["entities"] == r["entities"]
            and b["way"] == "get_online_features"
        )
        lines.append(
            f"{r['store']:<7} {r['entities']:>8}  {r['way']:<20} {r['p50']:>8.3f} "
            f"{r['p99']:>8.3f}  {base / r['p50']:>6.1f}x faster"
        )
    for kind, target in TARGET_P99_MS.items():
        ours = [
            r
            for r in results
            if r["store"] == kind and r["entities"] == 1 and r["way"] == "OnlineReader"
        ]
        if ours:
            p99 = ours[0]["p99"]
            verdict = "met" if p99 <= target else "MISSED"
            lines.append(f"{kind}: one entity p99 {p99:.3f} ms, target <= {target} ms: {verdict}")
        else:
            lines.append(f"{kind}: not measured (redis-server is not installed)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    results = measure("sqlite", {}, args.iterations)
    with _redis() as port:
        if port is not None:
            redis_store = {"type": "redis", "connection_string": f"127.0.0.1:{port}"}
            results += measure("redis", redis_store, args.iterations)
    print(report(results))


if __name__ == "__main__":
    main()
