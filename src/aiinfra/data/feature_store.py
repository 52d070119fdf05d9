"""The Feast store of a profile: apply, materialize, point-in-time training sets, online reads.

The repo's ``feature_store.yaml`` says which kind of stores a profile uses; the paths of the
local state (registry, online sqlite file) come from the platform config, so one checkout
can hold several independent homes (a developer's, each test's). What is read (which views,
which features, joined on which keys) comes from the project's schema.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from aiinfra.project import feature_repo
from aiinfra.project.config import PlatformConfig
from aiinfra.project.feature_repo import FeatureRepo
from aiinfra.project.schema import Schema


def repo_config(config: PlatformConfig) -> RepoConfig:
    raw: dict[str, Any] = yaml.safe_load((config.repo_path / "feature_store.yaml").read_text())
    config.feast_dir.mkdir(parents=True, exist_ok=True)
    raw["registry"] = str(config.feast_dir / "registry.db")
    online = dict(raw.get("online_store") or {"type": "sqlite"})
    if online.get("type", "sqlite") == "sqlite":
        online["path"] = str(config.feast_dir / "online_store.db")
    raw["online_store"] = online
    # Team/cluster profiles: Redis online store, warehouse or SQL registry, from the config.
    raw.update(config.features.store_settings())
    raw["repo_path"] = config.repo_path
    return RepoConfig(**raw)


def open_store(config: PlatformConfig) -> FeatureStore:
    return FeatureStore(config=repo_config(config), repo_path=str(config.repo_path))


def repo_objects(config: PlatformConfig) -> FeatureRepo:
    """The project's Feast objects (its ``definitions`` read as ``feast apply`` would)."""
    return feature_repo.load(config.repo_path, config.data_dir)


def apply(store: FeatureStore, repo: FeatureRepo) -> None:
    store.apply(repo.objects())


def materialize(store: FeatureStore, repo: FeatureRepo, service: str, end: datetime) -> None:
    """Load every value of the service's views up to ``end`` into the online store."""
    views = repo.service_views(service)
    start = _earliest_event(repo, views)
    store.materialize(start_date=start, end_date=end, feature_views=[v.name for v in views])


def _earliest_event(repo: FeatureRepo, views: list[Any]) -> datetime:
    """The oldest event time of the views' file sources (relative paths start at the repo, as
    in Feast); stores other than files: a wide window."""
    earliest = []
    for view in views:
        source = view.batch_source
        path = getattr(source, "path", None)
        if not path or "://" in path:
            return datetime(1970, 1, 2)
        file = Path(path) if Path(path).is_absolute() else repo.path / path
        column = source.timestamp_field
        ts = pd.read_parquet(file, columns=[column])[column]
        earliest.append(pd.to_datetime(ts, utc=True).min())
    if not earliest:
        return datetime(1970, 1, 2)
    start: datetime = min(earliest).to_pydatetime()
    return start


def historical_features(
    store: FeatureStore, schema: Schema, entity_df: pd.DataFrame
) -> pd.DataFrame:
    """Point-in-time join: each row gets the feature values as of its event time.

    Every entity row comes back, in input order. A row whose entity has no feature value at
    that time (none yet, or only values older than the view's TTL) gets nulls: the file store
    would drop such rows when no value precedes them at all, other stores keep them, and we
    keep them everywhere, so validation names them instead of the training set silently
    shrinking.
    """
    stored = [f.name for f in schema.stored_features]
    if entity_df.empty:
        return entity_df.assign(**{name: pd.Series(dtype="float64") for name in stored})
    tagged = entity_df.assign(**{_ROW_ID: np.arange(len(entity_df))})
    merged = tagged
    ts = schema.timestamp
    # Feast joins on a column named event_timestamp; microseconds are what every offline store
    # keeps (duckdb refuses finer timestamps). Only the lookup uses the floored times.
    lookup_times = pd.to_datetime(tagged[ts], utc=True).dt.floor("us")
    # One join per view: the file store drops a row from the whole result when any one view
    # has no value before it, which would null the other views' perfectly good values.
    for view_name, features in schema.views().items():
        view = store.get_feature_view(view_name)
        keys = [_ROW_ID, *view.join_keys]
        entities = tagged[keys].assign(**{_EVENT_TIMESTAMP: lookup_times})
        refs = [f"{view_name}:{f.name}" for f in features]
        joined = store.get_historical_features(entity_df=entities, features=refs).to_df()
        values = joined[[_ROW_ID, *(f.name for f in features)]]
        merged = merged.merge(values, on=_ROW_ID, how="left", validate="one_to_one")
    merged = merged.sort_values(_ROW_ID).drop(columns=_ROW_ID).reset_index(drop=True)
    return merged[[*entity_df.columns, *stored]]


_ROW_ID = "__aiinfra_row"
_EVENT_TIMESTAMP = "event_timestamp"


def online_features(
    store: FeatureStore, schema: Schema, rows: list[dict[str, Any]]
) -> pd.DataFrame:
    """The latest materialized values of the stored features for each row, in input order."""
    keys = _join_keys(store, schema)
    entity_rows = [{key: row[key] for key in keys} for row in rows]
    result = store.get_online_features(
        features=store.get_feature_service(schema.feature_service), entity_rows=entity_rows
    ).to_df()
    return result[[f.name for f in schema.stored_features]]


def _join_keys(store: FeatureStore, schema: Schema) -> list[str]:
    keys: list[str] = []
    for view_name in schema.views():
        for key in store.get_feature_view(view_name).join_keys:
            if key not in keys:
                keys.append(key)
    return keys


def missing_online(frame: pd.DataFrame, schema: Schema) -> list[int]:
    """Positions of rows the online store had no values for."""
    names = [f.name for f in schema.stored_features]
    return [int(i) for i in np.flatnonzero(frame[names].isna().any(axis=1).to_numpy())]
