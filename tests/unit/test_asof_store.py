"""The ASOF offline store answers as Feast's duckdb store does, through Feast's own API.

A small Feast repo, written here, holds the cases the two joins could disagree on: values sharing
an event time (the one created last wins), TTL edges, unknown entities, duplicate entity rows,
two views on different keys, a feature service renaming a view and its join key, and full
feature names. Each request goes to both stores; the frames must be equal, dtypes included.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64, String

from aiinfra.data.asof_store import STORE_TYPE

T0 = pd.Timestamp("2024-03-01", tz="UTC")
DRIVER_TTL = timedelta(days=2)
DRIVERS = [1, 2, 3]
ZONES = ["north", "south"]


def _at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def _driver_rows() -> pd.DataFrame:
    """Driver snapshots; driver 1 has three values at hour 10, one with no created time, the
    last created wins; a fourth at hour 20 created before them (creation orders values of one
    event time only)."""
    rows = [
        # driver, event hour, created hour, rating, trips, tier
        (1, 0, 0, 4.0, 10, "bronze"),
        (1, 10, 11, 4.1, 11, "silver"),
        (1, 10, None, 4.9, 19, "none"),
        (1, 10, 12, 4.2, 12, "gold"),
        (1, 20, 5, 4.3, 13, "gold"),
        (2, 5, 5, 3.0, 20, "bronze"),
        (2, 5, 6, 3.5, 21, "silver"),
        (3, 30, 30, 5.0, 30, "gold"),
    ]
    frame = pd.DataFrame(
        rows, columns=["driver_id", "hour", "created_hour", "rating", "raw_trips", "tier"]
    )
    return pd.DataFrame(
        {
            "driver_id": frame["driver_id"].astype("int64"),
            "event_time": frame["hour"].map(_at),
            "created": pd.to_datetime(frame["created_hour"].map(_at, na_action="ignore"), utc=True),
            "rating": frame["rating"],
            "raw_trips": frame["raw_trips"].astype("int64"),  # field_mapping -> trips
            "tier": frame["tier"],
        }
    )


def _zone_rows() -> pd.DataFrame:
    """Zone demand, no created column and no TTL: any earlier value counts. Its times are
    naive (UTC, as Feast reads them)."""
    return pd.DataFrame(
        {
            "zone": ["north", "north", "south"],
            "event_timestamp": [_at(h).tz_localize(None) for h in (-1000, 15, 1)],
            "demand": [0.5, 0.7, 0.2],
        }
    )


def _weather_rows() -> pd.DataFrame:
    """A view without entities: one value for every row."""
    return pd.DataFrame({"event_timestamp": [_at(0), _at(25)], "rain_mm": [1.5, 0.0]})


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FeatureStore]:
    """One Feast repo, applied once, read through Feast's duckdb store and the ASOF store."""
    repo = tmp_path_factory.mktemp("asof_repo")
    _driver_rows().to_parquet(repo / "drivers.parquet")
    _zone_rows().to_parquet(repo / "zones.parquet")
    _weather_rows().to_parquet(repo / "weather.parquet")
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    zone = Entity(name="zone", join_keys=["zone"], value_type=ValueType.STRING)
    drivers = FeatureView(
        name="driver_stats",
        entities=[driver],
        ttl=DRIVER_TTL,
        schema=[
            Field(name="driver_id", dtype=Int64),
            Field(name="rating", dtype=Float64),
            Field(name="trips", dtype=Int64),
            Field(name="tier", dtype=String),
        ],
        source=FileSource(
            path=str(repo / "drivers.parquet"),
            timestamp_field="event_time",
            created_timestamp_column="created",
            field_mapping={"raw_trips": "trips"},
        ),
    )
    zones = FeatureView(
        name="zone_demand",
        entities=[zone],
        ttl=timedelta(0),
        schema=[Field(name="zone", dtype=String), Field(name="demand", dtype=Float64)],
        source=FileSource(path=str(repo / "zones.parquet"), timestamp_field="event_timestamp"),
    )
    weather = FeatureView(
        name="weather",
        entities=[],
        ttl=timedelta(hours=24),
        schema=[Field(name="rain_mm", dtype=Float64)],
        source=FileSource(path=str(repo / "weather.parquet"), timestamp_field="event_timestamp"),
    )
    doubled = on_demand_feature_view(
        name="doubled_rating",
        sources=[drivers],
        schema=[Field(name="rating_x2", dtype=Float64)],
        mode="pandas",
    )(_doubled_rating)
    # Feast's own example of a projection: one view twice, renamed, on other entity columns.
    trip = FeatureService(
        name="trip",
        features=[
            drivers[["rating", "tier"]]
            .with_name("pickup")
            .with_join_key_map({"driver_id": "pickup_driver"}),
            drivers[["rating"]]
            .with_name("dropoff")
            .with_join_key_map({"driver_id": "dropoff_driver"}),
            zones,
        ],
    )
    opened = {
        name: FeatureStore(config=_config(repo, offline))
        for name, offline in (("duckdb", "duckdb"), ("asof", STORE_TYPE))
    }
    opened["duckdb"].apply([driver, zone, drivers, zones, weather, doubled, trip])
    return opened


