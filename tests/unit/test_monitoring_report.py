"""The monitoring report: its HTML page (self-contained, most urgent first), its Markdown twin,
``latest.json`` and the flat metrics; and the contract between ``latest.json`` and the
service's gauges (``report_samples`` reads what ``latest_json`` writes)."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aiinfra.data import drift
from aiinfra.monitoring import live, rules
from aiinfra.monitoring.live import VersionReference, Window
from aiinfra.monitoring.report import MonitoringReport
from aiinfra.project.config import DriftConfig, MonitoringRules
from aiinfra.project.schema import REQUEST, Feature, Key, Schema
from aiinfra.runtime.monitoring_gauges import report_samples

SCHEMA = Schema(
    task="binary",
    entities=(Key("customer_id", "int"),),
    timestamp="event_timestamp",
    label="churned",
    features=(
        Feature("amount", "numeric", "orders"),
        Feature("term", "numeric", REQUEST),
        Feature("plan", "categorical", REQUEST),
    ),
    classes=(0, 1),
)
TEN = datetime(2026, 3, 2, 10, tzinfo=UTC)
ELEVEN = TEN + timedelta(hours=1)
NAME = "churn <&> model"  # a user's name: escaped wherever it is shown


def population(
    n: int, seed: int, amount_scale: float = 1.0, plan: str | None = None
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(4, 0.5, n) * amount_scale,
            "term": rng.choice([12, 24, 36], n),
            "plan": [plan] * n if plan else rng.choice(["basic", "plus", "pro"], n),
            "churned": (rng.random(n) < 0.3).astype(int),
            "probability": rng.beta(2, 5, n),
        }
    )


def entries(frame: pd.DataFrame, version: str, start: datetime) -> list[dict[str, Any]]:
    return [
        {
            "at": (start + i * timedelta(seconds=10)).isoformat(),
            "model_version": version,
            "request_id": f"v{version}-{i}",
            "features": {f: row[f] for f in SCHEMA.feature_names},
            "answer": {"probability": row["probability"]},
        }
        for i, row in enumerate(frame.to_dict("records"))
    ]


def timeline() -> list[Window]:
    """v1 healthy at 10:00; at 11:00 v1 drifted and dropped below its gate-time roc_auc while
    v2 (a canary in the same hour) did better than its own."""
    reference = population(3000, 0)
    profile = drift.build_profile(reference, SCHEMA, reference["probability"])
    references = {
        "1": VersionReference("1", SCHEMA, profile, {"roc_auc": 0.85}),
        "2": VersionReference("2", SCHEMA, profile, {"roc_auc": 0.86}),
    }
    lines = entries(population(200, 1), "1", TEN)
    lines += entries(population(200, 2, amount_scale=3.0, plan="pro"), "1", ELEVEN)
    lines += entries(population(100, 3), "2", ELEVEN + timedelta(minutes=5))
    outcomes = live.outcome_frame(
        {"at": (ELEVEN + timedelta(seconds=i)).isoformat(), "status": 500 if i < 4 else 200,
         "latency_ms": float(i), "request_id": f"r{i}"}
        for i in range(100)
    )  # fmt: skip
    found = live.windows(
        live.logged_rows(lines, "probability"),
        outcomes,
        references,
        timedelta(hours=1),
        DriftConfig(),
        30,
    )
    scores = ({"roc_auc": 0.84}, {"roc_auc": 0.70, "f1": math.nan}, {"roc_auc": 0.87})
    return [replace(w, live=s, labelled_rows=50) for w, s in zip(found, scores, strict=True)]


@pytest.fixture(scope="module")
def windows() -> list[Window]:
    return timeline()


@pytest.fixture(scope="module")
def report(windows: list[Window]) -> MonitoringReport:
    champion = windows[1]  # v1 at 11:00: the champion's latest window
    fired = rules.fired(champion, MonitoringRules(), "roc_auc")
    return MonitoringReport(
        NAME,
        ELEVEN + timedelta(hours=1),
        "roc_auc",
        windows,
        "1",
        fired,
        "A retraining run starts, recording these reasons.",
    )


def when(w: Window) -> str:
    return f"{w.start:%Y-%m-%d %H:%M}-{w.end:%H:%M}"


def test_the_timeline_is_what_the_report_is_about(windows: list[Window]) -> None:
    assert [(w.version, w.start) for w in windows] == [("1", TEN), ("1", ELEVEN), ("2", ELEVEN)]
    assert [len(w.drifted) for w in windows] == [0, 2, 0]
    assert windows[1].requests == 100 and windows[1].errors == 4


def test_html_puts_the_rules_that_fired_first_then_the_chart_timeline_and_drift(
    report: MonitoringReport,
) -> None:
    page = report.html()
    assert len(report.fired) == 2  # the drifted features and the drop from the gate
    order = [
        page.index("<h2>Rules that fired</h2>"),
        page.index("<svg"),
        page.index("<h2>Windows</h2>"),
        page.index("<h2>Drift of v1 (2026-03-02 11:00-12:00)</h2>"),  # each version's latest
        page.index("<h2>Drift of v2 (2026-03-02 11:00-12:00)</h2>"),
    ]
    assert order == sorted(order)
    for reason in report.fired:
        assert f"<li>{html.escape(reason)}</li>" in page
    assert "A retraining run starts" in page


def test_html_chart_marks_the_drop_and_the_recovery(report: MonitoringReport) -> None:
    chart = report.html().split("<svg", 1)[1].split("</svg>", 1)[0]
    assert chart.count("<circle") == 3  # one point per labelled window
    assert chart.count("fill='#c33'") == 1  # v1's drop below its gate-time figure
    assert "v1 at its gate: 0.8500" in chart and "v2 at its gate: 0.8600" in chart
    assert "roc_auc 0.7000" in chart and "roc_auc 0.8700" in chart


def test_html_has_a_timeline_row_per_window(
    report: MonitoringReport, windows: list[Window]
) -> None:
    page = report.html()
    rows = re.findall(
        r"<tr(?: class=drop)?><td>(2026-[^<]+)</td><td>(v\d)</td><td>(\d+)</td>", page
    )
    assert rows == [(when(w), f"v{w.version}", str(w.rows)) for w in windows]
    assert page.count("<tr class=drop>") == 1
    assert "<td>amount, plan</td>" in page  # the drifted features, named


def test_html_drift_sections_show_each_version_s_figures(report: MonitoringReport) -> None:
    page = report.html()
    v1, v2 = page.split("<h2>Drift of v1")[1].split("<h2>Drift of v2")
    assert v1.count("drift-fail") == 2 and "drift-fail" not in v2
    for section in (v1, v2):
        assert "amount" in section and "probability (prediction)" in section


def test_html_is_self_contained_and_escapes_user_text(report: MonitoringReport) -> None:
    page = report.html()
    assert "<script" not in page.lower()
    assert "http" not in page.lower()  # no CDN, no external asset
    assert NAME not in page and "churn &lt;&amp;&gt; model" in page


def test_markdown_has_the_same_rows(report: MonitoringReport, windows: list[Window]) -> None:
    text = report.markdown()
    rows = [line for line in text.splitlines() if line.startswith("| 2026-")]
    expected = [f"| {when(w)} | v{w.version} | {w.rows} | {w.requests} |" for w in windows]
    assert [r[: len(e)] for r, e in zip(rows, expected, strict=True)] == expected
    assert text.index("## Rules that fired") < text.index("## Windows")
    assert "## Drift of v1 (2026-03-02 11:00-12:00)" in text
    assert "## Drift of v2 (2026-03-02 11:00-12:00)" in text
    assert "| amount, plan |" in text and "roc_auc 0.7 | 0.85 |" in text


def test_latest_json_is_the_champion_s_latest_window(
    report: MonitoringReport, windows: list[Window]
) -> None:
    latest = json.loads(json.dumps(report.latest_json()))  # as written to latest.json
    w = windows[1]
    assert latest == {
        "model_name": NAME,
        "generated": report.generated.isoformat(),
        "rules_fired": report.fired,
        "model_version": "1",
        "window_start": ELEVEN.isoformat(),
        "window_end": (ELEVEN + timedelta(hours=1)).isoformat(),
        "rows": 200,
        "requests": 100,
        "errors": 4,
        "error_rate": 0.04,
        "latency_p50_ms": w.latency_p50_ms,
        "latency_p95_ms": w.latency_p95_ms,
        "drifted_features": 2,
        "features": {f.feature: {"psi": f.psi, "drifted": f.drifted} for f in w.features},
        "prediction_psi": w.prediction.psi if w.prediction else None,
        "labelled_rows": 50,
        "live": {"roc_auc": 0.70},  # the NaN f1 left out: JSON has no NaN
        "gate": {"roc_auc": 0.85},
    }
    assert {k for k, v in latest["features"].items() if v["drifted"]} == {"amount", "plan"}


def test_latest_is_the_last_window_without_a_champion_among_them(
    report: MonitoringReport, windows: list[Window]
) -> None:
    for champion in (None, "7"):
        assert replace(report, champion=champion).latest == windows[-1]


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"model_name": NAME, **labels}.items()))


def test_the_gauges_read_latest_json(report: MonitoringReport, windows: list[Window]) -> None:
    w = windows[1]
    samples = report_samples(json.loads(json.dumps(report.latest_json())))
    found = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    assert len(found) == len(samples)  # no gauge set twice
    assert w.latency_p95_ms is not None and w.prediction is not None
    assert found == {
        key("aiinfra_monitoring_window_rows"): 200.0,
        key("aiinfra_monitoring_error_rate"): 0.04,
        key("aiinfra_monitoring_latency_p95_ms"): w.latency_p95_ms,
        key("aiinfra_monitoring_drifted_features"): 2.0,
        key("aiinfra_monitoring_prediction_psi"): w.prediction.psi,
        key("aiinfra_monitoring_window_end_seconds"): (ELEVEN + timedelta(hours=1)).timestamp(),
        **{key("aiinfra_monitoring_feature_psi", feature=f.feature): f.psi for f in w.features},
        key("aiinfra_monitoring_live_metric", metric="roc_auc"): 0.70,
    }


def test_a_window_without_requests_is_a_nan_latency_gauge(report: MonitoringReport) -> None:
    quiet = replace(
        report.windows[1], requests=0, errors=0, latency_p50_ms=None, latency_p95_ms=None
    )
    latest = replace(report, windows=[quiet]).latest_json()
    samples = {
        name: value for name, labels, value in report_samples(json.loads(json.dumps(latest)))
    }
    assert math.isnan(samples["aiinfra_monitoring_latency_p95_ms"])
    assert samples["aiinfra_monitoring_error_rate"] == 0.0


def test_metrics_are_the_latest_window_s_flat_figures(
    report: MonitoringReport, windows: list[Window]
) -> None:
    w = windows[1]
    assert w.latency_p95_ms is not None and w.prediction is not None
    assert report.metrics() == {
        "monitor_rows": 200.0,
        "monitor_requests": 100.0,
        "monitor_error_rate": 0.04,
        "monitor_drifted_features": 2.0,
        "monitor_labelled_rows": 50.0,
        "monitor_latency_p95_ms": w.latency_p95_ms,
        "monitor_prediction_psi": w.prediction.psi,
        "live_roc_auc": 0.70,
    }


def empty_report() -> MonitoringReport:
    return MonitoringReport(NAME, ELEVEN, "roc_auc", [], "1", [], "")


def test_a_report_without_windows_says_so() -> None:
    report = empty_report()
    assert report.latest is None and report.metrics() == {}
    assert report.summary() == "no logged requests in the lookback: nothing to monitor"
    assert "No labelled windows yet" in report.html() and "<svg" not in report.html()
    assert report.latest_json() == {
        "model_name": NAME,
        "generated": ELEVEN.isoformat(),
        "rules_fired": [],
    }


def test_a_quiet_lookback_keeps_the_last_windows_figures(tmp_path: Path) -> None:
    """No logged requests: the report says so, and latest.json (the gauges' source) keeps the
    last window's figures rather than becoming a file the gauges cannot read."""
    from aiinfra.monitoring import monitor

    (tmp_path / monitor.LATEST).write_text('{"rows": 5}')
    monitor._write(tmp_path, empty_report())
    assert "no logged requests" in (tmp_path / monitor.REPORT_HTML).read_text()
    assert json.loads((tmp_path / monitor.LATEST).read_text()) == {"rows": 5}


def test_the_report_renders_offline_in_chromium(report: MonitoringReport, tmp_path: Path) -> None:
    """As a person opens it: nothing fetched, the chart and every histogram drawn."""
    from tests import report_browser

    page = tmp_path / "monitoring.html"
    page.write_text(report.html())
    shown = report_browser.render(page, tmp_path, width=1280, height=1600)
    assert shown.requests == ()
    drawn = 1 + sum(len(w.features) + bool(w.prediction) + bool(w.label) for w in latest_of(report))
    assert shown.svg_count() == drawn
    assert "Rules that fired" in shown.dom


def latest_of(report: MonitoringReport) -> list[Window]:
    """Each version's latest window: the ones with a drift section."""
    found: dict[str, Window] = {}
    for w in report.windows:
        found[w.version] = w
    return list(found.values())
