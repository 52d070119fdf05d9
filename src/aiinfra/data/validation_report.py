"""A validation report: what every check and drift test found, rendered as Markdown (Kubeflow
UI, MLflow) and as a self-contained HTML page (inline style, no scripts, no external assets:
it renders offline)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from aiinfra.data.drift import FeatureDrift
from aiinfra.data.drift_report import DRIFT_STYLE, drift_section_html, drift_table_markdown


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    column: str | None
    success: bool
    detail: str
    samples: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass(frozen=True)
class ValidationReport:
    checks: list[CheckResult]
    n_rows: int
    drift: list[FeatureDrift] = field(default_factory=list)
    drift_mode: str = "off"
    reference_rows: int | None = None  # None: no reference (no champion yet)
    ignored_columns: tuple[str, ...] = ()  # label-table columns the project does not declare
    expected_change: str = ""  # why the run started, when the data was known to have moved

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [d for d in self.drift if d.drifted]

    @property
    def failed(self) -> list[CheckResult]:
        failed = [c for c in self.checks if not c.success]
        if self.drift_mode == "fail":
            failed += [_drift_check(d) for d in self.drifted]
        return failed

    @property
    def success(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line for the log: the verdict, the counts, and every failure named."""
        total = len(self.checks) + (len(self.drift) if self.drift_mode == "fail" else 0)
        verdict = "passed" if self.success else "FAILED"
        head = (
            f"validation {verdict}: {total - len(self.failed)}/{total} checks on {self.n_rows} rows"
        )
        if self.drift_mode == "warn" and self.drifted:
            head += "; drift (warning only): " + ", ".join(d.feature for d in self.drifted)
        if self.success:
            return head
        return head + "; failed: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def markdown(self) -> str:
        return render_markdown(self)

    def html(self) -> str:
        return render_html(self)


def _drift_check(d: FeatureDrift) -> CheckResult:
    name = "label_drift" if d.role == "label" else "distribution_drift"
    return CheckResult(name, d.feature, False, d.describe())


def _verdict(report: ValidationReport) -> str:
    return "passed" if report.success else "FAILED"


def _drift_caption(report: ValidationReport) -> str:
    if report.reference_rows is None:
        return "No reference data yet (no champion): drift not measured."
    caption = (
        f"Against the champion's training data ({report.reference_rows} rows); "
        f"drift mode: {report.drift_mode}."
    )
    if report.expected_change:
        caption += f" Drift is expected, and only reported: {report.expected_change}."
    return caption


def _ignored_caption(report: ValidationReport) -> str:
    if not report.ignored_columns:
        return ""
    return "Ignored (in the label table, not declared by the project): " + ", ".join(
        report.ignored_columns
    )


def render_markdown(report: ValidationReport) -> str:
    lines = [f"# Data validation: {_verdict(report)}", "", report.summary(), ""]
    if report.ignored_columns:
        lines += [_ignored_caption(report), ""]
    lines += ["## Checks", ""]
    lines += ["| check | result | detail | sample values |", "|---|---|---|---|"]
    for c in sorted(report.checks, key=lambda c: c.success):
        samples = ", ".join(map(str, c.samples[:5]))
        result = "pass" if c.success else "**FAIL**"
        lines.append(f"| `{c.name}` | {result} | {c.detail} | {samples} |")
    lines += ["", "## Drift", "", _drift_caption(report), ""]
    lines += drift_table_markdown(report.drift)
    return "\n".join(lines) + "\n"


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin-bottom:2em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f4f4f4}"
    ".bad{background:#fdd}.ok{background:#efe}"
) + DRIFT_STYLE


def render_html(report: ValidationReport) -> str:
    esc = html.escape
    checks = "".join(
        f"<tr class={'ok' if c.success else 'bad'}><td><code>{esc(c.name)}</code></td>"
        f"<td>{'pass' if c.success else 'FAIL'}</td><td>{esc(c.detail)}</td>"
        f"<td>{esc(', '.join(map(str, c.samples[:5])))}</td></tr>"
        for c in sorted(report.checks, key=lambda c: c.success)
    )
    drift = drift_section_html(
        report.drift, _drift_caption(report), failing=report.drift_mode == "fail"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Data validation</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Data validation: {_verdict(report)}</h1><p>{esc(report.summary())}</p>"
        f"<p>{esc(_ignored_caption(report))}</p>"
        "<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>detail</th>"
        f"<th>sample values</th></tr>{checks}</table>"
        f"<h2>Drift</h2>{drift}</body></html>"
    )
