"""A project, loaded and checked: its label table and Feast feature service become one schema.

What a user declares (the profile's ``project``, ``features`` and ``gate`` sections, the Feast
fields' dtypes, descriptions and tags) is read here; what they leave out is inferred (a request
feature's kind from its column, the classes from the label). Every problem is a
:class:`ProjectError` naming the setting, the file or column, and what is allowed, raised
before any pipeline task runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from aiinfra.project.config import PlatformConfig, RequestFeature
from aiinfra.project.schema import REQUEST, Feature, Key, Schema, Task

if TYPE_CHECKING:  # Feast is imported only where a repo is read
    from aiinfra.project.feature_repo import FeatureRepo

# Metrics the gate may use per task (their direction lives in aiinfra.release.metrics).
TASK_METRICS: dict[Task, tuple[str, ...]] = {
    "binary": ("roc_auc", "accuracy", "f1", "log_loss", "neg_log_loss"),
    "multiclass": ("accuracy", "f1", "log_loss", "neg_log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_METRIC: dict[Task, str] = {
    "binary": "roc_auc",
    "multiclass": "accuracy",
    "regression": "rmse",
}
MAX_CLASSES = 100
# Tags on a Feast Field that the platform reads (all optional; Feast tags are strings).
TAG_MIN, TAG_MAX, TAG_CATEGORIES = "min", "max", "categories"


_RESERVED_FIELD_NAMES = frozenset(dir(BaseModel))


class ProjectError(ValueError):
    """The project definition is wrong; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class Project:
    schema: Schema
    labels_path: Path
    label_rows: int
    ignored_columns: tuple[str, ...]  # label-table columns the project does not declare
    labels: pd.DataFrame = field(repr=False, compare=False)  # the table as read and checked
    repo: FeatureRepo | None = field(default=None, repr=False, compare=False)  # Feast objects


def read_label_table(path: Path, timestamp: str | None = None) -> pd.DataFrame:
    """A Parquet or CSV table; the timestamp column of a CSV is parsed (as UTC)."""
    if not path.exists():
        raise ProjectError(f"project.labels.path: {path} does not exist")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        # Numbers are not parsed as epochs (a silent 1970): the timestamp check names them.
        if timestamp and timestamp in frame and not pd.api.types.is_numeric_dtype(frame[timestamp]):
            try:
                frame[timestamp] = pd.to_datetime(frame[timestamp], utc=True)
            except (ValueError, TypeError) as exc:
                raise ProjectError(
                    f"project.labels.timestamp: column {timestamp!r} of {path} is not a "
                    f"timestamp ({exc})"
                ) from exc
        return frame
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ProjectError(f"project.labels.path: {path} is neither Parquet nor CSV")


def metric_for(config: PlatformConfig) -> str:
    """The gate's metric: configured, or the task's usual one."""
    return config.gate.metric or DEFAULT_METRIC[config.project.task]


def load_project(config: PlatformConfig, labels: pd.DataFrame | None = None) -> Project:
    """Read the label table and the Feast repo; build the schema; raise ProjectError on any
    problem. (Feast is imported here: callers that only need config stay light.)"""
    from aiinfra.project import feature_repo

    path = config.labels_path
    frame = (
        labels if labels is not None else read_label_table(path, config.project.labels.timestamp)
    )
    try:
        repo = feature_repo.load(config.repo_path, config.data_dir)
        views = repo.service_views(config.features.feature_service)
    except feature_repo.FeatureRepoError as exc:
        raise ProjectError(str(exc)) from exc
    schema = build_schema(config, frame, path, views, repo.entities)
    declared = set(schema.training_columns)
    ignored = tuple(c for c in frame.columns if c not in declared)
    return Project(schema, path, len(frame), ignored, frame, repo)


