"""The latest monitoring window as Prometheus gauges: on the service's ``/metrics``, or pushed
to a Pushgateway by the monitoring job (the cluster, where no service shares its disk).

``aiinfra monitor`` writes its latest window to ``<home>/monitoring/latest.json``
(:data:`REPORT_NAME` in ``config.monitoring_dir``)::

    {"model_name", "model_version", "window_start", "window_end", "rows", "requests",
     "errors", "error_rate", "latency_p50_ms", "latency_p95_ms", "drifted_features",
     "features": {name: {"psi", "drifted"}}, "prediction_psi", "labelled_rows",
     "live": {metric: value}, "rules_fired": [...]}

:data:`GAUGES` and :func:`report_samples` are the one mapping from that report to gauges,
which both the service (:func:`watch_report`) and :func:`push_gauges` use. Every gauge is
labelled with ``model_name``; a null figure (no requests in the window, no labels yet) is NaN,
and so is a feature or metric an older report had and the latest has not.
``aiinfra_monitoring_window_end_seconds`` lets an alert tell a stale report from a quiet model.

The service re-reads the file only when it changed. A missing or malformed file is logged
once and the gauges keep their last values: a monitoring job's bad write never takes
``/metrics`` or the service down.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)
REPORT_NAME = "latest.json"
MODEL_LABEL = "model_name"


@dataclass(frozen=True)
class GaugeSpec:
    name: str
    documentation: str
    label: str | None = None  # one more label beside model_name, for per-name figures


GAUGES = (
    GaugeSpec("aiinfra_monitoring_window_rows", "Prediction-log rows in the latest window"),
    GaugeSpec("aiinfra_monitoring_error_rate", "Share of requests that failed in the window"),
    GaugeSpec("aiinfra_monitoring_latency_p95_ms", "95th percentile request latency, ms"),
    GaugeSpec("aiinfra_monitoring_drifted_features", "Features drifted in the window"),
    GaugeSpec("aiinfra_monitoring_feature_psi", "PSI of a feature in the window", "feature"),
    GaugeSpec("aiinfra_monitoring_prediction_psi", "PSI of the predictions in the window"),
    GaugeSpec("aiinfra_monitoring_live_metric", "Metric on the window's late labels", "metric"),
    GaugeSpec("aiinfra_monitoring_window_end_seconds", "End of the window, unix seconds"),
)
# One value of one gauge: (gauge name, labels, value).
Sample = tuple[str, dict[str, str], float]


def report_samples(latest: Mapping[str, Any]) -> list[Sample]:
    """The gauge values of a monitoring report; ValueError when it is not one."""
    try:
        model = {MODEL_LABEL: _text(latest["model_name"])}
        samples: list[Sample] = [
            ("aiinfra_monitoring_window_rows", model, _number(latest["rows"])),
            ("aiinfra_monitoring_error_rate", model, _number(latest["error_rate"])),
            ("aiinfra_monitoring_latency_p95_ms", model, _number(latest["latency_p95_ms"])),
            ("aiinfra_monitoring_drifted_features", model, _number(latest["drifted_features"])),
            ("aiinfra_monitoring_prediction_psi", model, _number(latest["prediction_psi"])),
            ("aiinfra_monitoring_window_end_seconds", model, _unix(latest["window_end"])),
        ]
        samples += [
            ("aiinfra_monitoring_feature_psi", {**model, "feature": name}, _number(figures["psi"]))
            for name, figures in _mapping(latest["features"]).items()
        ]
        samples += [
            ("aiinfra_monitoring_live_metric", {**model, "metric": name}, _number(value))
            for name, value in _mapping(latest["live"]).items()
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a monitoring report: {type(exc).__name__} {exc}") from exc
    return samples


def _number(value: Any) -> float:
    """A figure; null (nothing to compute it from) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{value!r} is not an object")
    return value


