"""The Feast store of a profile: apply, materialize, point-in-time training sets, online reads.

The repo's ``feature_store.yaml`` says which kind of stores a profile uses; the paths of the
local state (registry, online sqlite file) come from the platform config, so one checkout
can hold several independent homes (a developer's, each test's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from aiinfra import schema
from aiinfra.config import PlatformConfig
from aiinfra.feature_definitions import FeatureRepo, define


def repo_config(config: PlatformConfig) -> RepoConfig:
    raw: dict[str, Any] = yaml.safe_load(
        (config.features.repo_path / "feature_store.yaml").read_text()
    )
    config.feast_dir.mkdir(parents=True, exist_ok=True)
    raw["registry"] = str(config.feast_dir / "registry.db")
    online = dict(raw.get("online_store") or {"type": "sqlite"})
    if online.get("type", "sqlite") == "sqlite":
        online["path"] = str(config.feast_dir / "online_store.db")
    raw["online_store"] = online
    # Team/cluster profiles: Redis online store, warehouse or SQL registry, from the config.
    raw.update(config.features.store_settings())
    raw["repo_path"] = config.features.repo_path
    return RepoConfig(**raw)


def open_store(config: PlatformConfig) -> FeatureStore:
    return FeatureStore(config=repo_config(config), repo_path=str(config.features.repo_path))


def repo_objects(config: PlatformConfig) -> FeatureRepo:
    return define(config.data_dir, config.features.feature_service)


def apply(store: FeatureStore, repo: FeatureRepo) -> None:
    store.apply(repo.objects())


def materialize(store: FeatureStore, repo: FeatureRepo, end: datetime) -> None:
    """Load every feature value up to ``end`` into the online store."""
    start = _earliest_event(repo)
    store.materialize(start_date=start, end_date=end)


def _earliest_event(repo: FeatureRepo) -> datetime:
    earliest = []
    for source in (repo.applicant_source, repo.zipcode_source):
        ts = pd.read_parquet(source.path, columns=[schema.EVENT_TIMESTAMP])[schema.EVENT_TIMESTAMP]
        earliest.append(ts.min())
    start: datetime = min(earliest).to_pydatetime()
    return start


def historical_features(
    store: FeatureStore, repo: FeatureRepo, entity_df: pd.DataFrame
) -> pd.DataFrame:
    """Point-in-time join: each row gets the feature values as of its ``event_timestamp``.

    Every entity row comes back, in input order. A row whose entity has no feature value at
    that time (none yet, or only values older than the view's TTL) gets nulls: the file store
    would drop such rows when no value precedes them at all, other stores keep them, and we
    keep them everywhere, so validation names them instead of the training set silently
    shrinking.
    """
    stored = stored_feature_names()
    if entity_df.empty:
        return entity_df.assign(**{name: pd.Series(dtype="float64") for name in stored})
    tagged = entity_df.assign(**{_ROW_ID: np.arange(len(entity_df))})
    merged = tagged
    # Microseconds are what every offline store keeps (duckdb refuses finer timestamps);
    # the rows keep their own timestamps, only the lookup uses the floored ones.
    tagged = tagged.assign(
        **{schema.EVENT_TIMESTAMP: pd.to_datetime(tagged[schema.EVENT_TIMESTAMP]).dt.floor("us")}
    )
    # One join per view: the file store drops a row from the whole result when any one view
    # has no value before it, which would null the other views' perfectly good values.
    for view in repo.views():
        keys = [_ROW_ID, *view.join_keys, schema.EVENT_TIMESTAMP]
        refs = [f"{view.name}:{field.name}" for field in view.features]
        joined = store.get_historical_features(entity_df=tagged[keys], features=refs).to_df()
        values = joined[[_ROW_ID, *(field.name for field in view.features)]]
        merged = merged.merge(values, on=_ROW_ID, how="left", validate="one_to_one")
    merged = merged.sort_values(_ROW_ID).drop(columns=_ROW_ID).reset_index(drop=True)
    return merged[[*entity_df.columns, *stored]]


_ROW_ID = "__aiinfra_row"


def online_features(
    store: FeatureStore, repo: FeatureRepo, rows: list[dict[str, Any]]
) -> pd.DataFrame:
    """The latest materialized values for each (applicant_id, zipcode) row, in input order."""
    entity_rows = [{key: row[key] for key in schema.ENTITY_KEYS} for row in rows]
    result = store.get_online_features(
        features=store.get_feature_service(repo.service.name), entity_rows=entity_rows
    ).to_df()
    return result


def stored_feature_names() -> list[str]:
    return [f.name for f in schema.FEATURES if not f.is_request]


def missing_online(frame: pd.DataFrame) -> list[int]:
    """Positions of rows the online store had no values for."""
    names = stored_feature_names()
    return [int(i) for i in frame.index[frame[names].isna().any(axis=1)]]