def build_schema(
    config: PlatformConfig,
    frame: pd.DataFrame,
    path: Path,
    views: list[Any],
    repo_entities: dict[str, Any] | None = None,
) -> Schema:
    """``repo_entities``: the Feast repo's entities by name, where the views' join keys are
    read from."""
    labels, task = config.project.labels, config.project.task
    _check_columns(frame, path, config)
    _check_timestamp(frame, labels.timestamp, path)
    keys = tuple(_key(frame, name, path) for name in labels.entities)
    stored = _stored_features(
        views, labels.entities, config.features.feature_service, repo_entities or {}
    )
    request = tuple(_request_feature(frame, spec, path) for spec in labels.request_feature_specs())
    features = (*stored, *request)
    _check_unique_names(features, labels.label, labels.timestamp, labels.entities, frame, path)
    _check_metric(config)
    return Schema(
        task=task,
        entities=keys,
        timestamp=labels.timestamp,
        label=labels.label,
        features=features,
        row_id=labels.row_id,
        feature_service=config.features.feature_service,
        classes=_classes(frame[labels.label], task, labels.label),
    )


def _check_columns(frame: pd.DataFrame, path: Path, config: PlatformConfig) -> None:
    labels = config.project.labels
    declared = {
        "entities": labels.entities,
        "timestamp": [labels.timestamp],
        "label": [labels.label],
        "row_id": [labels.row_id] if labels.row_id else [],
        "request_features": [f.name for f in labels.request_feature_specs()],
    }
    for setting, columns in declared.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ProjectError(
                f"project.labels.{setting}: column {', '.join(map(repr, missing))} is not in "
                f"{path} (its columns: {', '.join(map(str, frame.columns))})"
            )
    if frame.empty:
        raise ProjectError(f"project.labels.path: {path} has no rows")


def _check_timestamp(frame: pd.DataFrame, column: str, path: Path) -> None:
    if not pd.api.types.is_datetime64_any_dtype(frame[column]):
        raise ProjectError(
            f"project.labels.timestamp: column {column!r} of {path} holds {frame[column].dtype}, "
            "not timestamps"
        )
    if frame[column].isna().any():
        raise ProjectError(
            f"project.labels.timestamp: column {column!r} of {path} has "
            f"{int(frame[column].isna().sum())} empty values"
        )


def _key(frame: pd.DataFrame, name: str, path: Path) -> Key:
    values = frame[name]
    nulls = int(values.isna().sum())
    if nulls:
        raise ProjectError(
            f"project.labels.entities: key column {name!r} of {path} has {nulls} empty values"
        )
    if pd.api.types.is_integer_dtype(values):
        return Key(name, "int")
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        return Key(name, "string")
    raise ProjectError(
        f"project.labels.entities: key column {name!r} of {path} holds {values.dtype}; "
        "entity keys are integers or strings"
    )


def _join_keys(view: Any, repo_entities: dict[str, Any]) -> list[str]:
    """A view's join keys. Feast fills ``view.join_keys`` only from key fields listed in the
    view's schema (or once ``feast apply`` inferred them), so they come from its entities too."""
    keys = list(view.join_keys)
    for name in view.entities:
        entity = repo_entities.get(name)
        if entity is not None and entity.join_key not in keys:
            keys.append(entity.join_key)
    return keys


def _stored_features(
    views: list[Any], entities: list[str], service: str, repo_entities: dict[str, Any]
) -> tuple[Feature, ...]:
    features = []
    for view in views:
        missing = [k for k in _join_keys(view, repo_entities) if k not in entities]
        if missing:
            raise ProjectError(
                f"project.labels.entities: feature view {view.name!r} of service {service!r} "
                f"joins on {', '.join(missing)}, which the label table's entities "
                f"({', '.join(entities)}) do not include"
            )
        for feast_field in view.features:
            features.append(_feature_from_field(view.name, feast_field))
    return tuple(features)


def _feature_from_field(view: str, field: Any) -> Feature:
    from feast import types

    dtype, tags = field.dtype, dict(field.tags or {})
    where = f"feature view {view!r}, field {field.name!r}"
    if dtype in (types.String, types.Bool):
        categories = tags.get(TAG_CATEGORIES)
        declared = tuple(c.strip() for c in categories.split(",")) if categories else ()
        if dtype == types.Bool and not declared:
            declared = ("False", "True")
        return Feature(field.name, "categorical", view, field.description, categories=declared)
    if dtype in (types.Int32, types.Int64, types.Float32, types.Float64):
        return Feature(
            field.name,
            "numeric",
            view,
            field.description,
            min_value=_tag_number(tags, TAG_MIN, where),
            max_value=_tag_number(tags, TAG_MAX, where),
            integer=dtype in (types.Int32, types.Int64),
        )
    raise ProjectError(
        f"{where}: dtype {dtype} is not supported (use Int32/Int64/Float32/Float64, String or Bool)"
    )


