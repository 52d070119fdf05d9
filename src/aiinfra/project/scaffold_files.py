"""What ``aiinfra init`` writes: the scaffold's records and the text of its files (the Feast
repo, the profile, the README), apart from the inference in :mod:`.scaffold`."""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiinfra.project.config import Task

LABELS_FILE = "data/labels.parquet"
FEATURES_FILE = "data/features.parquet"
REPO_DIR = "feature_repo"
FEATURE_TTL_DAYS = 365


@dataclass(frozen=True)
class ScaffoldFeature:
    """A feature the scaffold declared: stored (a Field of the Feast view) or sent with each
    request (``--request-feature``)."""

    name: str
    kind: Literal["numeric", "categorical"]
    dtype: Literal["Int64", "Float64", "String"]  # the Feast type it is stored as
    source: Literal["stored", "request"]
    categories: tuple[str, ...] = ()

    def describe(self) -> str:
        where = "sent with each request" if self.source == "request" else "stored"
        shown = f", categories {', '.join(self.categories)}" if self.categories else ""
        return f"{self.name}: {self.kind} ({self.dtype}, {where}{shown})"


@dataclass(frozen=True)
class Scaffold:
    """What ``init_project`` wrote and inferred."""

    directory: Path
    name: str
    rows: int
    task: Task
    task_reason: str  # why this task (given with --task, or inferred from the label)
    entities: tuple[str, ...]
    timestamp: str
    label: str
    features: tuple[ScaffoldFeature, ...]
    ignored: tuple[tuple[str, str], ...]  # (column, why it is not a feature)
    notes: tuple[str, ...]  # what will need the user's attention (empty values, old data)
    profile: Path
    files: tuple[Path, ...]
    next_commands: tuple[str, ...]


# --- names ------------------------------------------------------------------------------------


def feast_name(raw: str, fallback: str = "project") -> str:
    """Letters, digits and underscores, starting with a letter (valid for Feast, MLflow, YAML
    and Python alike)."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", raw).strip("_").lower() or fallback
    if not name[0].isalpha():
        name = f"{fallback}_{name}"
    return name


def _identifier(raw: str, taken: set[str]) -> str:
    """A Python variable name for ``raw``, unique among ``taken`` (which it joins)."""
    base = feast_name(raw, fallback="v")
    if keyword.iskeyword(base) or base in {"Path", "timedelta", "DATA", "Field"}:
        base = f"{base}_"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def free_name(wanted: str, taken: set[str]) -> str:
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted}_{n}", n + 1
    return name


def listed(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def _q(value: Any) -> str:
    """A YAML scalar or flow sequence (JSON is valid YAML and quotes what must be quoted)."""
    return json.dumps(value)


# --- the written files ------------------------------------------------------------------------


def feature_store_yaml(project: str) -> str:
    return f"""\
# Feast repo of project {project}, written by `aiinfra init`. The platform replaces the registry
# and online-store paths with ones under its home (profile.yaml: home), so the paths below are
# only what the bare `feast` CLI uses when run from this folder.
project: {_q(project)}
provider: local
registry: ../.aiinfra/feast/registry.db
online_store:
  type: sqlite
  path: ../.aiinfra/feast/online_store.db
# Point-in-time joins with duckdb's ASOF JOIN (aiinfra's subclass of Feast's duckdb store).
offline_store:
  type: aiinfra.data.asof_store.AsofDuckDBOfflineStore
entity_key_serialization_version: 3
"""


def definitions_module(
    project: str,
    table: str,
    view: str,
    keys: dict[str, str],
    timestamp: str,
    created: str,
    features: list[ScaffoldFeature],
) -> str:
    taken: set[str] = set()
    entity_vars = {k: _identifier(k, taken) for k in keys}
    source_var = _identifier(f"{view}_source", taken)
    view_var = _identifier(f"{view}_features", taken)
    service_var = _identifier(f"{project}_v1", taken)
    dtypes = sorted({f.dtype for f in features})
    parts = [
        f'''"""Feast definitions of project {project}, written by `aiinfra init` from {table}.

