"""``aiinfra monitor``: read what the service logged and the labels that arrived, cut it into
windows, compare each with its version's reference, write the report (HTML, Markdown,
``latest.json``), record it in MLflow on the serving version, push its gauges when a
Pushgateway is configured, and say whether a rule calls for retraining.

Starting the run is the caller's: the CLI (locally, or submitted to a cluster as ``retrain``
does) or the ``monitoring`` pipeline, whose training branch runs when ``trigger`` is set.
Only the registry's versions and artifacts are read: no Feast, no label table of the project,
so it runs wherever the prediction log is mounted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from aiinfra.monitoring import live, rules
from aiinfra.monitoring.live import VersionReference, Window
from aiinfra.monitoring.report import MonitoringReport
from aiinfra.project.config import PlatformConfig
from aiinfra.project.definition import metric_for, read_label_table
from aiinfra.project.schema import Schema
from aiinfra.release import metrics, registry
from aiinfra.runtime import prediction_log, request_outcomes

log = logging.getLogger(__name__)
REPORT_HTML, REPORT_MD, LATEST = "report.html", "report.md", "latest.json"
ARTIFACT_DIR = "monitoring"
LOGGED_MARK = "monitor_rows"  # the metric whose steps say which windows MLflow has already


@dataclass(frozen=True)
class MonitorOutcome:
    report: MonitoringReport
    trigger: str  # why to retrain (the rules that fired); "" for no run
    directory: Path  # where report.html, report.md and latest.json were written

    @property
    def html_path(self) -> Path:
        return self.directory / REPORT_HTML


def run(
    config: PlatformConfig, now: datetime | None = None, retrain: bool = True
) -> MonitorOutcome:
    """Monitor ``config``'s served model up to ``now``. ``retrain`` False: report the rules
    that fire, start nothing (``trigger`` stays empty)."""
    now = now or datetime.now(UTC)
    settings = config.monitoring
    since = now - timedelta(hours=settings.lookback_hours)
    uri, name = config.mlflow.tracking_uri, config.model_name
    champion = registry.alias_version(uri, name, registry.CHAMPION)
    answer_field = metrics.ANSWER_FIELDS[config.project.task]
    rows = live.logged_rows(
        prediction_log.read_entries(config.prediction_log_dir, since), answer_field
    )
    references = {v: _reference(uri, name, v) for v in sorted(set(rows[live.VERSION]))}
    known = {v: r for v, r in references.items() if r is not None}
    if known:
        schema = (known.get(champion or "") or next(iter(known.values()))).schema
        _join_late_labels(rows, config, schema)
    outcomes = live.outcome_frame(request_outcomes.read_outcomes(config.prediction_log_dir, since))
    width = timedelta(minutes=settings.window_minutes)
    found = live.windows(rows, outcomes, known, width, config.drift, settings.min_rows)
    gate_metric = metric_for(config)
    latest = _latest_of(found, champion)
    fired = [] if latest is None else rules.fired(latest, settings.rules, gate_metric)
    held_back = _why_not_retrain(config, now, retrain) if fired else None
    trigger = "; ".join(fired) if fired and held_back is None else ""
    action = "" if not fired else f"No run is started: {held_back}." if held_back else _STARTS
    report = MonitoringReport(name, now, gate_metric, found, champion, fired, action)
    directory = _write(config.monitoring_dir, report)
    _record_in_mlflow(registry.client(uri), name, found, report, directory)
    if settings.pushgateway and report.latest is not None:
        _push(report, settings.pushgateway, name)
    return MonitorOutcome(report, trigger, directory)


_STARTS = "A retraining run starts, recording these reasons."


def _join_late_labels(rows: pd.DataFrame, config: PlatformConfig, schema: Schema) -> None:
    """Add the labels that arrived (``monitoring.labels``) to ``rows``, where there are any."""
    spec = config.monitoring.labels
    path = config.monitoring.labels_path(config.project, config.home)
    if spec is None or path is None or not path.exists():
        return
    labels = read_label_table(path, spec.timestamp or schema.timestamp)
    rows[live.LABEL] = live.join_labels(rows, labels, spec, schema)


def _reference(uri: str, name: str, version: str) -> VersionReference | None:
    """A version's schema, profile and gate-time scores (None for an unknown version)."""
    schema_text = registry.version_artifact(uri, name, version, registry.REFERENCE_SCHEMA)
    if schema_text is None:
        log.warning("version %s of %s has no recorded schema: its rows are skipped", version, name)
        return None
    profile_text = registry.version_artifact(uri, name, version, registry.REFERENCE_PROFILE)
    return VersionReference(
        version,
        Schema.from_dict(json.loads(schema_text)),
        None if profile_text is None else json.loads(profile_text),
        registry.gate_time_scores(uri, name, version),
    )


