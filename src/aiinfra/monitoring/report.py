"""The monitoring report: one self-contained HTML page (inline style and SVG: no scripts, no
CDN, it renders offline), its Markdown twin, and ``latest.json``, the latest window's figures
that the service turns into Prometheus gauges.

Sections, most urgent first: the rules that fired; the timeline (one row per window: volume,
errors, latency, drift, live performance against the gate-time figure, with a chart of the
gate metric that shows a drop and a recovery); then the drift of each version's latest window,
the same section the validation report shows.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from aiinfra.data.drift_report import DRIFT_STYLE, drift_section_html, drift_table_markdown
from aiinfra.monitoring.live import Window
from aiinfra.release.metrics import LOWER_IS_BETTER


@dataclass(frozen=True)
class MonitoringReport:
    model_name: str
    generated: datetime
    gate_metric: str
    windows: list[Window]
    champion: str | None
    fired: list[str]  # the rules that fired on the champion's latest window
    action: str  # what was done about them (a run started, or why not)

    @property
    def latest(self) -> Window | None:
        """The champion's latest window (else the latest of any version)."""
        mine = [w for w in self.windows if w.version == self.champion]
        return (mine or self.windows or [None])[-1]

    def latest_json(self) -> dict[str, Any]:
        """The figures of the latest window, for gauges and dashboards."""
        w = self.latest
        base: dict[str, Any] = {
            "model_name": self.model_name,
            "generated": self.generated.isoformat(),
            "rules_fired": self.fired,
        }
        if w is None:
            return base
        return {
            **base,
            "model_version": w.version,
            "window_start": w.start.isoformat(),
            "window_end": w.end.isoformat(),
            "rows": w.rows,
            "requests": w.requests,
            "errors": w.errors,
            "error_rate": w.error_rate,
            "latency_p50_ms": w.latency_p50_ms,
            "latency_p95_ms": w.latency_p95_ms,
            "drifted_features": len(w.drifted),
            "features": {
                f.feature: {"psi": _finite(f.psi), "drifted": f.drifted} for f in w.features
            },
            "prediction_psi": None if w.prediction is None else _finite(w.prediction.psi),
            "labelled_rows": w.labelled_rows,
            "live": {k: v for k, v in w.live.items() if np.isfinite(v)},
            "gate": {k: v for k, v in w.gate_scores.items() if np.isfinite(v)},
        }

    def metrics(self) -> dict[str, float]:
        """The latest window's figures as flat metrics (MLflow, the Kubeflow UI)."""
        found = self.latest_json()
        flat = {
            f"monitor_{k}": float(found[k])
            for k in ("rows", "requests", "error_rate", "drifted_features", "labelled_rows")
            if k in found
        }
        for key in ("latency_p95_ms", "prediction_psi"):
            if found.get(key) is not None:
                flat[f"monitor_{key}"] = float(found[key])
        flat.update({f"live_{k}": float(v) for k, v in found.get("live", {}).items()})
        return flat

    def summary(self) -> str:
        w = self.latest
        if w is None:
            return "no logged requests in the lookback: nothing to monitor"
        live = w.live.get(self.gate_metric)
        then = w.gate_scores.get(self.gate_metric)
        perf = (
            f"live {self.gate_metric} {live:.4f} (gate: {then:.4f})"
            if live is not None and then is not None
            else f"{w.labelled_rows} labelled rows"
        )
        rules = "; ".join(self.fired) if self.fired else "no rule fired"
        return (
            f"v{w.version}, {len(self.windows)} windows; latest: {w.rows} rows, "
            f"{len(w.drifted)} features drifted, {perf}, errors {w.error_rate:.1%}; {rules}"
        )

    def markdown(self) -> str:
        lines = [f"# Monitoring: {self.model_name}", "", self.summary(), ""]
        if self.fired:
            lines += ["## Rules that fired", "", *[f"- {r}" for r in self.fired], ""]
            lines += [self.action, ""]
        lines += ["## Windows", "", "| " + " | ".join(_COLUMNS) + " |"]
        lines.append("|" + "---|" * len(_COLUMNS))
        for w in self.windows:
            lines.append("| " + " | ".join(_cells(w, self.gate_metric)) + " |")
        for w in _latest_per_version(self.windows):
            lines += ["", f"## Drift of v{w.version} ({_when(w)})", ""]
            lines += drift_table_markdown(_drift_rows(w))
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        esc = html.escape
        fired = ""
        if self.fired:
            items = "".join(f"<li>{esc(r)}</li>" for r in self.fired)
            fired = (
                f"<section class=alert><h2>Rules that fired</h2><ul>{items}</ul>"
                f"<p>{esc(self.action)}</p></section>"
            )
        head = "".join(f"<th>{esc(c)}</th>" for c in _COLUMNS)
        body = "".join(_html_row(w, self.gate_metric) for w in self.windows)
        drift = "".join(
            f"<h2>Drift of v{esc(w.version)} ({esc(_when(w))})</h2>"
            + drift_section_html(_drift_rows(w), _drift_caption(w), failing=True)
            for w in _latest_per_version(self.windows)
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Monitoring: {esc(self.model_name)}</title>"
            f"<style>{_STYLE}{DRIFT_STYLE}</style></head><body>"
            f"<h1>Monitoring: {esc(self.model_name)}</h1>"
            f"<p>{esc(self.summary())}</p><p class=muted>Generated "
            f"{esc(self.generated.strftime('%Y-%m-%d %H:%M:%S UTC'))}</p>{fired}"
            f"<h2>{esc(self.gate_metric)} per window</h2>{_metric_chart(self)}"
            f"<h2>Windows</h2><table><tr>{head}</tr>{body}</table>{drift}</body></html>"
        )


