"""A served model's figures per time window, from what the service logged and the labels that
arrived later: plain functions over frames (reading the registry is :mod:`.monitor`'s job).

A window is one model version's rows within one slice of time (``monitoring.window_minutes``),
so a swap of versions starts a new window even within a slice. Per window:

- volume: logged rows, and the requests answered (every request's outcome is logged, not a
  sample), with their error rate and latency (p50, p95);
- drift of the features the model was given, and of its answers, against the version's own
  reference profile (the one drift rule, :mod:`aiinfra.data.drift`);
- once labels arrive: the label's drift and live performance, in the gate's metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.data import drift
from aiinfra.data.drift import FeatureDrift
from aiinfra.project.config import DriftConfig, LiveLabelsConfig
from aiinfra.project.schema import Schema
from aiinfra.release import metrics

AT, VERSION, REQUEST_ID, ROW, LABEL = "at", "model_version", "request_id", "row", "_label"


@dataclass(frozen=True)
class VersionReference:
    """What a version's windows are compared with: its schema, reference profile and the
    metrics it scored at its gate."""

    version: str
    schema: Schema
    profile: dict[str, Any] | None
    gate_scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    version: str
    rows: int
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    label: FeatureDrift | None
    labelled_rows: int
    live: dict[str, float]
    gate_scores: dict[str, float]
    enough_rows: bool  # drift verdicts need monitoring.min_rows rows

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted] if self.enough_rows else []


def logged_rows(entries: Iterable[dict[str, Any]], answer_field: str) -> pd.DataFrame:
    """One row per logged request row: its time, version, request id, the features the model
    was given (or the row as sent, in logs older than stored features) and its answer's field."""
    records = []
    for e in entries:
        answer = e.get("answer") or {}
        records.append(
            {
                AT: e["at"],
                VERSION: str(e.get("model_version")),
                REQUEST_ID: e.get("request_id"),
                ROW: e.get("row", 0),
                # The row as sent (entity keys too: the label join may need them), then
                # what the model was given (stored features; older logs lack it).
                **(e.get("request") or {}),
                **(e.get("features") or {}),
                answer_field: answer.get(answer_field),
                "_probabilities": answer.get("probabilities"),
            }
        )
    frame = pd.DataFrame(records)
    if frame.empty:
        return pd.DataFrame(columns=[AT, VERSION, REQUEST_ID, ROW, answer_field])
    frame[AT] = pd.to_datetime(frame[AT], utc=True, format="ISO8601")
    return frame


def outcome_frame(outcomes: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(outcomes), columns=[AT, "status", "latency_ms", REQUEST_ID])
    frame[AT] = pd.to_datetime(frame[AT], utc=True, format="ISO8601")
    return frame


def join_labels(
    rows: pd.DataFrame, labels: pd.DataFrame, spec: LiveLabelsConfig, schema: Schema
) -> pd.Series:
    """Each logged row's label where one arrived (NaN where none did): by request id (and the
    row's position within its request when the table has a ``row`` column), or by the entity
    keys and the nearest event time within ``tolerance_seconds``."""
    label = spec.label or schema.label
    if spec.request_id is not None:
        keys = [spec.request_id, *([ROW] if ROW in labels else [])]
        table = labels[[*keys, label]].drop_duplicates(keys, keep="last")
        table = table.rename(columns={spec.request_id: REQUEST_ID, label: LABEL})
        joined = rows[[REQUEST_ID, ROW]].merge(table, on=[REQUEST_ID, *keys[1:]], how="left")
        return pd.Series(joined[LABEL].to_numpy(), index=rows.index, name=LABEL)
    entities = spec.entities or [e.name for e in schema.entities]
    timestamp = spec.timestamp or schema.timestamp
    table = labels[[*entities, timestamp, label]].rename(columns={label: LABEL})
    table[timestamp] = pd.to_datetime(table[timestamp], utc=True)
    left = rows[[*entities, AT]].reset_index().astype({e: table[e].dtype for e in entities})
    joined = pd.merge_asof(
        left.sort_values(AT),
        table.sort_values(timestamp),
        left_on=AT,
        right_on=timestamp,
        by=entities,
        direction="nearest",
        tolerance=pd.Timedelta(seconds=spec.tolerance_seconds),
    ).set_index("index")
    return pd.Series(joined[LABEL].reindex(rows.index).to_numpy(), index=rows.index, name=LABEL)


