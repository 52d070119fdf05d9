"""The Feast store of a profile: apply, materialize, point-in-time training sets, online reads.

The repo's ``feature_store.yaml`` says which kind of stores a profile uses; the paths of the
local state (registry, online sqlite file) come from the platform config, so one checkout
can hold several independent homes (a developer's, each test's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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

    Rows whose entity has no feature value at that time (none yet, or older than the view's
    TTL) come back with nulls; validation then rejects them rather than training on them.
    """
    joined = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(repo.service.name)
    ).to_df()
    return joined


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
