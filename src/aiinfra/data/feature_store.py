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
    that time (none yet, or only values older than the view's TTL) gets nulls, on every store,
    so validation names them instead of the training set silently shrinking.
    """
    stored = [f.name for f in schema.stored_features]
    if entity_df.empty:
        return entity_df.assign(**{name: pd.Series(dtype="float64") for name in stored})
    # Feast joins on a column named event_timestamp; microseconds are what every offline store
    # keeps (duckdb refuses finer timestamps). Only the lookup uses the floored times.
    times = pd.to_datetime(entity_df[schema.timestamp], utc=True).dt.floor("us")
    times = times.reset_index(drop=True)
    groups = _retrieval_groups(store, schema)
    frames = [_retrieve(store, views, entity_df, times) for views in groups]
    joined = pd.concat([entity_df.reset_index(drop=True), *frames], axis=1, copy=False)
    wanted = [*entity_df.columns, *stored]
    return joined if list(joined.columns) == wanted else joined[wanted]


def _answers_every_row(store: FeatureStore) -> bool:
    """Whether the offline store returns every entity row it is sent. The file (dask) store
    does not: it keeps one row per (join keys, event time), and drops a row from the whole
    result when any one view of the call has no value before it."""
    return str(store.config.offline_store.type) not in ("file", "dask")


def _retrieval_groups(store: FeatureStore, schema: Schema) -> list[dict[str, list[Any]]]:
    """The views to read per Feast call: all in one, or on the file store one call per view,
    so a view without a value nulls only its own features."""
    views = schema.views()
    if _answers_every_row(store):
        return [views]
    return [{name: features} for name, features in views.items()]


def _retrieve(
    store: FeatureStore, views: dict[str, list[Any]], entity_df: pd.DataFrame, times: pd.Series
) -> pd.DataFrame:
    """One Feast call for ``views``: their features for every entity row, in input order."""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for name in views for k in store.get_feature_view(name).join_keys))
    lookups = pd.DataFrame({**{k: entity_df[k].to_numpy() for k in keys}, _EVENT_TIMESTAMP: times})
    ids, request = _lookup_requests(lookups, collapse=not _answers_every_row(store))
    refs = [f"{name}:{f.name}" for name, features in views.items() for f in features]
    table = store.get_historical_features(entity_df=request, features=refs).to_arrow()
    # Where each request's answer is in the result (-1: the store dropped it).
    position = np.full(len(request), -1, dtype="int64")
    position[table.column(_LOOKUP_ID).to_numpy()] = np.arange(table.num_rows)
    rows = position[ids]
    names = [f.name for features in views.values() for f in features]
    frame: pd.DataFrame = table.select(names).take(pa.array(rows, mask=rows < 0)).to_pandas()
    return frame


def _lookup_requests(lookups: pd.DataFrame, collapse: bool) -> tuple[np.ndarray, pd.DataFrame]:
    """The entity frame to send, each row tagged with an id, and per lookup the id answering
    it. ``collapse``: send each distinct (join keys, event time) once, for a store that keeps
    one result row per such pair; for the others deduplicating would only cost time."""
    if collapse:
        # ngroup numbers groups in order of first appearance, as drop_duplicates keeps them.
        groups = lookups.groupby(list(lookups.columns), sort=False, dropna=False)
        ids, request = groups.ngroup().to_numpy(), lookups.drop_duplicates(ignore_index=True)
    else:
        ids, request = np.arange(len(lookups)), lookups
    request[_LOOKUP_ID] = np.arange(len(request))  # a frame of our own: no copy
    return ids, request


_LOOKUP_ID = "__aiinfra_lookup"
_EVENT_TIMESTAMP = "event_timestamp"


def online_features(
    store: FeatureStore, schema: Schema, rows: list[dict[str, Any]]
) -> pd.DataFrame:
    """The latest materialized values of the stored features for each row, in input order,
    through Feast's full ``get_online_features``: the reference the serving path's
    ``online_reader.OnlineReader`` is tested and benchmarked against."""
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