def _why_not_retrain(config: PlatformConfig, now: datetime, retrain: bool) -> str | None:
    """Why a rule that fired starts no run (None: it does): turned off, or a run it started
    registered a version less than ``rules.cooldown_hours`` ago (that version's own windows,
    not a second run on the same evidence, say whether it helped)."""
    rules_config = config.monitoring.rules
    if not retrain:
        return "--no-retrain"
    if not rules_config.retrain:
        return "monitoring.rules.retrain is off"
    latest = registry.latest_version(config.mlflow.tracking_uri, config.model_name)
    if latest is None or latest.tags.get("trigger") != "monitoring":
        return None
    age = now - datetime.fromtimestamp(latest.creation_timestamp / 1000, UTC)
    if age < timedelta(hours=rules_config.cooldown_hours):
        hours = age.total_seconds() / 3600
        return (
            f"v{latest.version}, registered {hours:.1f} h ago, was started by monitoring "
            f"(monitoring.rules.cooldown_hours: {rules_config.cooldown_hours:g})"
        )
    return None


def _latest_of(found: list[Window], champion: str | None) -> Window | None:
    """The champion's latest window: the rules judge the model serving now, never one it
    replaced (a version just promoted has no window until its first requests)."""
    mine = [w for w in found if w.version == champion]
    return mine[-1] if mine else None


def _write(directory: Path, report: MonitoringReport) -> Path:
    """The report's files, written whole (a reader never sees half a file): the latest in
    ``directory``, and a copy per run under ``directory/<time>/``."""
    stamp = report.generated.strftime("%Y%m%dT%H%M%SZ")
    texts = {REPORT_HTML: report.html(), REPORT_MD: report.markdown()}
    if report.latest is not None:  # a quiet lookback keeps the last window's figures
        texts[LATEST] = json.dumps(report.latest_json(), indent=2, default=str)
    for folder in (directory / stamp, directory):
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in texts.items():
            partial = folder / f".{file}.partial"
            partial.write_text(text)
            partial.replace(folder / file)
    return directory


def _record_in_mlflow(
    c: MlflowClient, name: str, found: list[Window], report: MonitoringReport, directory: Path
) -> None:
    """Each window's figures as metrics of its version's run (step: the window's start in
    minutes; windows already recorded are skipped), and the report on the champion's run."""
    runs: dict[str, str] = {}
    for w in found:
        run_id = runs.setdefault(w.version, str(c.get_model_version(name, w.version).run_id))
        step = int(w.start.timestamp() // 60)
        if step in {m.step for m in c.get_metric_history(run_id, LOGGED_MARK)}:
            continue
        stamp = int(w.end.timestamp() * 1000)
        for key, value in _window_metrics(w).items():
            c.log_metric(run_id, key, value, timestamp=stamp, step=step)
    if report.champion is not None:
        run_id = runs.get(report.champion) or str(c.get_model_version(name, report.champion).run_id)
        for file in (REPORT_HTML, REPORT_MD, LATEST):
            if (directory / file).exists():
                c.log_artifact(run_id, str(directory / file), ARTIFACT_DIR)


def _window_metrics(w: Window) -> dict[str, float]:
    found = {
        LOGGED_MARK: float(w.rows),
        "monitor_requests": float(w.requests),
        "monitor_error_rate": w.error_rate,
        "monitor_drifted_features": float(len(w.drifted)),
        "monitor_labelled_rows": float(w.labelled_rows),
    }
    if w.latency_p95_ms is not None:
        found["monitor_latency_p95_ms"] = w.latency_p95_ms
    if w.prediction is not None and pd.notna(w.prediction.psi):
        found["monitor_prediction_psi"] = w.prediction.psi
    found.update({f"live_{k}": v for k, v in w.live.items() if pd.notna(v)})
    return found


def _push(report: MonitoringReport, url: str, name: str) -> None:
    from aiinfra.runtime.monitoring_gauges import push_gauges

    try:
        push_gauges(report.latest_json(), url, job=f"aiinfra-monitor-{name}")
    except OSError as exc:  # the report stands without the gauges
        log.error("could not push the monitoring gauges to %s: %s", url, exc)