def _tag_number(tags: dict[str, str], key: str, where: str) -> float | None:
    if key not in tags:
        return None
    try:
        return float(tags[key])
    except ValueError as exc:
        raise ProjectError(f"{where}: tag {key}={tags[key]!r} is not a number") from exc


def _request_feature(frame: pd.DataFrame, spec: RequestFeature, path: Path) -> Feature:
    values = frame[spec.name]
    inferred = "numeric" if _is_number(values) else "categorical"
    # Declared bounds mean a number, declared categories a category: the data must agree.
    declared = "numeric" if spec.min is not None or spec.max is not None else None
    kind = spec.kind or declared or ("categorical" if spec.categories else inferred)
    if kind == "numeric" and inferred != "numeric":
        raise ProjectError(
            f"project.labels.request_features: {spec.name!r} is declared numeric but column "
            f"{spec.name!r} of {path} holds {values.dtype}"
        )
    if kind == "categorical":
        return Feature(
            spec.name, "categorical", REQUEST, spec.description,
            categories=tuple(spec.categories or ()),
        )  # fmt: skip
    return Feature(
        spec.name, "numeric", REQUEST, spec.description, spec.min, spec.max,
        integer=pd.api.types.is_integer_dtype(values),
    )  # fmt: skip


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _check_unique_names(
    features: tuple[Feature, ...],
    label: str,
    timestamp: str,
    entities: list[str],
    frame: pd.DataFrame,
    path: Path,
) -> None:
    for name in (*entities, *(f.name for f in features if f.is_request)):
        if name.startswith("_") or name in _RESERVED_FIELD_NAMES:
            raise ProjectError(
                f"{name!r} cannot be a request field (the serving API's rows are typed objects: "
                "no leading underscore, no pydantic attribute names); rename the column"
            )
    seen: dict[str, str] = {}
    for f in features:
        if f.name in seen:
            raise ProjectError(
                f"duplicate feature name {f.name!r}: from {seen[f.name]} and from {f.source} "
                "(rename one in the Feast repo or the profile)"
            )
        seen[f.name] = f.source
    for name in (label, timestamp, *entities):
        if name in seen:
            raise ProjectError(f"{name!r} is both a feature (from {seen[name]}) and a key or label")
    for f in features:
        if not f.is_request and f.name in frame.columns:
            raise ProjectError(
                f"column {f.name!r} of {path} has the name of a stored feature of view "
                f"{f.source!r}: rename one, or declare it as a request feature"
            )
    if not features:
        raise ProjectError(
            "the project has no features: its feature service and request_features are empty"
        )


def _classes(label: pd.Series, task: Task, name: str) -> tuple[Any, ...]:
    nulls = int(label.isna().sum())
    if nulls:
        raise ProjectError(f"project.labels.label: column {name!r} has {nulls} empty values")
    if task == "regression":
        if not _is_number(label):
            raise ProjectError(
                f"project.labels.label: column {name!r} holds {label.dtype}, but a regression "
                "label must be numeric"
            )
        return ()
    values = sorted(label.unique().tolist(), key=lambda v: (str(type(v)), v))
    shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
    if task == "binary" and len(values) != 2:
        raise ProjectError(
            f"project.task: binary, but label {name!r} has {len(values)} classes ({shown}); "
            "use task: multiclass (or regression)"
        )
    if task == "multiclass" and not 2 <= len(values) <= MAX_CLASSES:
        raise ProjectError(
            f"project.task: multiclass needs 2 to {MAX_CLASSES} classes; label {name!r} has "
            f"{len(values)} ({shown})"
        )
    return tuple(v.item() if hasattr(v, "item") else v for v in values)


def _check_metric(config: PlatformConfig) -> None:
    task = config.project.task
    allowed = TASK_METRICS[task]
    chosen = [("gate.metric", metric_for(config))]
    chosen += [(f"gate.min_values.{m}", m) for m in config.gate.min_values]
    for setting, metric in chosen:
        if metric not in allowed:
            raise ProjectError(
                f"{setting}: {metric} does not fit a {task} task (use one of: {', '.join(allowed)})"
            )
