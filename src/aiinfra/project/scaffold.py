"""``aiinfra init``: a working project from one table.

A team with a table (one row per example: entity keys, a timestamp, a label and feature
columns) gets everything the platform needs in one folder, in the formats they would write by
hand: the label table and a feature table (Parquet), a Feast repo in Feast's own API, a
commented profile and a README. Nothing here knows any example's column names: every name comes
from the table and the flags, and what is inferred (the task, each feature's type) is
explained in the returned :class:`Scaffold` so the CLI can show it.

Feast is not imported here: the written ``definitions.py`` is plain text, checked by loading
the project (``aiinfra.steps.check_project``) like any other.
"""

from __future__ import annotations

import math
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from aiinfra.project.config import Task
from aiinfra.project.definition import MAX_CLASSES, ProjectError, read_label_table
from aiinfra.project.scaffold_files import (
    FEATURES_FILE,
    LABELS_FILE,
    REPO_DIR,
    Scaffold,
    ScaffoldFeature,
    definitions_module,
    feast_name,
    feature_store_yaml,
    free_name,
    listed,
    profile_yaml,
    readme_text,
)

# An integer or string label with at most this many distinct values is taken as classes.
MULTICLASS_LIMIT = 20
# A string feature with at most this many distinct values declares them (Field tag categories).
CATEGORY_TAG_LIMIT = 20
DATE_LIKE = r"\d{4}-\d{2}-\d{2}([ T].*)?"  # ISO dates in a CSV: text to pandas, not features
DEFAULT_MAX_AGE_DAYS = 30