def windows(
    rows: pd.DataFrame,
    outcomes: pd.DataFrame,
    references: dict[str, VersionReference],
    width: timedelta,
    rule: DriftConfig,
    min_rows: int,
) -> list[Window]:
    """The windows of ``rows`` (with a ``_label`` column where labels are known), oldest first.
    Requests and their errors and latency are counted in the slice of time of the version's
    rows (outcome lines do not name the version answering)."""
    if rows.empty:
        return []
    slices = rows[AT].dt.floor(width)
    found = []
    for (start, version), part in rows.groupby([slices, VERSION], sort=True):
        reference = references.get(str(version))
        if reference is None:
            continue
        begin, stop = part[AT].min(), part[AT].max()
        mine = outcomes[(outcomes[AT] >= begin) & (outcomes[AT] <= stop + timedelta(seconds=1))]
        found.append(_window(start, width, str(version), part, mine, reference, rule, min_rows))
    return sorted(found, key=lambda w: (w.start, int(w.version) if w.version.isdigit() else 0))


def _window(
    start: pd.Timestamp,
    width: timedelta,
    version: str,
    part: pd.DataFrame,
    outcomes: pd.DataFrame,
    reference: VersionReference,
    rule: DriftConfig,
    min_rows: int,
) -> Window:
    schema, profile = reference.schema, reference.profile or {}
    enough = len(part) >= min_rows
    features = tuple(drift.compare(profile, part, rule, roles=("feature",)))
    predicted = drift.compare(profile, part, rule, roles=("prediction",))
    labelled = part[part[LABEL].notna()] if LABEL in part else part.iloc[:0].assign(**{LABEL: []})
    # Classes as the profile names them: a join with gaps makes 0/1 labels 0.0/1.0.
    labels = labelled[LABEL].map(_text) if schema.task != "regression" else labelled[LABEL]
    label_drift = drift.compare(profile, pd.DataFrame({schema.label: labels}), rule, ("label",))
    latency = outcomes["latency_ms"].astype("float64")
    return Window(
        start=start.to_pydatetime(),
        end=(start + width).to_pydatetime(),
        version=version,
        rows=len(part),
        requests=len(outcomes),
        errors=int((outcomes["status"].astype(int) >= 400).sum()),
        latency_p50_ms=float(latency.quantile(0.5)) if len(latency) else None,
        latency_p95_ms=float(latency.quantile(0.95)) if len(latency) else None,
        features=features,
        prediction=predicted[0] if predicted else None,
        label=label_drift[0] if label_drift and len(labelled) else None,
        labelled_rows=len(labelled),
        live=live_scores(labelled, schema) if len(labelled) >= min_rows else {},
        gate_scores=reference.gate_scores,
        enough_rows=enough,
    )


def live_scores(labelled: pd.DataFrame, schema: Schema) -> dict[str, float]:
    """The gate's metrics of the logged answers against the labels that arrived."""
    classes = list(schema.classes)
    field_name = metrics.ANSWER_FIELDS[schema.task]
    if schema.task == "multiclass":
        names = [str(c) for c in classes]
        predicted = np.asarray([[p[n] for n in names] for p in labelled["_probabilities"]])
    else:
        predicted = labelled[field_name].to_numpy(dtype="float64")
    labels = _as_classes(labelled[LABEL], classes) if classes else labelled[LABEL]
    scores: dict[str, float] = metrics.score_predictions(schema.task, labels, predicted, classes)
    return scores


def _as_classes(labels: pd.Series, classes: Sequence[Any]) -> pd.Series:
    """Labels as the schema's classes are typed (a CSV gives "1" where training saw 1)."""
    by_text = {_text(c): c for c in classes}
    return labels.map(lambda v: by_text.get(_text(v), v))


def _text(value: Any) -> str:
    """1, 1.0 (an int label after a join with gaps) and "1" name the same class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