_COLUMNS = (
    "window (UTC)", "version", "rows", "requests", "errors", "p50 ms", "p95 ms",
    "drifted features", "prediction PSI", "labelled", "live metric", "at its gate",
)  # fmt: skip
_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:2em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    ".alert{border:2px solid #c33;background:#fee;padding:0 1em;margin-bottom:1em}"
    ".drop{background:#fdd}.muted{color:#777;font-size:90%}"
)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _when(w: Window) -> str:
    return f"{w.start:%Y-%m-%d %H:%M}-{w.end:%H:%M}"


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _cells(w: Window, metric: str) -> list[str]:
    drifted = ", ".join(d.feature for d in w.drifted) or ("0" if w.enough_rows else "too few rows")
    prediction = None if w.prediction is None else w.prediction.psi
    return [
        _when(w), f"v{w.version}", str(w.rows), str(w.requests),
        f"{w.errors} ({w.error_rate:.1%})", _number(w.latency_p50_ms, 3),
        _number(w.latency_p95_ms, 3), drifted, _number(prediction, 3), str(w.labelled_rows),
        f"{metric} {_number(w.live.get(metric))}", _number(w.gate_scores.get(metric)),
    ]  # fmt: skip


def _dropped(w: Window, metric: str) -> bool:
    now, then = w.live.get(metric), w.gate_scores.get(metric)
    if now is None or then is None:
        return False
    worse = now > then if metric in LOWER_IS_BETTER else now < then
    return bool(worse and abs(now - then) > 0.02)


def _html_row(w: Window, metric: str) -> str:
    css = " class=drop" if w.drifted or _dropped(w, metric) else ""
    return f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(w, metric)) + "</tr>"


def _latest_per_version(windows: list[Window]) -> list[Window]:
    latest: dict[str, Window] = {}
    for w in windows:
        latest[w.version] = w
    return list(latest.values())


def _drift_rows(w: Window) -> list[Any]:
    return [*w.features, *([w.prediction] if w.prediction else []), *([w.label] if w.label else [])]


def _drift_caption(w: Window) -> str:
    verdict = "" if w.enough_rows else " Too few rows for a verdict: figures only."
    return (
        f"{w.rows} logged rows of v{w.version} against its reference profile (its training "
        f"data); {w.labelled_rows} with labels.{verdict}"
    )


def _metric_chart(report: MonitoringReport) -> str:
    """The live gate metric per window (a line per version's points) and each version's figure
    at its gate (dashed): a drop and a recovery at a glance. Inline SVG."""
    metric = report.gate_metric
    points = [(i, w.live[metric], w) for i, w in enumerate(report.windows) if metric in w.live]
    gates = [w.gate_scores[metric] for w in report.windows if metric in w.gate_scores]
    values = [v for _, v, _ in points if np.isfinite(v)] + gates
    if not points or not values:
        return "<p class=muted>No labelled windows yet: live performance appears here once "\
            "labels arrive.</p>"  # fmt: skip
    width, height, pad = 640, 180, 36
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    count = max(len(report.windows) - 1, 1)

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * i / count

    def y(v: float) -> float:
        return float(height - pad - (height - 2 * pad) * (v - low) / span)

    parts = [
        f"<svg width='{width}' height='{height}' role='img' aria-label='{metric} per window'>",
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
        "stroke='#999'/>",
        f"<text x='4' y='{y(high) + 4:.0f}' font-size='10'>{high:.3f}</text>",
        f"<text x='4' y='{y(low) + 4:.0f}' font-size='10'>{low:.3f}</text>",
    ]
    for i, w in enumerate(report.windows):
        if metric in w.gate_scores:
            g = y(w.gate_scores[metric])
            parts.append(
                f"<line x1='{x(i) - 8:.1f}' y1='{g:.1f}' x2='{x(i) + 8:.1f}' y2='{g:.1f}' "
                "stroke='#888' stroke-dasharray='3,2'><title>"
                f"v{w.version} at its gate: {w.gate_scores[metric]:.4f}</title></line>"
            )
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v, _ in points if np.isfinite(v))
    parts.append(f"<polyline points='{line}' fill='none' stroke='#1f6fb2' stroke-width='2'/>")
    for i, v, w in points:
        if not np.isfinite(v):
            continue
        colour = "#c33" if _dropped(w, metric) else "#1f6fb2"
        parts.append(
            f"<circle cx='{x(i):.1f}' cy='{y(v):.1f}' r='4' fill='{colour}'><title>"
            f"{html.escape(_when(w))} v{w.version}: {metric} {v:.4f}</title></circle>"
            f"<text x='{x(i):.1f}' y='{height - pad + 14}' font-size='10' "
            f"text-anchor='middle'>v{w.version}</text>"
        )
    parts.append("</svg>")
    legend = (
        "<p class=muted>Line: live value per window (red: below the version's gate-time "
        "figure); dashes: the figure each version had at its gate.</p>"
    )
    return "".join(parts) + legend