def init_project(
    directory: Path,
    table: Path,
    entity: list[str],
    timestamp: str,
    label: str,
    task: Task | None = None,
    request_features: list[str] = [],  # noqa: B006 - never mutated
    name: str | None = None,
    force: bool = False,
) -> Scaffold:
    """Write a project for ``table`` into ``directory``; raise ProjectError (naming the flag
    and the column) on anything that would not load."""
    directory = directory.expanduser().resolve()
    table = table.expanduser().resolve()
    _check_roles(entity, timestamp, label, request_features)
    _check_directory(directory, force)
    frame = _read(table)
    where = table.name
    _check_columns(frame, where, entity, timestamp, label, request_features)
    project = feast_name(name or directory.name)

    times = _timestamps(frame[timestamp], timestamp, where)
    keys = {k: _key(frame[k], k, where) for k in entity}
    _check_unique_rows(pd.DataFrame({**keys, timestamp: times}), entity, timestamp, where)
    label_values = frame[label]
    chosen, reason = _task(label_values, label, where, task)
    request = [_request_feature(frame[c], c, where) for c in request_features]

    taken = {*entity, timestamp, label, *request_features}
    stored: list[ScaffoldFeature] = []
    stored_values: dict[str, pd.Series] = {}
    ignored: list[tuple[str, str]] = []
    for column in frame.columns:
        if column in taken:
            continue
        found = _stored_feature(frame[column], str(column))
        if isinstance(found, str):
            ignored.append((str(column), found))
        else:
            stored.append(found)
            stored_values[found.name] = _feature_values(frame[column], found)
    if not stored:
        raise ProjectError(
            f"--data {where}: no column is left to be a stored feature (the columns besides the "
            f"keys, timestamp and label: {listed(c for c, _ in ignored) or 'none'}); Feast "
            "needs at least one"
        )

    now = datetime.now(UTC)
    notes = _notes(frame, stored, request, times, now)
    created = free_name("created", {str(c) for c in frame.columns})
    labels = pd.DataFrame(
        {
            **keys,
            timestamp: times,
            label: _label_values(label_values, chosen),
            **{f.name: _feature_values(frame[f.name], f) for f in request},
        }
    )
    features = pd.DataFrame({**keys, timestamp: times, created: times, **stored_values})

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    (directory / REPO_DIR).mkdir(exist_ok=True)
    labels.to_parquet(directory / LABELS_FILE, index=False)
    features.to_parquet(directory / FEATURES_FILE, index=False)
    written = [directory / LABELS_FILE, directory / FEATURES_FILE]

    view = feast_name(Path(where).stem, fallback="table")
    key_types = {
        k: ("int" if pd.api.types.is_integer_dtype(v) else "string") for k, v in keys.items()
    }
    repo_files = {
        "feature_store.yaml": feature_store_yaml(project),
        "definitions.py": definitions_module(
            project, where, view, key_types, timestamp, created, stored
        ),
    }
    for file_name, text in repo_files.items():
        (directory / REPO_DIR / file_name).write_text(text)
        written.append(directory / REPO_DIR / file_name)

    profile = directory / "profile.yaml"
    max_age = _max_age_days(times, now)
    profile.write_text(
        profile_yaml(
            directory, project, where, chosen, reason, entity, timestamp, label, request,
            min_rows=min(len(frame), max(10, len(frame) // 4)), max_age_days=max_age,
        )
    )  # fmt: skip
    commands = (
        f"aiinfra --config {shlex.quote(str(profile))} quickstart",
        f"aiinfra --config {shlex.quote(str(profile))} run",
    )
    readme = directory / "README.md"
    scaffold = Scaffold(
        directory=directory,
        name=project,
        rows=len(frame),
        task=chosen,
        task_reason=reason,
        entities=tuple(entity),
        timestamp=timestamp,
        label=label,
        features=(*stored, *request),
        ignored=tuple(ignored),
        notes=tuple(notes),
        profile=profile,
        files=(*written, profile, readme),
        next_commands=commands,
    )
    readme.write_text(readme_text(scaffold, where))
    return scaffold


# --- reading and checking the table -----------------------------------------------------------


def _check_roles(
    entity: list[str], timestamp: str, label: str, request_features: list[str]
) -> None:
    if not entity:
        raise ProjectError("--entity: name at least one entity key column")
    roles = [
        *(("--entity", c) for c in entity),
        ("--timestamp", timestamp),
        ("--label", label),
        *(("--request-feature", c) for c in request_features),
    ]
    seen: dict[str, str] = {}
    for flag, column in roles:
        if column in seen:
            raise ProjectError(
                f"{flag} {column}: column {column!r} is already given with {seen[column]}"
            )
        seen[column] = flag


def _check_directory(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise ProjectError(f"DIR {directory}: is a file, not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ProjectError(
            f"DIR {directory}: is not empty (use --force to write the project into it anyway)"
        )


def _read(table: Path) -> pd.DataFrame:
    try:
        frame = read_label_table(table)
    except ProjectError as exc:
        problem = str(exc).removeprefix("project.labels.path: ")
        raise ProjectError(f"--data {table.name}: {problem}") from exc
    except (ValueError, OSError) as exc:
        raise ProjectError(f"--data {table}: cannot read it ({exc})") from exc
    if frame.empty:
        raise ProjectError(f"--data {table.name}: the table has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _check_columns(
    frame: pd.DataFrame,
    where: str,
    entity: list[str],
    timestamp: str,
    label: str,
    request_features: list[str],
) -> None:
    flags = [
        *(("--entity", c) for c in entity),
        ("--timestamp", timestamp),
        ("--label", label),
        *(("--request-feature", c) for c in request_features),
    ]
    for flag, column in flags:
        if column not in frame.columns:
            raise ProjectError(
                f"{flag} {column}: no such column in {where} (columns: {listed(frame.columns)})"
            )


def _timestamps(values: pd.Series, column: str, where: str) -> pd.Series:
    """The event times as UTC, to the microsecond (what Feast's offline stores keep)."""
    flag = f"--timestamp {column}"
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        raise ProjectError(
            f"{flag}: column {column!r} of {where} holds {values.dtype}, not timestamps (write "
            "them as dates, e.g. 2024-05-01T12:00:00Z)"
        )
    nulls = int(values.isna().sum())
    if nulls:
        raise ProjectError(f"{flag}: column {column!r} of {where} has {nulls} empty values")
    try:
        parsed = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise ProjectError(
            f"{flag}: column {column!r} of {where} does not parse as timestamps ({exc})"
        ) from exc
    return parsed.dt.floor("us").astype("datetime64[us, UTC]")


def _key(values: pd.Series, column: str, where: str) -> pd.Series:
    flag = f"--entity {column}"
    nulls = int(values.isna().sum())
    if nulls:
        raise ProjectError(
            f"{flag}: column {column!r} of {where} has {nulls} empty values; every row needs "
            "its entity key"
        )
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("int64")
    if _all_strings(values):
        return values.astype(str).astype(object)
    raise ProjectError(
        f"{flag}: column {column!r} of {where} holds {values.dtype}; entity keys are integers "
        "or strings"
    )


def _check_unique_rows(keys: pd.DataFrame, entity: list[str], timestamp: str, where: str) -> None:
    duplicated = keys.duplicated(keep=False)
    if duplicated.any():
        first = keys[duplicated].iloc[0].to_dict()
        raise ProjectError(
            f"--entity/--timestamp: {int(duplicated.sum())} rows of {where} share their "
            f"({', '.join([*entity, timestamp])}) with another row (e.g. {first}); Feast needs "
            "one row per entity and time"
        )


# --- the task ---------------------------------------------------------------------------------


def _task(values: pd.Series, column: str, where: str, given: Task | None) -> tuple[Task, str]:
    flag = f"--label {column}"
    nulls = int(values.isna().sum())
    if nulls:
        raise ProjectError(f"{flag}: column {column!r} of {where} has {nulls} empty values")
    if pd.api.types.is_datetime64_any_dtype(values):
        raise ProjectError(f"{flag}: column {column!r} of {where} holds timestamps, not labels")
    distinct = values.nunique()
    shown = listed(sorted(map(str, values.unique()))[:5]) + (", ..." if distinct > 5 else "")
    numeric = _is_number(values)
    if given is not None:
        _check_given_task(given, values, distinct, flag, where, shown)
        return given, f"--task {given}"
    if distinct < 2:
        raise ProjectError(f"{flag}: every row has the same label ({shown}): nothing to learn")
    if distinct == 2:
        return "binary", f"label {column!r} has 2 distinct values ({shown})"
    integral = numeric and bool((values.astype(float) % 1 == 0).all())
    if numeric and not integral:
        return "regression", f"label {column!r} holds fractional numbers ({distinct} distinct)"
    if distinct <= MULTICLASS_LIMIT:
        kind = "whole numbers" if numeric else "values"
        return "multiclass", f"label {column!r} has {distinct} distinct {kind} ({shown})"
    if numeric:
        return (
            "regression",
            f"label {column!r} holds numbers with {distinct} distinct values "
            f"(more than {MULTICLASS_LIMIT})",
        )
    raise ProjectError(
        f"{flag}: column {column!r} of {where} has {distinct} distinct values: too many to take "
        f"as classes unasked; pass --task multiclass (up to {MAX_CLASSES} classes)"
    )


def _check_given_task(
    task: Task, values: pd.Series, distinct: int, flag: str, where: str, shown: str
) -> None:
    if task == "regression" and not _is_number(values):
        raise ProjectError(
            f"--task regression: {flag.split()[1]!r} of {where} holds {values.dtype}; a "
            "regression label must be numeric"
        )
    if task == "binary" and distinct != 2:
        raise ProjectError(
            f"--task binary: {flag} has {distinct} distinct values ({shown}); binary needs 2"
        )
    if task == "multiclass" and not 2 <= distinct <= MAX_CLASSES:
        raise ProjectError(
            f"--task multiclass: {flag} has {distinct} distinct values ({shown}); multiclass "
            f"needs 2 to {MAX_CLASSES}"
        )


def _label_values(values: pd.Series, task: Task) -> pd.Series:
    """Classes as plain values: whole-number floats become integers, categories strings."""
    if task == "regression":
        return values.astype(float)
    if pd.api.types.is_bool_dtype(values):
        return values
    if _is_number(values):
        if bool((values.astype(float) % 1 == 0).all()):
            return values.astype("int64")
        return values
    return values.astype(str).astype(object)


# --- features ---------------------------------------------------------------------------------


def _stored_feature(values: pd.Series, column: str) -> ScaffoldFeature | str:
    """A Field for ``column``, or why it is not a feature."""
    present = values.dropna()
    if present.empty:
        return "every value is empty"
    if (
        pd.api.types.is_datetime64_any_dtype(values)
        or pd.api.types.is_timedelta64_dtype(values)
        or isinstance(values.dtype, pd.PeriodDtype)
    ):
        return "a date or time: derive a number from it (e.g. days since) to use it"
    if column == "event_timestamp":
        return "the name Feast gives the join time: rename the column to use it"
    if present.nunique() < 2:
        return f"one value only ({present.iloc[0]}): nothing to learn from"
    if pd.api.types.is_bool_dtype(values):
        return ScaffoldFeature(column, "categorical", "String", "stored", ("False", "True"))
    if _is_number(values):
        if pd.api.types.is_complex_dtype(values):
            return f"{values.dtype} is not supported"
        whole = pd.api.types.is_integer_dtype(values) and not values.isna().any()
        return ScaffoldFeature(column, "numeric", "Int64" if whole else "Float64", "stored")
    if isinstance(values.dtype, pd.CategoricalDtype) or _all_strings(values):
        strings = present.astype(str)
        if strings.str.fullmatch(DATE_LIKE).all():
            return "dates written as text: derive a number from them (e.g. days since) to use them"
        distinct = strings.nunique()
        if distinct == len(strings) and len(strings) > CATEGORY_TAG_LIMIT:
            return "every row has its own value: an identifier or free text, not a feature"
        return ScaffoldFeature(column, "categorical", "String", "stored", _categories(strings))
    return f"{values.dtype} values of mixed or unsupported types"


def _request_feature(values: pd.Series, column: str, where: str) -> ScaffoldFeature:
    if pd.api.types.is_datetime64_any_dtype(values):
        raise ProjectError(
            f"--request-feature {column}: column {column!r} of {where} holds timestamps; "
            "request features are numbers or strings"
        )
    if pd.api.types.is_bool_dtype(values):
        return ScaffoldFeature(column, "categorical", "String", "request", ("False", "True"))
    if _is_number(values):
        whole = pd.api.types.is_integer_dtype(values) and not values.isna().any()
        return ScaffoldFeature(column, "numeric", "Int64" if whole else "Float64", "request")
    if isinstance(values.dtype, pd.CategoricalDtype) or _all_strings(values):
        strings = values.dropna().astype(str)
        return ScaffoldFeature(column, "categorical", "String", "request", _categories(strings))
    raise ProjectError(
        f"--request-feature {column}: column {column!r} of {where} holds {values.dtype} of "
        "mixed types; request features are numbers or strings"
    )


def _categories(strings: pd.Series) -> tuple[str, ...]:
    """The values to declare, when few and representable in a comma-separated tag."""
    distinct = sorted(strings.unique())
    if len(distinct) > CATEGORY_TAG_LIMIT:
        return ()
    if any("," in v or v != v.strip() or not v for v in distinct):
        return ()  # the tag cannot hold them: validation learns them from the data instead
    return tuple(distinct)


def _feature_values(values: pd.Series, feature: ScaffoldFeature) -> pd.Series:
    """The column as the Feast type stores it (strings for categorical, 64-bit numbers)."""
    if feature.dtype == "String":
        return values.map(lambda v: None if _missing(v) else str(v)).astype(object)
    if feature.dtype == "Int64":
        return values.astype("int64")
    return values.astype("float64")


def _notes(
    frame: pd.DataFrame,
    stored: list[ScaffoldFeature],
    request: list[ScaffoldFeature],
    times: pd.Series,
    now: datetime,
) -> list[str]:
    notes = []
    for f in (*stored, *request):
        empty = int(frame[f.name].isna().sum())
        if empty:
            notes.append(
                f"{f.name} has {empty} empty values: validation refuses empty values, so fill "
                "them (or drop the column) before training"
            )
    newest = times.max().to_pydatetime()
    age = (now - newest).total_seconds() / 86400
    if age > DEFAULT_MAX_AGE_DAYS:
        notes.append(
            f"the newest row is {age:.0f} days old: validation.max_age_days is set to "
            f"{_max_age_days(times, now)} so this table passes; lower it once fresh rows arrive"
        )
    if newest > now:
        notes.append(
            f"some timestamps are in the future (up to {newest.isoformat()}): validation "
            "refuses rows from the future"
        )
    return notes


def _max_age_days(times: pd.Series, now: datetime) -> int:
    newest: datetime = times.max().to_pydatetime()
    age = (now - newest).total_seconds() / 86400
    if age <= DEFAULT_MAX_AGE_DAYS:
        return DEFAULT_MAX_AGE_DAYS
    return math.ceil(age) + DEFAULT_MAX_AGE_DAYS


# --- small predicates -------------------------------------------------------------------------


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _all_strings(values: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(values) and not isinstance(values.dtype, pd.CategoricalDtype):
        return all(isinstance(v, str) for v in values.dropna())
    return False


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