def _doubled_rating(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"rating_x2": inputs["rating"] * 2})


def _config(repo: Path, offline: str) -> RepoConfig:
    return RepoConfig(
        project="asof_test",
        provider="local",
        registry=str(repo / "registry.db"),
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        offline_store={"type": offline},
        entity_key_serialization_version=3,
        repo_path=repo,
    )


def _entity_rows() -> pd.DataFrame:
    """Rows in no time order, with every edge case named; ``row`` numbers them."""
    cases = [
        # driver, zone, hour
        (1, "north", -1),  # before any driver value; zone's old value (no TTL)
        (1, "north", 10),  # two values at hour 10: the one created later
        (1, "north", 10),  # a duplicate row: answered twice
        (1, "south", 15),
        (1, "north", 20 + 48),  # exactly the TTL after the last value: still valid
        (1, "north", 20 + 48 + 1 / 3600),  # a second past the TTL: null
        (2, "south", 5),  # at the value's own time, tie broken by created
        (2, "east", 6),  # unknown zone
        (9, "north", 12),  # unknown driver
        (3, "south", 29),  # before driver 3's first value
        (3, "south", 31),
    ]
    frame = pd.DataFrame(cases, columns=["driver_id", "zone", "hour"])
    return pd.DataFrame(
        {
            "row": np.arange(len(frame)),
            "driver_id": frame["driver_id"].astype("int64"),
            "zone": frame["zone"],
            "event_timestamp": frame["hour"].map(_at),
        }
    ).sample(frac=1.0, random_state=4)


