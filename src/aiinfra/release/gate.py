"""The gate that decides a promotion, and its report.

A challenger passes when it reaches every configured limit, gets worse than the champion on no
metric by more than ``max_regression``, and beats the champion (if any) on the gate's metric by
``margin``. "Reach", "worse" and "beat" follow each metric's direction: an rmse limit is a
ceiling, a roc_auc limit a floor.

Apart from comparing the two models, the gate notices when the data changed under them: when
the champion scores on the new evaluation rows far below the figure it had at its own gate
(``gate.max_champion_drop``), a better challenger is not evidence enough. The run then holds
for a person (the version is registered, @champion does not move), unless the run was started
because of that change (a monitoring rule said so, and that reason is recorded on the run).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    held: bool = False  # stopped for a person: the champion degraded on the new data


@dataclass(frozen=True)
class Degradation:
    """The champion's gate metric now (on the new evaluation rows) and at its own gate."""

    metric: str
    now: float
    then: float

    @property
    def drop(self) -> float:
        return float(-better(self.metric, self.now, self.then))

    def describe(self, version: str | None = None) -> str:
        who = f"@champion v{version}" if version else "@champion"
        return (
            f"{who} scores {self.metric} {self.now:.4f} on the new evaluation rows, "
            f"{self.drop:.4f} worse than its {self.then:.4f} at its own gate"
        )


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


def champion_degradation(
    gate: GateConfig, metric: str, now: float, then: float | None
) -> Degradation | None:
    """The champion's drop on ``metric`` since its gate, when larger than allowed."""
    if gate.max_champion_drop is None or then is None or not np.isfinite(then):
        return None
    found = Degradation(metric, now, then)
    return found if found.drop > gate.max_champion_drop else None


def hold_for_degradation(
    decision: GateDecision, degraded: Degradation, expected_change: str
) -> GateDecision:
    """The decision once the champion is known to have degraded: held for a person, unless
    the run was started because of the change (``expected_change``: the recorded reason)."""
    if expected_change or not decision.passed:
        return decision
    reason = (
        f"held for a person: {degraded.describe()}: the data changed, not only the model "
        f"(a challenger that passed: {decision.reason}; promote it with `aiinfra promote`)"
    )
    return replace(decision, passed=False, held=True, reason=reason)


def degradation_note(degraded: Degradation, expected_change: str) -> str:
    """The gate report's paragraph on the champion's drop."""
    if expected_change:
        return (
            f"**The data changed:** {degraded.describe()}. Expected: this run was started "
            f"because of it ({expected_change})."
        )
    return (
        f"**The data changed:** {degraded.describe()}. The run holds for a person instead of "
        "promoting: look at the new data, then promote the version or fix the data."
    )


def gate_report(
    decision: GateDecision,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
    eval_hash: str,
    n_rows: int,
) -> str:
    """Markdown for the Kubeflow UI and MLflow: both models side by side and the decision."""
    verdict = (
        "PASSED: promote"
        if decision.passed
        else "HELD for a person: the data changed"
        if decision.held
        else "NOT PASSED: keep the champion"
    )
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
