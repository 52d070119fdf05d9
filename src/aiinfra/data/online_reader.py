"""Online reads for a long-running service: the feature service resolved once, then each read
goes straight to the online store.

``FeatureStore.get_online_features`` resolves the feature service against the registry on
every call (it deserializes the views from their protos, with runtime type checks): about 99%
of a one-entity read on a 2-core machine. A service reads one feature service for its whole
life, so ``OnlineReader`` resolves it once (views, projections, requested features, key and
value types) and per request only builds the entity keys, calls the provider's
``online_read`` (Feast's online-store API, so sqlite, Redis or any other store behaves as
configured) and turns the values into Python as Feast's ``OnlineResponse`` does. It answers
exactly what ``get_online_features(...).to_df()`` answers, with the same columns, values and
dtypes (tests/unit/test_online_reader.py compares them, missing entities and expired values
included). Feast's online path does not apply a view's TTL (every value is PRESENT however
old), and neither does this reader.

A registry change (a re-apply that changes the service) needs a new reader: the service
builds one when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.value_type import ValueType


@dataclass(frozen=True)
class _ViewRead:
    """What one view of the service reads: its table, features and keys."""

    table: FeatureView
    features: list[str]
    # request field -> (the view's join key, its Feast type)
    keys: dict[str, tuple[str, ValueType]]
    value_types: dict[str, ValueType]


class OnlineReader:
    """Reads a feature service's latest values for entity rows, resolved once."""

    def __init__(self, store: FeatureStore, feature_service: str) -> None:
        from feast.infra.provider import get_provider

        service = store.get_feature_service(feature_service)
        self._config = store.config
        self._provider = get_provider(store.config)
        self._views = [self._resolve(store, p) for p in service.feature_view_projections]
        self.feature_names = [name for view in self._views for name in view.features]
        self.key_names = list(dict.fromkeys(k for view in self._views for k in view.keys))

    @staticmethod
    def _resolve(store: FeatureStore, projection: Any) -> _ViewRead:
        view = store.get_feature_view(projection.name).with_projection(projection)
        features = [f.name for f in projection.features] or [f.name for f in view.features]
        keys: dict[str, tuple[str, ValueType]] = {}
        for name in view.entities:
            entity = store.get_entity(name)
            # A service may rename a view's join key (join_key_map): rows carry the new name.
            request_name = projection.join_key_map.get(entity.join_key, entity.join_key)
            keys[request_name] = (entity.join_key, entity.value_type)
        types = {f.name: f.dtype.to_value_type() for f in view.features if f.name in features}
        return _ViewRead(table=view, features=features, keys=keys, value_types=types)

    def read(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """One row of feature values per entity row, in order; None/NaN where the store has
        no value for the row's entity (what ``get_online_features(...).to_df()`` holds)."""
        return pd.DataFrame(self.columns(rows))

    def columns(self, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """The same values as ``read``, by feature name: a caller that adds its own columns
        builds one frame instead of two and a concatenation."""
        columns: dict[str, list[Any]] = {}
        for view in self._views:
            columns.update(self._read_view(view, rows))
        return {name: columns[name] for name in self.feature_names}

    def _read_view(self, view: _ViewRead, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values

        # One read per distinct entity, as Feast does; rows naming the same one share it.
        positions: dict[tuple[Any, ...], list[int]] = {}
        for i, row in enumerate(rows):
            positions.setdefault(tuple(row[name] for name in view.keys), []).append(i)
        distinct = list(positions)
        key_values = {
            key: python_values_to_proto_values([entity[j] for entity in distinct], kind)
            for j, (key, kind) in enumerate(view.keys.values())
        }
        entity_keys = [
            EntityKey(join_keys=list(key_values), entity_values=[v[i] for v in key_values.values()])
            for i in range(len(distinct))
        ]
        read = self._provider.online_read(
            config=self._config,
            table=view.table,
            entity_keys=entity_keys,
            # A copy: some stores (Redis) append their own fields to the list they are given.
            requested_features=list(view.features),
        )
        columns: dict[str, list[Any]] = {name: [None] * len(rows) for name in view.features}
        for entity, (_, values) in zip(distinct, read, strict=True):
            if not values:
                continue
            for name in view.features:
                value: Value | None = values.get(name)
                if value is None:
                    continue
                python = feast_value_type_to_python_type(value, view.value_types.get(name))
                for i in positions[entity]:
                    columns[name][i] = python
        return columns
