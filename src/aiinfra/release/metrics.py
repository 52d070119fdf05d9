"""Scoring a model on held-out rows, in the metrics of its task.

- binary: roc_auc, accuracy, f1, log_loss (and neg_log_loss), the positive rate;
- multiclass: accuracy, macro f1, log_loss (and neg_log_loss);
- regression: rmse, mae, r2.

Which direction is better is a property of the metric (:data:`LOWER_IS_BETTER`); the gate
(:mod:`aiinfra.release.gate`) reads it from here.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aiinfra.project.schema import Schema, Task

# scikit-learn and torch (through the model) are imported where a score is computed: the gate
# and the data hash, used by tasks that score nothing, stay light.
if TYPE_CHECKING:
    from aiinfra.training.model import TabularModel

LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
# Figures reported beside the metrics, never compared by the gate.
INFORMATIONAL = frozenset({"positive_rate", "label_mean"})
_EPS = 1e-7


def better(metric: str, a: float, b: float) -> float:
    """How much better ``a`` is than ``b`` on ``metric`` (negative: worse)."""
    return b - a if metric in LOWER_IS_BETTER else a - b


def score(model: TabularModel, frame: pd.DataFrame, schema: Schema) -> dict[str, float]:
    return score_predictions(schema.task, frame[schema.label], model.predict(frame), model.classes)


def score_predictions(
    task: Task, labels: pd.Series | np.ndarray, predicted: np.ndarray, classes: list[Any]
) -> dict[str, float]:
    """The task's metrics for ``predicted`` (what :meth:`TabularModel.predict` returns)."""
    from sklearn import metrics as skm

    y = np.asarray(labels)
    if task == "regression":
        error = predicted - y.astype("float64")
        return {
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mae": float(np.mean(np.abs(error))),
            "r2": float(skm.r2_score(y, predicted)) if len(y) > 1 else float("nan"),
            "label_mean": float(np.mean(y)),
        }
    if task == "binary":
        return score_probabilities((y == classes[1]).astype(int), predicted)
    index = {c: i for i, c in enumerate(classes)}
    codes = np.asarray([index[v] for v in y.tolist()])
    chosen = predicted.argmax(axis=1)
    # Rows sum to 1 only up to float32 rounding (and clipping): sklearn warns on that since 1.5
    # and no longer renormalizes, so do it here.
    clipped = np.clip(predicted.astype("float64"), _EPS, 1)
    probabilities = clipped / clipped.sum(axis=1, keepdims=True)
    loss = float(skm.log_loss(codes, probabilities, labels=list(range(len(classes)))))
    return {
        "accuracy": float(skm.accuracy_score(codes, chosen)),
        "f1": float(skm.f1_score(codes, chosen, average="macro", zero_division=0)),
        "log_loss": loss,
        "neg_log_loss": -loss,
    }


def score_probabilities(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Binary metrics of P(positive) ``p`` against 0/1 labels ``y``."""
    from sklearn import metrics as skm

    predicted = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    loss = float(skm.log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1]))
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "log_loss": loss,
        "neg_log_loss": -loss,
        "positive_rate": float(np.mean(y)),
    }


def predicted_classes(model: TabularModel, predicted: np.ndarray) -> list[Any]:
    """The class each row is predicted to be (classification only)."""
    if model.task == "binary":
        return [model.classes[int(p >= 0.5)] for p in predicted]
    return [model.classes[int(i)] for i in predicted.argmax(axis=1)]


# The field of a served answer that stands for the model's output in drift figures (see
# aiinfra.runtime.api.answers): the score for binary, the class for multiclass, the value.
ANSWER_FIELDS: dict[Task, str] = {
    "binary": "probability",
    "multiclass": "predicted_class",
    "regression": "value",
}


def prediction_series(model: TabularModel, predicted: np.ndarray) -> pd.Series:
    """The model's output per row as its answer's field holds it (``ANSWER_FIELDS``)."""
    name = ANSWER_FIELDS[model.task]
    if model.task == "multiclass":
        return pd.Series([str(c) for c in predicted_classes(model, predicted)], name=name)
    return pd.Series(np.asarray(predicted, dtype="float64"), name=name)


def confusion(model: TabularModel, frame: pd.DataFrame, schema: Schema) -> list[list[int]]:
    """Rows: actual class, columns: predicted class, in the model's class order."""
    from sklearn import metrics as skm

    chosen = predicted_classes(model, model.predict(frame))
    matrix = skm.confusion_matrix(frame[schema.label].tolist(), chosen, labels=model.classes)
    return [[int(v) for v in row] for row in matrix]


def roc_points(
    model: TabularModel, frame: pd.DataFrame, schema: Schema, max_points: int = 101
) -> dict[str, list[float]]:
    """The ROC curve of a binary model, thinned to at most ``max_points``."""
    from sklearn import metrics as skm

    y = (frame[schema.label].to_numpy() == model.classes[1]).astype(int)
    fpr, tpr, thresholds = skm.roc_curve(y, model.predict(frame))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    finite = np.clip(thresholds[keep], 0.0, 1.0)  # the first threshold is +inf by convention
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "thresholds": finite.tolist()}


def residuals(
    model: TabularModel, frame: pd.DataFrame, schema: Schema, max_points: int = 2000
) -> dict[str, list[float]]:
    """Actual and predicted values of a regression model (an even sample, for plots)."""
    actual = frame[schema.label].to_numpy(dtype="float64")
    predicted = model.predict(frame)
    keep = np.unique(np.linspace(0, len(actual) - 1, min(max_points, len(actual))).astype(int))
    return {"actual": actual[keep].tolist(), "predicted": predicted[keep].tolist()}


def frame_hash(frame: pd.DataFrame) -> str:
    """Content hash of a frame (values and column names), stable across runs and machines."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