Feast's own API, ordered as a Feast repo reads: entities -> source -> feature view -> feature
service. `feast apply` reads this file, and so does the platform. Edit it freely: add fields,
views and sources of your own. Field tags the platform reads: `min`, `max` (numbers) and
`categories` (comma-separated); what a field leaves out, validation learns from the champion's
training data.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import {", ".join(dtypes)}
''',
    ]
    for key, kind in keys.items():
        value_type = "INT64" if kind == "int" else "STRING"
        parts.append(
            f"""
# Entity {key!r}: a key the labels and the features join on, sent with each request.
{entity_vars[key]} = Entity(
    name={_q(feast_name(key, fallback="entity"))},
    join_keys=[{_q(key)}],
    value_type=ValueType.{value_type},
    description={_q(f"entity key {key} of {table}")},
)
"""
        )
    parts.append(
        f"""
# Source: the feature table `aiinfra init` wrote from {table}; point it at your own pipeline's
# output when you have one (one row per entity and time, the timestamps in UTC).
{source_var} = FileSource(
    name={_q(f"{view}_source")},
    path=str(Path(__file__).resolve().parent.parent / "data" / "features.parquet"),
    timestamp_field={_q(timestamp)},
    created_timestamp_column={_q(created)},
    description={_q(f"the feature columns of {table}")},
)
"""
    )
    fields = "\n".join(_field(f, table) for f in features)
    entity_list = ", ".join(entity_vars.values())
    parts.append(
        f"""
# Feature view: what the model reads, and how long a value stays valid after its timestamp.
{view_var} = FeatureView(
    name={_q(f"{view}_features")},
    entities=[{entity_list}],
    ttl=timedelta(days={FEATURE_TTL_DAYS}),
    schema=[
{fields}
    ],
    source={source_var},
    online=True,
    description={_q(f"the features of {table}")},
)
"""
    )
    parts.append(
        f"""
# Feature service: the contract with the model, versioned by name (a new set of features: a
# new service, {project}_v2, and features.feature_service in profile.yaml).
{service_var} = FeatureService(
    name={_q(f"{project}_v1")},
    features=[{view_var}],
    description={_q(f"the features of the {project} model")},
)
"""
    )
    return "".join(parts)


def _field(feature: ScaffoldFeature, table: str) -> str:
    args = [f"name={_q(feature.name)}", f"dtype={feature.dtype}"]
    args.append(f"description={_q(f'from {table}')}")
    if feature.categories:
        args.append(f"tags={{{_q('categories')}: {_q(','.join(feature.categories))}}}")
    one_line = f"        Field({', '.join(args)}),"
    if len(one_line) <= 100:
        return one_line
    inner = "".join(f"            {a},\n" for a in args)
    return f"        Field(\n{inner}        ),"


def profile_yaml(
    directory: Path,
    project: str,
    table: str,
    task: Task,
    reason: str,
    entity: list[str],
    timestamp: str,
    label: str,
    request: list[ScaffoldFeature],
    min_rows: int,
    max_age_days: int,
) -> str:
    metric = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}[task]
    request_entries = [(_request_entry(f), "") for f in request]
    lines: list[tuple[str, str]] = [
        ("profile: local", ""),
        (f"home: {_q(str(directory / '.aiinfra'))}", "all local state: Feast, MLflow, runs"),
        ("project:", ""),
        (f"  name: {_q(project)}", "names the MLflow model and experiment"),
        (f"  task: {task}", reason),
        ('  root: "."', "relative paths below start at this file's folder"),
        (f"  description: {_q(f'{label} from {table}')}", ""),
        ("  labels:", "the label table: one row per example to learn from"),
        (f"    path: {LABELS_FILE}", ""),
        (f"    entities: {_q(entity)}", "entity keys: Feast join keys, sent with each request"),
        (f"    timestamp: {_q(timestamp)}", "when the label was known: features are as of then"),
        (f"    label: {_q(label)}", ""),
        ("    # Columns the caller sends with each request (numbers or strings): a name, or", ""),
        ("    # {name, description, min, max, categories}. See README.md.", ""),
        ("    request_features:" + ("" if request else " []"), ""),
        *request_entries,
        ("features:", "the Feast repo: stored features come from its service"),
        (f"  repo_path: {REPO_DIR}", ""),
        (f"  feature_service: {_q(f'{project}_v1')}", ""),
        ("model:", ""),
        ("  # The built-in MLP. To bring your own network, write models.py next to this file", ""),
        ("  # with build(input_width, output_width, **settings) -> torch.nn.Module, then set", ""),
        ("  #   entry_point: models:build", ""),
        ("  #   settings: {...}", "passed to build() as keyword arguments"),
        ("  entry_point: builtin:mlp", ""),
        ("  settings: {hidden_sizes: [32, 16], dropout: 0.1}", ""),
        ("training:", ""),
        ("  epochs: 20", ""),
        ("  batch_size: 64", ""),
        ("  device: auto", "cuda when present, else cpu"),
        ("validation:", "Great Expectations checks of every training set"),
        (f"  min_rows: {min_rows}", "fewer rows than this: the run stops"),
        (f"  max_age_days: {max_age_days}", "the newest row may be at most this old"),
        ("gate:", "when a new model may replace @champion"),
        (f"  # metric: {metric}", f"the default for a {task} task: set it to choose another"),
        ("  # min_value: ...", "a floor (a ceiling, for errors) the model must reach"),
        ("  margin: 0.002", "and beat the champion by at least this much"),
        ("mlflow:", "the local tracking server and model registry"),
        ("  host: 127.0.0.1", ""),
        ("  port: 5000", ""),
        ("  tracking_uri: http://127.0.0.1:5000", ""),
        ("serving:", "the BentoML service of @champion"),
        ("  host: 127.0.0.1", "loopback unless you mean to expose it"),
        ("  port: 3000", ""),
    ]
    header = [
        f"# The profile of project {project}, written by `aiinfra init` from {table}.",
        "# Every command reads it:",
        f"#   aiinfra --config {directory / 'profile.yaml'} quickstart",
        "# Any setting can be overridden from the environment: AIINFRA_<SECTION>__<FIELD>,",
        "# e.g. AIINFRA_TRAINING__EPOCHS=5 or AIINFRA_MLFLOW__PORT=5001.",
    ]
    body = [_commented(text, comment) for text, comment in lines]
    return "\n".join([*header, *body]) + "\n"


def _commented(text: str, comment: str, column: int = 36) -> str:
    if not comment:
        return text
    return f"{text.ljust(column - 1)} # {comment}"


def _request_entry(feature: ScaffoldFeature) -> str:
    if feature.categories:
        return f"      - {{name: {_q(feature.name)}, categories: {_q(list(feature.categories))}}}"
    return f"      - {_q(feature.name)}"


def readme_text(scaffold: Scaffold, table: str) -> str:
    features = "\n".join(f"- {f.describe()}" for f in scaffold.features)
    ignored = "\n".join(f"- {c}: {why}" for c, why in scaffold.ignored) or "- none"
    notes = "".join(f"\n- {n}" for n in scaffold.notes)
    attention = f"\nBefore training:\n{notes}\n" if notes else ""
    commands = "\n".join(scaffold.next_commands)
    return f"""\
# {scaffold.name}

Written by `aiinfra init` from `{table}` ({scaffold.rows} rows).

## What was inferred

- task: **{scaffold.task}** ({scaffold.task_reason})
- entity keys: {", ".join(scaffold.entities)}; timestamp: {scaffold.timestamp}; label: \
{scaffold.label}

Features:

{features}

Columns left out:

{ignored}
{attention}
## Files

- `data/labels.parquet`: entity keys, timestamp, label (and the request features): the rows
  to learn from.
- `data/features.parquet`: the stored features per entity and time (and when each was written).
- `feature_repo/`: the Feast repo (`feature_store.yaml`, `definitions.py`), in Feast's own API.
- `profile.yaml`: what the platform runs, with a comment on each part.

## Next

```
{commands}
```

`quickstart` starts MLflow, applies the Feast repo, trains, registers, promotes and serves the
model, then sends one prediction.

## Request features

A column the caller knows at prediction time (an amount, a channel) is sent with each request
instead of being read from Feast. Name it when writing the project
(`aiinfra init ... --request-feature COLUMN`), or add it to `data/labels.parquet` and to
`project.labels.request_features` in `profile.yaml`, and remove its Field from the feature view.

## Your own model

Write `models.py` next to `profile.yaml`:

```python
from torch import nn


def build(input_width: int, output_width: int, hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(input_width, hidden), nn.ReLU(), nn.Linear(hidden, output_width))
```

and set in `profile.yaml`:

```yaml
model:
  entry_point: models:build
  settings: {{hidden: 64}}
```

`build(input_width, output_width, **settings)` must return a `torch.nn.Module` mapping
`(rows, input_width)` to `(rows, output_width)`; the platform imports it, never unpickles it.
"""
