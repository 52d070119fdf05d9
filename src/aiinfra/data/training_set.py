"""Point-in-time training sets: the label table joined with the project's Feast features.

A training set is a Parquet file that carries its schema in the file's metadata, so every
step after the build (validation, training, evaluation, registration) reads the rows and what
they mean from one place, and none of them needs to import Feast again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aiinfra.project.config import PlatformConfig
from aiinfra.project.definition import Project, load_project
from aiinfra.project.schema import Schema

SCHEMA_KEY = b"aiinfra.schema"
IGNORED_KEY = b"aiinfra.ignored_columns"  # label-table columns the project does not declare


def build_training_set(config: PlatformConfig, project: Project | None = None) -> pd.DataFrame:
    """The label table's declared columns, each row with its features as of its event time.

    Undeclared columns of the label table are left out (validation lists them)."""
    from aiinfra.data import feature_store  # Feast costs ~5 s to import: only where it is used

    project = project or load_project(config)
    schema = project.schema
    labels = project.labels.copy()
    labels[schema.timestamp] = pd.to_datetime(labels[schema.timestamp], utc=True)
    request = [f.name for f in schema.request_features]
    entity_df = labels[[*schema.key_columns, *request, schema.label]]
    store = feature_store.open_store(config)
    feature_store.apply(store, project.repo or feature_store.repo_objects(config))
    joined = feature_store.historical_features(store, schema, entity_df)
    joined = joined[list(schema.training_columns)]
    ties = [schema.row_id] if schema.row_id else list(schema.entity_names)
    return joined.sort_values([schema.timestamp, *ties], kind="stable").reset_index(drop=True)


def write_training_set(
    frame: pd.DataFrame, schema: Schema, path: Path, ignored_columns: tuple[str, ...] = ()
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {
        **(table.schema.metadata or {}),
        SCHEMA_KEY: json.dumps(schema.to_dict(), default=str).encode(),
        IGNORED_KEY: json.dumps(list(ignored_columns)).encode(),
    }
    pq.write_table(table.replace_schema_metadata(metadata), path)


def read_training_set(path: Path) -> tuple[pd.DataFrame, Schema]:
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(SCHEMA_KEY)
    if raw is None:
        raise ValueError(f"{path} is not a training set built by the platform (no schema in it)")
    return table.to_pandas(), Schema.from_dict(json.loads(raw))


def ignored_columns(path: Path) -> tuple[str, ...]:
    raw = (pq.read_schema(path).metadata or {}).get(IGNORED_KEY, b"[]")
    return tuple(json.loads(raw))
