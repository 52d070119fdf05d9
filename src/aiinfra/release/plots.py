"""Evaluation plots as matplotlib figures (logged to MLflow beside the gate report)."""

from __future__ import annotations

# The object-oriented API, not pyplot: no global state, no display backend to pick.
from matplotlib.figure import Figure


def roc_figure(
    challenger: dict[str, list[float]], champion: dict[str, list[float]] | None
) -> Figure:
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.plot(challenger["fpr"], challenger["tpr"], label="challenger")
    if champion is not None:
        ax.plot(champion["fpr"], champion["tpr"], label="champion", linestyle="--")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, held-out set")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(matrix: list[list[int]], labels: list[str]) -> Figure:
    size = max(3.5, 0.6 * len(labels) + 2)
    fig = Figure(figsize=(size + 0.5, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center")
    ticks = list(range(len(labels)))
    ax.set_xticks(ticks, labels, rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Challenger, held-out set")
    fig.tight_layout()
    return fig


def residuals_figure(points: dict[str, list[float]]) -> Figure:
    """Predicted against actual, and the residuals against the prediction (regression)."""
    fig = Figure(figsize=(8, 3.8))
    left, right = fig.subplots(1, 2)
    actual, predicted = points["actual"], points["predicted"]
    left.scatter(actual, predicted, s=6, alpha=0.6)
    low, high = min(actual + predicted), max(actual + predicted)
    left.plot([low, high], [low, high], color="grey", linewidth=0.5)
    left.set(xlabel="actual", ylabel="predicted", title="Challenger, held-out set")
    right.scatter(
        predicted, [a - p for a, p in zip(actual, predicted, strict=True)], s=6, alpha=0.6
    )
    right.axhline(0, color="grey", linewidth=0.5)
    right.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
    fig.tight_layout()
    return fig
