"""A Feast offline store: Feast's duckdb store with the point-in-time join as an ASOF join.

Feast's duckdb store joins every entity row with every earlier value of its keys within the TTL,
then ranks them per row to keep the latest: quadratic in the history of a key, and most of the
time of a training set at 1M rows. duckdb's ``ASOF LEFT JOIN`` finds the latest value directly.
This store answers that way what it can answer with the same values, types and columns as
Feast's (file sources, a pandas entity frame), and leaves anything else to Feast's store:

    offline_store:
      type: aiinfra.data.asof_store.AsofDuckDBOfflineStore

Feast's rules carried over: per feature view, the latest value with the view's join keys (or the
projection's ``join_key_map``) and an event time at or before the row's; among values with the
same event time, the one created last; none older than the view's TTL (no TTL: no limit); the
source's ``field_mapping``; the projection's name alias and ``full_feature_names`` for the
column names. Every entity row comes back, in input order (Feast's store keeps every row too,
in no particular order). Left to Feast's join: sources other than parquet files, an entity
frame given as SQL or empty, on-demand feature views, ``filter_by_created_timestamp`` on a
source with a created column (a cutoff an ASOF join cannot express), feature names that would
meet an entity column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ibis
import pandas as pd
from feast.data_format import ParquetFormat
from feast.feature_view import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.duckdb import (
    DuckDBOfflineStore,
    DuckDBOfflineStoreConfig,
    _read_data_source,
    _write_data_source,
)
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    IbisRetrievalJob,
    _get_entity_df_event_timestamp_range,
    _get_entity_schema,
    _to_utc,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from ibis.expr import datatypes as dt
from ibis.expr.types import BooleanValue, Table
from pydantic import StrictStr

STORE_TYPE = "aiinfra.data.asof_store.AsofDuckDBOfflineStore"

# Internal column names, prefixed so as not to meet a user's column.
_ROW = "__asof_row"
_VALUE_TS = "__asof_value_ts"
_RANK = "__asof_rank"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """The duckdb store's settings (Feast finds this class by the store's name + ``Config``)."""

    type: StrictStr = STORE_TYPE


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's duckdb offline store, its point-in-time join done with ``ASOF LEFT JOIN``."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        plan = None
        on_demand = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        created_cutoff = filter_by_created_timestamp and _any_created_column(feature_views)
        if not on_demand and not created_cutoff:
            plan = _plan(feature_views, feature_refs, entity_df, full_feature_names)
        if plan is None:
            return DuckDBOfflineStore.get_historical_features(
                config=config,
                feature_views=feature_views,
                feature_refs=feature_refs,
                entity_df=entity_df,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
            )
        return _asof_job(config, plan, feature_refs, full_feature_names)


@dataclass(frozen=True)
class _ViewPlan:
    """What one feature view adds to the entity rows, in Feast's terms."""

    view: FeatureView
    keys: dict[str, str]  # source column -> entity frame column
    features: dict[str, str]  # source column (after field_mapping) -> output column
    ttl: timedelta | None


@dataclass(frozen=True)
class _Plan:
    entity_df: pd.DataFrame
    event_timestamp: str
    views: list[_ViewPlan]


def _plan(
    feature_views: list[FeatureView],
    feature_refs: list[str],
    entity_df: pd.DataFrame | str,
    full_feature_names: bool,
) -> _Plan | None:
    """The ASOF plan of a request, or None where Feast's own join must answer: another kind of
    source or entity frame, an empty frame, a column it lacks, or output names that would meet
    (Feast keeps one of two equal names silently; left to it)."""
    if not isinstance(entity_df, pd.DataFrame) or entity_df.empty:
        return None
    if not all(_is_parquet_file_view(view) for view in feature_views):
        return None
    entity_schema = _get_entity_schema(entity_df)
    try:
        event_timestamp = offline_utils.infer_event_timestamp_from_entity_df(entity_schema)
    except Exception:  # Feast's store raises its own error for it
        return None
    views = [_view_plan(view, feature_refs, full_feature_names) for view in feature_views]
    needed = {column for v in views for column in v.keys.values()}
    outputs = [column for v in views for column in v.features.values()]
    if not needed <= set(entity_df.columns):
        return None
    if len(set(outputs)) < len(outputs) or set(outputs) & {*entity_df.columns, _ROW}:
        return None
    return _Plan(entity_df, event_timestamp, views)


def _is_parquet_file_view(view: Any) -> bool:
    source = getattr(view, "batch_source", None)
    if not isinstance(view, FeatureView) or not isinstance(source, FileSource):
        return False
    # The same test as Feast's duckdb reader for a parquet source.
    return isinstance(source.file_format, ParquetFormat) or (
        source.file_format is None and source.path.endswith(".parquet")
    )


