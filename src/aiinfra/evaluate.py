"""Scoring a model on the held-out set, and the gate that decides a promotion."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from aiinfra import schema
from aiinfra.config import GateConfig
from aiinfra.model import LoanModel


def score(model: LoanModel, frame: pd.DataFrame, threshold: float = 0.5) -> dict[str, float]:
    y = frame[schema.LABEL].to_numpy()
    p = model.predict_proba(frame)
    return score_probabilities(y, p, threshold)


def score_probabilities(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    predicted = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "neg_log_loss": -float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "positive_rate": float(np.mean(y)),
    }


def confusion(model: LoanModel, frame: pd.DataFrame, threshold: float = 0.5) -> list[list[int]]:
    y = frame[schema.LABEL].to_numpy()
    predicted = (model.predict_proba(frame) >= threshold).astype(int)
    return [[int(v) for v in row] for row in skm.confusion_matrix(y, predicted, labels=[0, 1])]


def frame_hash(frame: pd.DataFrame) -> str:
    """Content hash of a frame (values and column names), stable across runs and machines."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    challenger: float
    champion: float | None
    reason: str


GATED_METRICS = ("roc_auc", "accuracy", "f1", "neg_log_loss")  # all: higher is better


def decide(
    gate: GateConfig, challenger: dict[str, float], champion: dict[str, float] | None
) -> GateDecision:
    """Pass when the challenger clears every floor, regresses on no metric by more than
    ``max_regression``, and beats the champion (if any) on ``metric`` by ``margin``."""
    value = challenger[gate.metric]
    incumbent = None if champion is None else champion[gate.metric]
    failures = []
    floors = {gate.metric: gate.min_value, **gate.min_values}
    for name, floor in floors.items():
        got = challenger[name]
        if not np.isfinite(got) or got < floor:
            failures.append(f"{name}={got:.4f} is below the floor {floor}")
    if champion is not None and incumbent is not None:
        if not value >= incumbent + gate.margin:
            failures.append(
                f"{gate.metric} {value:.4f} does not beat the champion's {incumbent:.4f} "
                f"by {gate.margin}"
            )
        for name in (m for m in GATED_METRICS if m in champion and m in challenger):
            drop = champion[name] - challenger[name]
            if drop > gate.max_regression:
                failures.append(f"{name} regresses by {drop:.4f} (> {gate.max_regression} allowed)")
    if failures:
        return GateDecision(False, gate.metric, value, incumbent, "; ".join(failures))
    if champion is None:
        return GateDecision(
            True, gate.metric, value, None, "no champion yet; the floors are cleared"
        )
    reason = f"{gate.metric} {value:.4f} beats the champion's {incumbent:.4f} by >= {gate.margin}"
    return GateDecision(True, gate.metric, value, incumbent, reason)


def roc_points(
    model: LoanModel, frame: pd.DataFrame, max_points: int = 101
) -> dict[str, list[float]]:
    """The ROC curve, thinned to at most ``max_points`` (for UIs and artifacts)."""
    fpr, tpr, thresholds = skm.roc_curve(frame[schema.LABEL].to_numpy(), model.predict_proba(frame))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    finite = np.clip(thresholds[keep], 0.0, 1.0)  # the first threshold is +inf by convention
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "thresholds": finite.tolist(),
    }


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
        lines.append(f"| {name} | {value:.4f} | {other} |")
    return "\n".join(lines) + "\n"
