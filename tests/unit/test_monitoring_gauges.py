"""The monitoring report becomes the same gauges on the service's /metrics and on a
Pushgateway; the service re-reads it only when it changed, and a bad file never changes or
breaks the gauges."""

from __future__ import annotations

import http.server
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from aiinfra.runtime.monitoring_gauges import (
    GAUGES,
    Gauges,
    ReportWatcher,
    push_gauges,
    report_samples,
)

WINDOW_END = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
LATEST: dict[str, Any] = {
    "model_name": "loan-default",
    "model_version": "3",
    "window_start": "2026-01-02T03:00:00+00:00",
    "window_end": WINDOW_END.isoformat(),
    "rows": 120,
    "requests": 130,
    "errors": 4,
    "error_rate": 4 / 130,
    "latency_p50_ms": 3.5,
    "latency_p95_ms": 12.25,
    "drifted_features": 1,
    "features": {"income": {"psi": 0.31, "drifted": True}, "age": {"psi": 0.02, "drifted": False}},
    "prediction_psi": None,
    "labelled_rows": 40,
    "live": {"roc_auc": 0.71},
    "rules_fired": ["drift"],
}
MODEL = {"model_name": "loan-default"}


def _values(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**MODEL, **labels})


def test_a_report_maps_to_one_value_per_gauge_and_name() -> None:
    samples = {
        (name, tuple(sorted(labels.items()))): v for name, labels, v in report_samples(LATEST)
    }
    model = tuple(MODEL.items())
    assert samples[("aiinfra_monitoring_window_rows", model)] == 120
    assert samples[("aiinfra_monitoring_error_rate", model)] == pytest.approx(4 / 130)
    assert samples[("aiinfra_monitoring_latency_p95_ms", model)] == 12.25
    assert samples[("aiinfra_monitoring_drifted_features", model)] == 1
    assert math.isnan(samples[("aiinfra_monitoring_prediction_psi", model)])  # null: NaN
    assert samples[("aiinfra_monitoring_window_end_seconds", model)] == WINDOW_END.timestamp()
    feature_psi = ("aiinfra_monitoring_feature_psi", (("feature", "income"), *model))
    assert samples[feature_psi] == 0.31
    assert samples[("aiinfra_monitoring_live_metric", (("metric", "roc_auc"), *model))] == 0.71
    assert len(samples) == len(GAUGES) - 2 + 2 + 1  # one per feature, one per live metric
    assert {name for name, _ in samples} == {spec.name for spec in GAUGES}


@pytest.mark.parametrize(
    "broken",
    [
        {k: v for k, v in LATEST.items() if k != "rows"},
        {**LATEST, "rows": "many"},
        {**LATEST, "features": {"income": 0.3}},
        {**LATEST, "window_end": "yesterday"},
        {**LATEST, "live": ["roc_auc"]},
        ["not", "a", "report"],
    ],
)
def test_a_malformed_report_changes_no_gauge(broken: Any) -> None:
    registry = CollectorRegistry()
    gauges = Gauges(registry)
    gauges.show(LATEST)
    with pytest.raises(ValueError):
        gauges.show(broken)
    assert _values(registry, "aiinfra_monitoring_window_rows") == 120


def test_a_feature_gone_from_the_report_reads_nan_not_its_old_value() -> None:
    registry = CollectorRegistry()
    gauges = Gauges(registry)
    gauges.show(LATEST)
    gauges.show({**LATEST, "features": {"age": {"psi": 0.05, "drifted": False}}, "rows": 80})
    assert _values(registry, "aiinfra_monitoring_window_rows") == 80
    assert _values(registry, "aiinfra_monitoring_feature_psi", feature="age") == 0.05
    gone = _values(registry, "aiinfra_monitoring_feature_psi", feature="income")
    assert gone is not None and math.isnan(gone)


def _write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_the_watcher_rereads_only_a_changed_file_and_keeps_values_past_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "latest.json"
    registry = CollectorRegistry()
    watcher = ReportWatcher(path, Gauges(registry), poll_seconds=60)
    assert not watcher.poll()  # no report yet: nothing shown, nothing raised
    _write(path, json.dumps(LATEST), 1_000_000_000)
    assert watcher.poll()
    assert not watcher.poll()  # unchanged: not read again
    caplog.set_level(logging.WARNING, logger="aiinfra.runtime.monitoring_gauges")
    _write(path, json.dumps(LATEST)[:40], 2_000_000_000)  # a torn write
    assert not watcher.poll() and not watcher.poll()
    _write(path, json.dumps(LATEST)[:40], 3_000_000_000)  # the same trouble again
    assert not watcher.poll()
    assert len([r for r in caplog.records if "not shown" in r.message]) == 1  # logged once
    assert _values(registry, "aiinfra_monitoring_window_rows") == 120  # the last values stay
    _write(path, json.dumps({**LATEST, "rows": 7}), 4_000_000_000)
    assert watcher.poll()
    assert _values(registry, "aiinfra_monitoring_window_rows") == 7


class _Gateway(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def gateway() -> Iterator[str]:
    """A stand-in Pushgateway that keeps what it was sent."""
    _Gateway.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_pushed_gauges_are_the_ones_the_service_shows(gateway: str) -> None:
    push_gauges(LATEST, gateway, job="aiinfra-monitor")
    ((method, path, body),) = _Gateway.received
    assert method == "PUT" and path == "/metrics/job/aiinfra-monitor"  # replaces the job's
    text = body.decode()
    assert 'aiinfra_monitoring_window_rows{model_name="loan-default"} 120.0' in text
    assert 'aiinfra_monitoring_feature_psi{feature="income",model_name="loan-default"} 0.31' in text
    assert 'aiinfra_monitoring_live_metric{metric="roc_auc",model_name="loan-default"} 0.71' in text
    assert 'aiinfra_monitoring_prediction_psi{model_name="loan-default"} NaN' in text
    for spec in GAUGES:
        assert f"# TYPE {spec.name} gauge" in text