def _unix(value: Any) -> float:
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:  # the monitoring job writes UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Gauges:
    """The monitoring gauges in one registry, showing the last report given to :meth:`show`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Imported here, not with the module: in a BentoML worker prometheus_client must load
        # after the worker set PROMETHEUS_MULTIPROC_DIR (see bentoml.metrics).
        from prometheus_client import Gauge

        self._gauges = {
            spec.name: Gauge(
                spec.name,
                spec.documentation,
                [MODEL_LABEL] if spec.label is None else [MODEL_LABEL, spec.label],
                registry=registry,
                # Across a server's worker processes: the last value set, without a pid label.
                multiprocess_mode="mostrecent",
            )
            for spec in GAUGES
        }
        self._shown: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def show(self, latest: Mapping[str, Any]) -> None:
        """Set every gauge from ``latest``; a malformed report (ValueError) changes none."""
        samples = report_samples(latest)
        shown = set()
        for name, labels, value in samples:
            self._gauges[name].labels(**labels).set(value)
            shown.add((name, tuple(sorted(labels.items()))))
        for name, gone in self._shown - shown:  # a feature, metric or model no longer reported
            self._gauges[name].labels(**dict(gone)).set(math.nan)
        self._shown = shown


@functools.cache
def service_gauges() -> Gauges:
    """The gauges on the default registry, which the service's ``/metrics`` exposes (what
    ``bentoml.metrics.Gauge`` registers on); made once per process."""
    from prometheus_client import REGISTRY

    return Gauges(REGISTRY)


def push_gauges(latest: Mapping[str, Any], url: str, job: str, timeout: float = 30) -> None:
    """Push ``latest``'s gauges to the Pushgateway at ``url``, replacing ``job``'s previous
    ones (so a feature gone from the report goes from the gateway too)."""
    from prometheus_client import CollectorRegistry, push_to_gateway

    registry = CollectorRegistry()
    Gauges(registry).show(latest)
    push_to_gateway(url, job=job, registry=registry, timeout=timeout)


class ReportWatcher:
    """Shows the report at ``path`` on ``gauges``, re-reading it whenever it changed."""

    def __init__(self, path: Path, gauges: Gauges, poll_seconds: float) -> None:
        self.path = path
        self.gauges = gauges
        self.poll_seconds = poll_seconds
        self._seen: tuple[int, int] | None = None  # mtime and size of the file last read
        self._said: str | None = None  # the problem last logged: each is logged once
        self._stop = threading.Event()

    def poll(self) -> bool:
        """Read the report if the file changed since the last poll; True if it was shown."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen = None
            self._problem(f"no monitoring report at {self.path} yet", logging.INFO)
            return False
        except OSError as exc:
            self._problem(f"monitoring report {self.path} unreadable: {exc}")
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            self.gauges.show(json.loads(self.path.read_text()))
        except (OSError, ValueError) as exc:  # a torn or foreign file: the last values stay
            self._problem(f"monitoring report {self.path} not shown: {exc}")
            return False
        self._said = None
        return True

    def _problem(self, message: str, level: int = logging.WARNING) -> None:
        if message != self._said:
            log.log(level, "%s (the gauges keep their last values)", message)
            self._said = message

    def watch(self) -> threading.Thread:
        """Poll now and every ``poll_seconds`` in a daemon thread, until :meth:`stop`."""

        def loop() -> None:
            self._safe_poll()
            while not self._stop.wait(self.poll_seconds):
                self._safe_poll()

        thread = threading.Thread(target=loop, name="monitoring-gauges", daemon=True)
        thread.start()
        return thread

    def _safe_poll(self) -> None:
        try:
            self.poll()
        except Exception:  # whatever broke, the next poll tries again; serving goes on
            log.exception("monitoring gauges not updated")

    def stop(self) -> None:
        self._stop.set()


def watch_report(path: Path, poll_seconds: float) -> ReportWatcher:
    """Show the report at ``path`` on the service's ``/metrics``, re-read in the background."""
    watcher = ReportWatcher(path, service_gauges(), poll_seconds)
    watcher.watch()
    return watcher
