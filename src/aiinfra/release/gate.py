"""The gate that decides a promotion, and its report.

A challenger passes when it reaches every configured limit, gets worse than the champion on no
metric by more than ``max_regression``, and beats the champion (if any) on the gate's metric by
``margin``. "Reach", "worse" and "beat" follow each metric's direction: an rmse limit is a
ceiling, a roc_auc limit a floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiinfra.project.config import GateConfig
from aiinfra.release.metrics import INFORMATIONAL, LOWER_IS_BETTER, better


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    challenger: float
    champion: float | None
    reason: str


def decide(
    gate: GateConfig,
    metric: str,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
) -> GateDecision:
    """Apply the gate on ``metric`` (the configured one or the task's default)."""
    value = challenger[metric]
    incumbent = None if champion is None else champion.get(metric)
    failures = []
    limits = {**({metric: gate.min_value} if gate.min_value is not None else {}), **gate.min_values}
    for name, limit in limits.items():
        got = challenger.get(name, float("nan"))
        if not np.isfinite(got) or better(name, got, limit) < 0:
            side = "above the ceiling" if name in LOWER_IS_BETTER else "below the floor"
            failures.append(f"{name}={got:.4f} is {side} {limit}")
    if not np.isfinite(value) and metric not in limits:
        failures.append(f"{metric} is not a number ({value})")
    if champion is not None and incumbent is not None:
        if not better(metric, value, incumbent) >= gate.margin:
            failures.append(
                f"{metric} {value:.4f} does not beat the champion's {incumbent:.4f} "
                f"by {gate.margin}"
            )
        compared = [m for m in challenger if m in champion and m not in INFORMATIONAL]
        for name in compared:
            drop = -better(name, challenger[name], champion[name])
            if drop > gate.max_regression:
                failures.append(f"{name} regresses by {drop:.4f} (> {gate.max_regression} allowed)")
    if failures:
        return GateDecision(False, metric, value, incumbent, "; ".join(failures))
    if champion is None:
        return GateDecision(True, metric, value, None, "no champion yet; the limits are met")
    reason = f"{metric} {value:.4f} beats the champion's {incumbent:.4f} by >= {gate.margin}"
    return GateDecision(True, metric, value, incumbent, reason)


def gate_report(
    decision: GateDecision,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
    eval_hash: str,
    n_rows: int,
) -> str:
    """Markdown for the Kubeflow UI and MLflow: both models side by side and the decision."""
    verdict = "PASSED: promote" if decision.passed else "NOT PASSED: keep the champion"
    lines = [
        f"# Evaluation gate: {verdict}",
        "",
        f"{decision.reason}.",
        "",
        f"Evaluation set: {n_rows} rows, hash `{eval_hash}`.",
        "",
        f"| metric | challenger | champion{f' (v{champion_version})' if champion_version else ''} |",  # noqa: E501
        "|---|---|---|",
    ]
    for name, value in challenger.items():
        other = "-" if champion is None else f"{champion.get(name, float('nan')):.4f}"
        arrow = " (lower is better)" if name in LOWER_IS_BETTER else ""
        lines.append(f"| {name}{arrow} | {value:.4f} | {other} |")
    return "\n".join(lines) + "\n"
