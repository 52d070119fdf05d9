"""The monitoring loop, end to end under load: the world changes under a served model; a
training run nobody asked for holds at the gate for a person (the champion degraded on the new
data); the labels that arrive later show the drop, ``aiinfra monitor`` sees it and the drift
and starts a retraining run, whose challenger passes the gate on the new data, is promoted and
swapped in while clients keep sending requests: none of them fails, and the report shows the
drift, the drop and the recovery.

The shift: applicants borrow about 2.5 times as much, mostly for cars, education and medical
bills, and from now on whether they default depends on the purpose alone (85% for those three,
10% otherwise), which the champion never learned.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from aiinfra.project.config import PlatformConfig
from aiinfra.release import registry
from aiinfra_cli.workflow import run_training, start_serving
from pipelines.local import PipelineFailed, run_monitoring_local
from tests import report_browser
from tests.conftest import run_cli, smoke_config
from tests.e2e.conftest import running_platform

pytestmark = pytest.mark.e2e
RISKY = ["car", "education", "medical"]
LIVE_LABELS = "{home}/data/live_labels.parquet"


def shifted_loans(config: PlatformConfig, n: int, seed: int) -> pd.DataFrame:
    """New loans of the changed world, labelled by its new rule, made in the last two days."""
    rng = np.random.default_rng(seed)
    old = pd.read_parquet(config.labels_path)
    people = old[["applicant_id", "zipcode"]].drop_duplicates("applicant_id")
    chosen = people.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    purpose = np.where(
        rng.random(n) < 0.7, rng.choice(RISKY, n), rng.choice(["debt_consolidation", "other"], n)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    seconds = np.sort(rng.choice(2 * 24 * 3600, n, replace=False))[::-1]
    return pd.DataFrame(
        {
            "loan_id": np.arange(int(old["loan_id"].max()) + 1, int(old["loan_id"].max()) + 1 + n),
            "applicant_id": chosen["applicant_id"].astype("int64"),
            "event_timestamp": pd.Timestamp(now) - pd.to_timedelta(seconds + 600, unit="s"),
            "loan_amount": (rng.lognormal(np.log(12_000), 0.7, n) * 2.5).clip(500, 99_000).round(2),
            "term_months": rng.choice([36, 60], n, p=[0.7, 0.3]).astype("int64"),
            "purpose": purpose,
            "zipcode": chosen["zipcode"],
            "defaulted": (rng.random(n) < np.where(np.isin(purpose, RISKY), 0.85, 0.10)).astype(
                "int64"
            ),
        }
    )


@dataclass
class LabelledLoad:
    """Clients sending one shifted loan per request, remembering each answer's request id and
    the loan's label (the label that "arrives later")."""

    url: str
    loans: pd.DataFrame
    clients: int = 2
    answers: list[tuple[int | str, str | None, int, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _take(self) -> pd.Series:
        with self._lock:
            row = self.loans.iloc[self._next % len(self.loans)]
            self._next += 1
            return row

    def _run(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                loan = self._take()
                body = {
                    "rows": [
                        {
                            "applicant_id": int(loan["applicant_id"]),
                            "zipcode": str(loan["zipcode"]),
                            "loan_amount": float(loan["loan_amount"]),
                            "term_months": int(loan["term_months"]),
                            "purpose": str(loan["purpose"]),
                        }
                    ]
                }
                try:
                    answer = client.post(f"{self.url}/predict", json=body)
                    outcome: tuple[int | str, str | None, int, str | None] = (
                        answer.status_code,
                        answer.headers.get("x-request-id"),
                        int(loan["defaulted"]),
                        str(answer.json().get("model_version")),
                    )
                except (httpx.HTTPError, ValueError) as exc:
                    outcome = (repr(exc), None, int(loan["defaulted"]), None)
                with self._lock:
                    self.answers.append(outcome)
                time.sleep(0.05)  # steady traffic, not a flood: the run shares 2 cores with it

    def start(self) -> LabelledLoad:
        for thread in self._threads:
            thread.start()
        return self

    def until(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)

    def failures(self) -> list[tuple[int | str, str | None, int, str | None]]:
        with self._lock:
            return [a for a in self.answers if a[0] != 200]

    def write_labels(self, path: Path) -> int:
        """The late labels table: one row per answered request, keyed by its request id."""
        with self._lock:
            rows = [(rid, label) for status, rid, label, _ in self.answers if status == 200]
        frame = pd.DataFrame(rows, columns=["request_id", "defaulted"])
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        return len(frame)


@pytest.fixture(scope="module")
def loop_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformConfig]:
    config = smoke_config(
        tmp_path_factory.mktemp("loop"),
        poll_seconds=1.0,
        monitoring={
            "window_minutes": 60,
            "min_rows": 30,
            "labels": {"path": LIVE_LABELS},
            "rules": {"drifted_features": 2, "max_drop": 0.05},
        },
    )
    yield from running_platform(config)


def test_monitor_retrains_on_drift_and_the_new_champion_recovers(
    loop_home: PlatformConfig, tmp_path: Path
) -> None:
    config = loop_home
    timings: dict[str, float] = {}
    started = time.monotonic()
    first = run_training(config)
    assert first.promoted, first.describe()
    url = start_serving(config)
    timings["v1 trained and served"] = time.monotonic() - started

    # The world changes: new loans (their labels known to the label table only once they
    # arrive), and requests that look like them.
    new = shifted_loans(config, 2400, seed=11)
    labelled, live = new.iloc[:1800], new.iloc[1800:]
    loans = pd.read_parquet(config.labels_path)
    pd.concat([loans, labelled], ignore_index=True).to_parquet(config.labels_path, index=False)
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    labels_path = Path(LIVE_LABELS.replace("{home}", str(config.home)))

    # A run nobody asked for on the new data stops at validation (the features drifted). With
    # drift as a warning only, it reaches the gate, which sees the champion score far below its
    # own gate-time figure on the new rows: the data changed, and the run holds for a person.
    with pytest.raises(PipelineFailed, match="distribution_drift"):
        run_training(config)
    warn_only = config.model_copy(
        update={"validation": config.validation.model_copy(update={"drift_mode": "warn"})}
    )
    held = run_training(warn_only)
    assert (held.version, held.gate, held.champion_after) == ("2", "held", "1"), held.describe()
    gate_report = held.reports["gate-report.md"].read_text()
    assert "HELD for a person" in gate_report and "The data changed" in gate_report

    load = LabelledLoad(url, live).start()
    try:
        load.until(150, timeout=90)
        load.write_labels(labels_path)
        begun = time.monotonic()
        monitored = run_cli(None, "monitor", config=profile, timeout=400)
        timings["monitor + retraining run"] = time.monotonic() - begun
        assert monitored.returncode == 0, monitored.stdout + monitored.stderr
        assert "rule fired" in monitored.stdout, monitored.stdout
        # What monitoring saw of v1 on the new world: the drift and the drop.
        before = json.loads(_first_report(config, "latest.json"))
        assert before["model_version"] == "1" and before["drifted_features"] >= 2, before
        assert before["live"]["roc_auc"] < before["gate"]["roc_auc"] - 0.05, before
        uri, name = config.mlflow.tracking_uri, config.model_name
        champion = registry.alias_version(uri, name, registry.CHAMPION)
        assert champion == "3", monitored.stdout + monitored.stderr
        tags = registry.version_tags(uri, name, "3")
        assert tags["trigger"] == "monitoring" and "drifted" in tags["trigger_reason"], tags
        assert "worse than its" in tags["trigger_reason"], tags  # the live drop, with the figures

        # The new champion takes over while the clients keep sending.
        swapped = time.monotonic()
        while time.monotonic() - swapped < 60 and not any(a[3] == "3" for a in load.answers[-5:]):
            time.sleep(0.5)
        timings["swap after promotion"] = time.monotonic() - swapped
        answered_by_v3 = sum(1 for a in load.answers if a[3] == "3")
        load.until(len(load.answers) + 150, timeout=90)
    finally:
        load.stop()
    assert answered_by_v3 > 0
    assert load.failures() == [], load.failures()[:5]
    load.write_labels(labels_path)

    again = run_cli(None, "monitor", "--no-retrain", config=profile)
    assert again.returncode == 0, again.stdout + again.stderr
    latest = json.loads((config.monitoring_dir / "latest.json").read_text())
    report = (config.monitoring_dir / "report.html").read_text()
    # The drift and the drop (v1 on the new world), and the recovery (v3).
    assert latest["model_version"] == "3"
    live_v3, gate_v3 = latest["live"]["roc_auc"], latest["gate"]["roc_auc"]
    assert live_v3 > gate_v3 - 0.05, latest
    assert live_v3 > before["live"]["roc_auc"] + 0.1, (latest, before)  # the recovery
    assert "v1" in report and "v3" in report and "<svg" in report
    # The same figures in MLflow, on each serving version's run, and as the service's gauges.
    uri, name = config.mlflow.tracking_uri, config.model_name
    client = registry.client(uri)
    runs = {v: client.get_model_version(name, v).run_id for v in ("1", "3")}
    v1_live = client.get_metric_history(runs["1"], "live_roc_auc")
    assert v1_live and v1_live[-1].value < before["gate"]["roc_auc"] - 0.05, v1_live
    assert client.get_metric_history(runs["3"], "monitor_drifted_features")
    logged = {f.path for f in client.list_artifacts(runs["3"], "monitoring")}
    assert "monitoring/report.html" in logged, logged
    deadline = time.monotonic() + 30
    while (shown_value := _live_gauge(httpx.get(f"{url}/metrics").text, "roc_auc")) is None:
        assert time.monotonic() < deadline, "the service never showed the monitoring gauges"
        time.sleep(0.5)
    assert shown_value == pytest.approx(live_v3)
    # A person opens it: it renders offline, with its chart and a histogram per column.
    shown = report_browser.render(config.monitoring_dir / "report.html", tmp_path)
    assert shown.requests == (), shown.requests
    assert shown.svg_count() == report.count("<svg") >= 1 + 2 * 5, shown.svg_count()
    # The compiled monitoring pipeline on kfp.local: its monitor task reports, and its
    # training branch stays skipped: the rules still fire on v3's window (its training data
    # was mostly the old world), but v3 is a run monitoring started minutes ago (cooldown).
    begun = time.monotonic()
    run_dir = run_monitoring_local(config)
    timings["monitoring pipeline"] = time.monotonic() - begun
    assert (run_dir / "monitor-model").is_dir() and not (run_dir / "train-model").exists()
    assert registry.alias_version(uri, name, registry.CHAMPION) == "3"
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})
    print("answers:", len(load.answers), "by v3:", answered_by_v3)


def _first_report(config: PlatformConfig, file: str) -> str:
    """A file of the first monitoring run (each run keeps a copy under its time)."""
    runs = sorted(p for p in config.monitoring_dir.iterdir() if p.is_dir())
    return (runs[0] / file).read_text()


def _live_gauge(exposition: str, metric: str) -> float | None:
    """The value of the service's ``aiinfra_monitoring_live_metric`` gauge for ``metric``."""
    for line in exposition.splitlines():
        if line.startswith("aiinfra_monitoring_live_metric{") and f'metric="{metric}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None
