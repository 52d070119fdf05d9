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


def decide(
    gate: GateConfig, challenger: dict[str, float], champion: dict[str, float] | None
) -> GateDecision:
    """The challenger must clear the floor, and beat the champion (if any) by the margin."""
    value = challenger[gate.metric]
    if not np.isfinite(value) or value < gate.min_value:
        return GateDecision(
            False,
            gate.metric,
            value,
            None if champion is None else champion[gate.metric],
            f"{gate.metric}={value:.4f} is below the floor {gate.min_value}",
        )
    if champion is None:
        return GateDecision(True, gate.metric, value, None, "no champion yet; the floor is cleared")
    incumbent = champion[gate.metric]
    if value >= incumbent + gate.margin:
        return GateDecision(
            True,
            gate.metric,
            value,
            incumbent,
            f"{gate.metric} {value:.4f} beats the champion's {incumbent:.4f} by >= {gate.margin}",
        )
    return GateDecision(
        False,
        gate.metric,
        value,
        incumbent,
        f"{gate.metric} {value:.4f} does not beat the champion's {incumbent:.4f} by {gate.margin}",
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
