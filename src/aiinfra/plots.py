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


def confusion_figure(
    matrix: list[list[int]], labels: tuple[str, str] = ("repaid", "defaulted")
) -> Figure:
    fig = Figure(figsize=(4, 3.5))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center")
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Challenger, held-out set")
    fig.tight_layout()
    return fig
