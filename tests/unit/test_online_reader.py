"""The serving path's online reader answers exactly what Feast's get_online_features answers:
same columns, values and dtypes, for known, unknown, repeated and half-known entities, and for
values older than their view's TTL."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from aiinfra.data import feature_store
from aiinfra.data.online_reader import OnlineReader
from aiinfra.project.definition import load_project
from examples.loan_default import data as demo_data
from examples.loan_default.data import APPLICANT_ID, EVENT_TIMESTAMP, ZIPCODE
from tests.conftest import smoke_config

EXPIRED_APPLICANT = 9_000_001


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory, demo: demo_data.DemoData):  # type: ignore[no-untyped-def]
    """The loan example's store, materialized, plus one applicant whose only value is older
    than the view's TTL (written through Feast's own write path)."""
    config = smoke_config(tmp_path_factory.mktemp("online"))
    demo.write(config.data_dir)
    store = feature_store.open_store(config)
    repo = feature_store.repo_objects(config)
    feature_store.apply(store, repo)
    schema = load_project(config).schema
    end = demo.loans[EVENT_TIMESTAMP].max().to_pydatetime() + timedelta(days=1)
    feature_store.materialize(store, repo, schema.feature_service, end)
    ttl = repo.views["applicant_profile"].ttl
    assert ttl is not None
    old = demo.applicants.iloc[[0]].copy()
    old[APPLICANT_ID] = EXPIRED_APPLICANT
    old[EVENT_TIMESTAMP] = datetime.now(UTC) - ttl - timedelta(days=30)
    store.write_to_online_store("applicant_profile", old)
    return store, schema


def _rows(demo: demo_data.DemoData) -> dict[str, list[dict[str, Any]]]:
    known = demo.loans.drop_duplicates(APPLICANT_ID).head(4)
    rows = [{APPLICANT_ID: int(r[APPLICANT_ID]), ZIPCODE: r[ZIPCODE]} for _, r in known.iterrows()]
    return {
        "known": rows,
        "one": rows[:1],
        "unknown": [{APPLICANT_ID: 999_999_999, ZIPCODE: "00000"}],
        "mixed": [rows[0], {APPLICANT_ID: 999_999_999, ZIPCODE: "00000"}, rows[1]],
        "half_known": [{APPLICANT_ID: rows[0][APPLICANT_ID], ZIPCODE: "00000"}],
        "repeated": [rows[2], rows[2], rows[3], rows[2]],
        "expired": [{APPLICANT_ID: EXPIRED_APPLICANT, ZIPCODE: rows[0][ZIPCODE]}],
    }


@pytest.mark.parametrize(
    "case", ["known", "one", "unknown", "mixed", "half_known", "repeated", "expired"]
)
def test_reader_answers_what_get_online_features_answers(
    online: Any, demo: demo_data.DemoData, case: str
) -> None:
    store, schema = online
    rows = _rows(demo)[case]
    reader = OnlineReader(store, schema.feature_service)
    names = [f.name for f in schema.stored_features]
    feast = feature_store.online_features(store, schema, rows)
    ours = reader.read(rows)[names]
    pd.testing.assert_frame_equal(ours, feast, check_exact=True)


def test_reader_sees_values_feast_has(online: Any, demo: demo_data.DemoData) -> None:
    """The comparison above is not between two empty answers."""
    store, schema = online
    rows = _rows(demo)
    reader = OnlineReader(store, schema.feature_service)
    names = [f.name for f in schema.stored_features]
    assert reader.read(rows["known"])[names].notna().all().all()
    assert reader.read(rows["unknown"])[names].isna().all().all()
    half = reader.read(rows["half_known"])
    assert half["credit_score"].notna().all() and half["median_income"].isna().all()
    # Feast's online path does not apply the TTL: the expired applicant's values are served.
    assert reader.read(rows["expired"])["credit_score"].notna().all()


def test_reader_keys_and_features_come_from_the_feature_service(online: Any) -> None:
    store, schema = online
    reader = OnlineReader(store, schema.feature_service)
    assert set(reader.key_names) == {APPLICANT_ID, ZIPCODE}
    assert sorted(reader.feature_names) == sorted(f.name for f in schema.stored_features)