def _any_created_column(feature_views: list[FeatureView]) -> bool:
    return any(
        view.batch_source is not None and view.batch_source.created_timestamp_column
        for view in feature_views
    )


def _view_plan(view: FeatureView, feature_refs: list[str], full_feature_names: bool) -> _ViewPlan:
    """The view's join keys, requested features and their output names, as Feast's ibis join
    (``feast.infra.offline_stores.ibis``) derives them."""
    prefix = f"{view.projection.name_to_use()}:"  # type: ignore[no-untyped-call]
    names = [ref.split(":")[1] for ref in feature_refs if ref.startswith(prefix)]
    base = view.projection.name_alias or view.name  # without the version tag
    keys = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
    features = {name: f"{base}__{name}" if full_feature_names else name for name in names}
    return _ViewPlan(view, dict(keys), features, view.ttl)


def _asof_job(
    config: RepoConfig, plan: _Plan, feature_refs: list[str], full_feature_names: bool
) -> RetrievalJob:
    entity_df, ts = plan.entity_df, plan.event_timestamp
    time_range = _get_entity_df_event_timestamp_range(entity_df, ts)
    # Timestamps given as text become UTC, as in Feast; on a copy, not the caller's frame.
    entity = _to_utc(entity_df.copy(deep=False), ts)
    rows = ibis.memtable(entity.assign(**{_ROW: range(len(entity))}))
    table = rows
    for view in plan.views:
        table = _join_view(table, _view_values(view, str(config.repo_path)), view, ts)
    table = table.order_by(_ROW).drop(_ROW)
    offline = config.offline_store
    return IbisRetrievalJob(
        table,
        [],
        full_feature_names,
        metadata=RetrievalMetadata(
            features=feature_refs,
            keys=list(set(entity_df.columns) - {ts}),
            min_event_timestamp=time_range[0],
            max_event_timestamp=time_range[1],
        ),
        data_source_writer=_write_data_source,
        staging_location=offline.staging_location,
        staging_location_endpoint_override=offline.staging_location_endpoint_override,
        repo_path=str(config.repo_path),
    )


def _view_values(view: _ViewPlan, repo_path: str) -> Table:
    """The view's source as the ASOF join's right side: join keys, event time (UTC, as Feast
    compares it) and requested features under their output names, one row per (keys, event
    time): the one created last."""
    source = view.view.batch_source
    assert source is not None
    table = _read_data_source(source, repo_path)
    for old_name, new_name in source.field_mapping.items():
        if old_name in table.columns:
            table = table.rename({new_name: old_name})
    utc = dt.Timestamp(timezone="UTC")
    keys = list(view.keys)
    columns = {
        **{_key_column(i): table[k] for i, k in enumerate(keys)},
        _VALUE_TS: table[source.timestamp_field].cast(utc),
        **{out: table[name] for name, out in view.features.items()},
    }
    created = source.created_timestamp_column
    if not created:
        # Ties on event time are Feast's arbitrary pick too: nothing to order them by.
        return table.select(**columns)
    table = table.select(**columns, **{created: table[created].cast(utc)})
    group = [*(_key_column(i) for i in range(len(keys))), _VALUE_TS]
    latest = ibis.row_number().over(group_by=group, order_by=ibis.desc(table[created]))
    table = table.mutate(**{_RANK: latest})
    return table.filter(table[_RANK] == 0).drop(_RANK, created)


def _key_column(i: int) -> str:
    return f"__asof_key_{i}"


def _join_view(rows: Table, values: Table, view: _ViewPlan, ts: str) -> Table:
    """``rows`` with the view's features as of each row's time, nulls past its TTL."""
    keys = [
        rows[entity_column] == values[_key_column(i)]
        for i, entity_column in enumerate(view.keys.values())
    ]
    joined = rows.asof_join(values, on=rows[ts] >= values[_VALUE_TS], predicates=keys)
    fresh = _within_ttl(joined, ts, view.ttl)
    features = {
        out: joined[out] if fresh is None else ibis.ifelse(fresh, joined[out], ibis.null())
        for out in view.features.values()
    }
    return joined.select(*rows.columns, **features)


def _within_ttl(joined: Table, ts: str, ttl: timedelta | None) -> BooleanValue | None:
    """Feast's TTL test, ``value time + ttl >= row time``, or None without a TTL (0 or None)."""
    if not ttl:
        return None
    return joined[_VALUE_TS] + ibis.literal(ttl) >= joined[ts]