def _both(
    stores: dict[str, FeatureStore], entity_df: pd.DataFrame, features: Any, **kwargs: Any
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Each store's answer in ``row`` order (Feast's store keeps no order), and the SQL the
    ASOF store ran."""
    answers = {}
    sql = ""
    for name, store in stores.items():
        job = store.get_historical_features(entity_df=entity_df.copy(), features=features, **kwargs)
        answers[name] = job.to_df().sort_values("row", ignore_index=True)
        if name == "asof":
            sql = str(ibis.to_sql(job.table)) if hasattr(job, "table") else ""
    return answers["duckdb"], answers["asof"], sql


DRIVER_AND_ZONE = [
    "driver_stats:rating",
    "driver_stats:trips",
    "driver_stats:tier",
    "zone_demand:demand",
    "weather:rain_mm",
]


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_two_views_agree_with_feast_duckdb_store(
    stores: dict[str, FeatureStore], full_feature_names: bool
) -> None:
    entity_df = _entity_rows()
    want, got, sql = _both(
        stores, entity_df, DRIVER_AND_ZONE, full_feature_names=full_feature_names
    )
    assert "ASOF LEFT JOIN" in sql
    pd.testing.assert_frame_equal(got, want)
    prefix = "driver_stats__" if full_feature_names else ""
    rating = got.set_index("row")[f"{prefix}rating"]
    assert rating[1] == rating[2] == 4.2  # created last among the hour-10 values
    assert rating[4] == 4.3 and pd.isna(rating[5])  # TTL edge, one second past it
    assert rating[6] == 3.5 and pd.isna(rating[8]) and pd.isna(rating[9])
    assert got.set_index("row")[f"{prefix}trips"][1] == 12  # through the field mapping
    rain = got.set_index("row")[f"{prefix.replace('driver_stats', 'weather')}rain_mm"]
    assert pd.isna(rain[0]) and rain[1] == 1.5 and pd.isna(rain[4])  # no entity; 24 h TTL


def test_rows_come_back_in_input_order(stores: dict[str, FeatureStore]) -> None:
    entity_df = _entity_rows()
    job = stores["asof"].get_historical_features(entity_df=entity_df, features=DRIVER_AND_ZONE)
    assert list(job.to_df()["row"]) == list(entity_df["row"])


def test_timestamps_in_another_timezone_agree(stores: dict[str, FeatureStore]) -> None:
    entity_df = _entity_rows()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].dt.tz_convert("America/New_York")
    want, got, sql = _both(stores, entity_df, DRIVER_AND_ZONE)
    assert "ASOF LEFT JOIN" in sql
    pd.testing.assert_frame_equal(got, want)
    assert got["rating"].notna().sum() >= 5


def test_timestamps_as_text_agree(stores: dict[str, FeatureStore]) -> None:
    entity_df = _entity_rows()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].astype(str)
    want, got, sql = _both(stores, entity_df, DRIVER_AND_ZONE)
    assert "ASOF LEFT JOIN" in sql
    pd.testing.assert_frame_equal(got, want)


def test_a_service_renaming_views_and_join_keys_agrees(stores: dict[str, FeatureStore]) -> None:
    rows = _entity_rows()
    # Each trip: the row's driver picks up, the next driver (some unknown) drops off.
    entity_df = rows.rename(columns={"driver_id": "pickup_driver"}).assign(
        dropoff_driver=(rows["driver_id"] % 3 + 1).where(rows["row"] % 4 != 0, 7)
    )
    # Both renamed views give a "rating": full names are what tells them apart (Feast's rule).
    service = stores["asof"].get_feature_service("trip")
    want, got, sql = _both(stores, entity_df, service, full_feature_names=True)
    assert "ASOF LEFT JOIN" in sql
    pd.testing.assert_frame_equal(got, want)
    assert {"pickup__rating", "dropoff__rating", "zone_demand__demand"} <= set(got.columns)
    assert got["pickup__rating"].notna().any() and got["dropoff__rating"].notna().any()


def test_created_timestamp_cutoff_is_left_to_feast(stores: dict[str, FeatureStore]) -> None:
    """A cutoff on the created time is beyond an ASOF join: Feast's join answers it."""
    want, got, sql = _both(
        stores, _entity_rows(), DRIVER_AND_ZONE, filter_by_created_timestamp=True
    )
    assert "ASOF" not in sql
    pd.testing.assert_frame_equal(got, want)
    # Driver 1 at hour 10: both hour-10 values were created later, so the hour-0 one.
    assert got.set_index("row")["rating"][1] == 4.0


def test_on_demand_views_are_left_to_feast(stores: dict[str, FeatureStore]) -> None:
    want, got, sql = _both(stores, _entity_rows(), ["doubled_rating:rating_x2", *DRIVER_AND_ZONE])
    assert "ASOF" not in sql
    pd.testing.assert_frame_equal(got, want)
    assert (got["rating_x2"].dropna() == 2 * got["rating"].dropna()).all()
