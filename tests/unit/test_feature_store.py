from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiinfra.data import demo_data, feature_store
from aiinfra.project import schema
from aiinfra.data.feature_definitions import TTL
from tests.conftest import smoke_config


# Every test runs on both offline stores: the join's semantics must not depend on the store.
@pytest.fixture(scope="module", params=["file", "duckdb"])
def store_env(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo: demo_data.DemoData,
):
    offline = {} if request.param == "file" else {"offline_store": {"type": request.param}}
    config = smoke_config(tmp_path_factory.mktemp("feast"), features=offline)
    demo.write(config.data_dir)
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    return config, store, repo


def _reference(
    entity_df: pd.DataFrame, table: pd.DataFrame, key: str, columns: list[str]
) -> pd.DataFrame:
    """Independent point-in-time join: latest row at or before each timestamp, within the TTL;
    of rows with the same event time, the one created last."""
    right = table[[key, schema.EVENT_TIMESTAMP, "created", *columns]].rename(
        columns={schema.EVENT_TIMESTAMP: "feature_ts"}
    )
    merged = pd.merge_asof(
        entity_df.sort_values(schema.EVENT_TIMESTAMP),
        right.sort_values(["feature_ts", "created"]).drop(columns="created"),
        left_on=schema.EVENT_TIMESTAMP,
        right_on="feature_ts",
        by=key,
        direction="backward",
    )
    stale = merged["feature_ts"] < merged[schema.EVENT_TIMESTAMP] - TTL
    merged.loc[stale, columns] = np.nan
    return merged.drop(columns="feature_ts")


def test_historical_features_are_point_in_time_correct(store_env, demo: demo_data.DemoData) -> None:  # type: ignore[no-untyped-def]
    _, store, repo = store_env
    rng = np.random.default_rng(3)
    entity_df = demo.loans.sample(300, random_state=1)[
        [schema.LOAN_ID, *schema.ENTITY_KEYS, schema.EVENT_TIMESTAMP]
    ]
    # Random timestamps within the data's span, so rows fall between profile snapshots.
    span = (
        entity_df[schema.EVENT_TIMESTAMP].max() - entity_df[schema.EVENT_TIMESTAMP].min()
    ).total_seconds()
    entity_df[schema.EVENT_TIMESTAMP] = entity_df[schema.EVENT_TIMESTAMP].min() + pd.to_timedelta(
        rng.uniform(0, span, len(entity_df)), unit="s"
    )
    got = feature_store.historical_features(store, repo, entity_df).sort_values(schema.LOAN_ID)
    profile_cols = [f.name for f in schema.features_from("applicant_profile")]
    zip_cols = [f.name for f in schema.features_from("zipcode_stats")]
    want = _reference(entity_df, demo.applicants, schema.APPLICANT_ID, profile_cols)
    want = _reference(want, demo.zipcodes, schema.ZIPCODE, zip_cols).sort_values(schema.LOAN_ID)
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
    _config, store, repo = store_env
    feature_store.materialize(store, repo, demo_data.default_end() + timedelta(days=1))
    applicant = (
        demo.applicants.sort_values(schema.EVENT_TIMESTAMP).groupby(schema.APPLICANT_ID).tail(1)
    )
    row = applicant.iloc[0]
    online = feature_store.online_features(
        store,
        repo,
        [{schema.APPLICANT_ID: int(row[schema.APPLICANT_ID]), schema.ZIPCODE: row[schema.ZIPCODE]}],
    )
    assert online.loc[0, "credit_score"] == row["credit_score"]
    assert online.loc[0, "debt_to_income"] == pytest.approx(row["debt_to_income"])
    assert feature_store.missing_online(online) == []


def test_unknown_entity_is_reported_missing(store_env) -> None:  # type: ignore[no-untyped-def]
    _, store, repo = store_env
    online = feature_store.online_features(
        store, repo, [{schema.APPLICANT_ID: 999_999, schema.ZIPCODE: "00000"}]
    )
    assert feature_store.missing_online(online) == [0]


def test_definitions_carry_descriptions_and_owners(store_env) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = store_env
    for view in store.list_feature_views():
        assert view.description and view.owner
        described = {field.name for field in view.schema if field.description}
        declared = {f.name for f in schema.features_from(view.name)}  # type: ignore[arg-type]
        assert declared <= described, declared - described
    assert store.get_feature_service("loan_default_v1").owner


def test_repo_config_keeps_state_under_home(store_env) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = store_env
    rc = feature_store.repo_config(config)
    assert Path(rc.online_store.path).parent == config.feast_dir


def test_ttl_edges_and_entities_without_history_are_kept_with_nulls(  # type: ignore[no-untyped-def]
    store_env, demo: demo_data.DemoData
) -> None:
    """A value is used while entity_ts - TTL <= feature_ts <= entity_ts; rows with no usable
    value are kept, with nulls, in input order (the file store alone would drop some)."""
    _, store, repo = store_env
    profiles = demo.applicants.sort_values(schema.EVENT_TIMESTAMP)
    first = profiles.groupby(schema.APPLICANT_ID).head(1).iloc[0]
    last = profiles[profiles[schema.APPLICANT_ID] == first[schema.APPLICANT_ID]].iloc[-1]
    second = timedelta(seconds=1)
    stamps = {
        "before any profile": first[schema.EVENT_TIMESTAMP] - second,
        "at the first profile": first[schema.EVENT_TIMESTAMP],
        "at the TTL edge": last[schema.EVENT_TIMESTAMP] + TTL,
        "past the TTL": last[schema.EVENT_TIMESTAMP] + TTL + second,
    }
    entity_df = pd.DataFrame(
        {
            schema.LOAN_ID: range(len(stamps)),
            schema.APPLICANT_ID: int(first[schema.APPLICANT_ID]),
            schema.ZIPCODE: first[schema.ZIPCODE],
            schema.EVENT_TIMESTAMP: list(stamps.values()),
        }
    )
    got = feature_store.historical_features(store, repo, entity_df)
    assert list(got[schema.LOAN_ID]) == list(range(len(stamps)))
    score = dict(zip(stamps, got["credit_score"], strict=True))
    assert pd.isna(score["before any profile"])
    assert score["at the first profile"] == first["credit_score"]
    assert score["at the TTL edge"] == last["credit_score"]
    assert pd.isna(score["past the TTL"])


def test_an_empty_entity_frame_gives_an_empty_training_set(store_env) -> None:  # type: ignore[no-untyped-def]
    _, store, repo = store_env
    empty = pd.DataFrame(
        {c: pd.Series(dtype="int64") for c in (schema.LOAN_ID, schema.APPLICANT_ID)}
        | {schema.ZIPCODE: pd.Series(dtype="object")}
        | {schema.EVENT_TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]")}
    )
    got = feature_store.historical_features(store, repo, empty)
    assert got.empty and "credit_score" in got.columns
