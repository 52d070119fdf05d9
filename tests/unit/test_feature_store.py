"""The loan example's Feast repo through the platform: point-in-time joins checked against an
independent pandas join, online reads, and what the definitions carry."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aiinfra.data import feature_store
from aiinfra.data.asof_store import STORE_TYPE as ASOF_STORE
from aiinfra.project.definition import load_project
from aiinfra.project.schema import Schema
from aiinfra.runtime.api import OnlineFeatures
from examples.loan_default import data as demo_data
from examples.loan_default.data import APPLICANT_ID, EVENT_TIMESTAMP, LOAN_ID, ZIPCODE
from tests.conftest import smoke_config


# Every test runs on each offline store (Feast's file and duckdb ones, and ours answering with
# an ASOF join): the join's semantics must not depend on the store.
@pytest.fixture(
    scope="module", params=["file", "duckdb", ASOF_STORE], ids=["file", "duckdb", "asof"]
)
def store_env(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo: demo_data.DemoData,
):
    config = smoke_config(tmp_path_factory.mktemp("feast"))
    features = config.features.model_copy(update={"offline_store": {"type": request.param}})
    config = config.model_copy(update={"features": features})
    demo.write(config.data_dir)
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    schema = load_project(config).schema
    return config, store, repo, schema


def _features_of(schema: Schema, view: str) -> list[str]:
    return [f.name for f in schema.views()[view]]


def _ttl(repo: feature_store.FeatureRepo, view: str) -> timedelta:
    ttl = repo.views[view].ttl
    assert ttl is not None
    return ttl


def _reference(
    entity_df: pd.DataFrame, table: pd.DataFrame, key: str, columns: list[str], ttl: timedelta
) -> pd.DataFrame:
    """Independent point-in-time join: latest row at or before each timestamp, within the TTL;
    of rows with the same event time, the one created last."""
    right = table[[key, EVENT_TIMESTAMP, "created", *columns]].rename(
        columns={EVENT_TIMESTAMP: "feature_ts"}
    )
    merged = pd.merge_asof(
        entity_df.sort_values(EVENT_TIMESTAMP),
        right.sort_values(["feature_ts", "created"]).drop(columns="created"),
        left_on=EVENT_TIMESTAMP,
        right_on="feature_ts",
        by=key,
        direction="backward",
    )
    stale = merged["feature_ts"] < merged[EVENT_TIMESTAMP] - ttl
    merged.loc[stale, columns] = np.nan
    return merged.drop(columns="feature_ts")


def test_the_offline_store_is_the_one_configured(store_env) -> None:  # type: ignore[no-untyped-def]
    config, store, _, _ = store_env
    assert store.config.offline_store.type == config.features.offline_store["type"]


def test_the_repo_default_is_the_asof_duckdb_store(tmp_path: Path) -> None:
    store = feature_store.open_store(smoke_config(tmp_path))
    assert store.config.offline_store.type == ASOF_STORE


def test_historical_features_are_point_in_time_correct(store_env, demo: demo_data.DemoData) -> None:  # type: ignore[no-untyped-def]
    _, store, repo, schema = store_env
    rng = np.random.default_rng(3)
    entity_df = demo.loans.sample(300, random_state=1)[
        [LOAN_ID, APPLICANT_ID, ZIPCODE, EVENT_TIMESTAMP]
    ]
    # Random timestamps within the data's span, so rows fall between profile snapshots.
    span = (entity_df[EVENT_TIMESTAMP].max() - entity_df[EVENT_TIMESTAMP].min()).total_seconds()
    entity_df[EVENT_TIMESTAMP] = entity_df[EVENT_TIMESTAMP].min() + pd.to_timedelta(
        rng.uniform(0, span, len(entity_df)), unit="s"
    )
    got = feature_store.historical_features(store, schema, entity_df).sort_values(LOAN_ID)
    profile_cols = _features_of(schema, "applicant_profile")
    zip_cols = _features_of(schema, "zipcode_stats")
    assert profile_cols and zip_cols
    want = _reference(
        entity_df, demo.applicants, APPLICANT_ID, profile_cols, _ttl(repo, "applicant_profile")
    )
    want = _reference(
        want, demo.zipcodes, ZIPCODE, zip_cols, _ttl(repo, "zipcode_stats")
    ).sort_values(LOAN_ID)
    assert len(got) == len(want) == 300
    for column in profile_cols + zip_cols:
        left, right = got[column].to_numpy(), want[column].to_numpy()
        if left.dtype.kind in "fi":
            np.testing.assert_allclose(
                left.astype(float), right.astype(float), rtol=1e-9, err_msg=column
            )
        else:
            assert (left == right).all(), column


def test_online_read_returns_the_latest_materialized_row(
    store_env, demo: demo_data.DemoData
) -> None:  # type: ignore[no-untyped-def]
    config, store, repo, schema = store_env
    feature_store.materialize(
        store, repo, schema.feature_service, demo.loans[EVENT_TIMESTAMP].max() + timedelta(days=1)
    )
    applicant = demo.applicants.sort_values(EVENT_TIMESTAMP).groupby(APPLICANT_ID).tail(1)
    row = applicant.iloc[0]
    online = feature_store.online_features(
        store,
        schema,
        [{APPLICANT_ID: int(row[APPLICANT_ID]), ZIPCODE: row[ZIPCODE]}],
    )
    assert online.loc[0, "credit_score"] == row["credit_score"]
    assert online.loc[0, "debt_to_income"] == pytest.approx(row["debt_to_income"])
    keys = {APPLICANT_ID: int(row[APPLICANT_ID]), ZIPCODE: row[ZIPCODE]}
    assert _missing_when_served(config, schema, [keys]) == []


def _missing_when_served(config: Any, schema: Schema, keys: list[dict[str, Any]]) -> list[int]:
    """The rows the serving path reports as unknown (request features filled in)."""
    fill = {
        f.name: (f.categories[0] if f.categories else f.min_value or 0)
        for f in schema.request_features
    }
    _, missing = OnlineFeatures(config, schema).lookup([{**k, **fill} for k in keys])
    return missing


def test_unknown_entity_is_reported_missing(store_env) -> None:  # type: ignore[no-untyped-def]
    config, store, _, schema = store_env
    unknown = {APPLICANT_ID: 999_999, ZIPCODE: "00000"}
    online = feature_store.online_features(store, schema, [unknown])
    assert online.isna().all(axis=None)
    assert _missing_when_served(config, schema, [unknown]) == [0]


def test_definitions_carry_descriptions_and_owners(store_env) -> None:  # type: ignore[no-untyped-def]
    _, store, _, schema = store_env
    views = store.list_feature_views()
    assert {view.name for view in views} == set(schema.views())
    for view in views:
        assert view.description and view.owner
        described = {field.name for field in view.schema if field.description}
        declared = set(_features_of(schema, view.name))
        assert declared <= described, declared - described
    assert store.get_feature_service(schema.feature_service).owner
    # The schema carries the Feast descriptions, for the serving request type and the docs.
    assert all(f.description for f in schema.stored_features)


def test_repo_config_keeps_state_under_home(store_env) -> None:  # type: ignore[no-untyped-def]
    config, _, _, _ = store_env
    rc = feature_store.repo_config(config)
    assert Path(rc.online_store.path).parent == config.feast_dir


def test_ttl_edges_and_entities_without_history_are_kept_with_nulls(  # type: ignore[no-untyped-def]
    store_env, demo: demo_data.DemoData
) -> None:
    """A value is used while entity_ts - TTL <= feature_ts <= entity_ts; rows with no usable
    value are kept, with nulls, in input order (the file store alone would drop some)."""
    _, store, repo, schema = store_env
    ttl = _ttl(repo, "applicant_profile")
    profiles = demo.applicants.sort_values(EVENT_TIMESTAMP)
    first = profiles.groupby(APPLICANT_ID).head(1).iloc[0]
    last = profiles[profiles[APPLICANT_ID] == first[APPLICANT_ID]].iloc[-1]
    second = timedelta(seconds=1)
    stamps = {
        "before any profile": first[EVENT_TIMESTAMP] - second,
        "at the first profile": first[EVENT_TIMESTAMP],
        "at the TTL edge": last[EVENT_TIMESTAMP] + ttl,
        "past the TTL": last[EVENT_TIMESTAMP] + ttl + second,
    }
    entity_df = pd.DataFrame(
        {
            LOAN_ID: range(len(stamps)),
            APPLICANT_ID: int(first[APPLICANT_ID]),
            ZIPCODE: first[ZIPCODE],
            EVENT_TIMESTAMP: list(stamps.values()),
        }
    )
    got = feature_store.historical_features(store, schema, entity_df)
    assert list(got[LOAN_ID]) == list(range(len(stamps)))
    score = dict(zip(stamps, got["credit_score"], strict=True))
    assert pd.isna(score["before any profile"])
    assert score["at the first profile"] == first["credit_score"]
    assert score["at the TTL edge"] == last["credit_score"]
    assert pd.isna(score["past the TTL"])


def test_an_empty_entity_frame_gives_an_empty_training_set(store_env) -> None:  # type: ignore[no-untyped-def]
    _, store, _, schema = store_env
    empty = pd.DataFrame(
        {c: pd.Series(dtype="int64") for c in (LOAN_ID, APPLICANT_ID)}
        | {ZIPCODE: pd.Series(dtype="object")}
        | {EVENT_TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]")}
    )
    got = feature_store.historical_features(store, schema, empty)
    assert got.empty and "credit_score" in got.columns
