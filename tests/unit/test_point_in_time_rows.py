"""Every label row gets every view's value at its time, through Feast, on both offline stores.

The file store keeps one result row per (join keys, event time): two loans from one zipcode in
the same second came back as one, and the other lost its zipcode features (``make bench`` at
100,000 loans stopped at validation on it). Dense data makes such pairs certain at small size.
"""

from pathlib import Path

import pandas as pd
import pytest

from aiinfra.data import feature_store
from aiinfra.data.asof_store import STORE_TYPE as ASOF_STORE
from aiinfra.project.definition import load_project
from examples.loan_default import data as demo_data
from examples.loan_default.data import APPLICANT_ID, EVENT_TIMESTAMP, LOAN_ID, ZIPCODE
from tests.conftest import smoke_config

# Two zipcodes and two days: thousands of loans share a zipcode and a second many times over.
DENSE = demo_data.DataConfig(n_applicants=400, n_zipcodes=2, n_loans=4000, days=2)


@pytest.fixture(scope="module")
def dense() -> demo_data.DemoData:
    data = demo_data.generate(DENSE)
    shared = data.loans.duplicated([ZIPCODE, EVENT_TIMESTAMP], keep=False)
    assert shared.sum() >= 10, "the data no longer has loans sharing a zipcode and a second"
    return data


@pytest.mark.parametrize("offline", ["file", "duckdb", ASOF_STORE])
def test_loans_sharing_a_zipcode_and_a_second_each_get_their_values(
    offline: str, dense: demo_data.DemoData, tmp_path: Path
) -> None:
    config = smoke_config(tmp_path)
    features = config.features.model_copy(update={"offline_store": {"type": offline}})
    config = config.model_copy(update={"features": features})
    dense.write(config.data_dir)
    store = feature_store.open_store(config)
    feature_store.apply(store, feature_store.repo_objects(config))
    schema = load_project(config).schema
    # Shuffled, with an index of its own: the answer must follow the input's row order.
    entity_df = dense.loans[[LOAN_ID, APPLICANT_ID, ZIPCODE, EVENT_TIMESTAMP]].sample(
        frac=1.0, random_state=2
    )
    entity_df.index = entity_df.index + 10_000
    got = feature_store.historical_features(store, schema, entity_df)
    assert list(got[LOAN_ID]) == list(entity_df[LOAN_ID])
    stored = [f.name for f in schema.stored_features]
    assert got[stored].notna().all().all(), got[got[stored].isna().any(axis=1)]
    # And the values are the zipcode's as of each loan (the generator's own as-of join).
    want = pd.merge_asof(
        got.sort_values(EVENT_TIMESTAMP)[[LOAN_ID, ZIPCODE, EVENT_TIMESTAMP]],
        dense.zipcodes[[ZIPCODE, EVENT_TIMESTAMP, "median_income"]].sort_values(EVENT_TIMESTAMP),
        on=EVENT_TIMESTAMP,
        by=ZIPCODE,
    ).set_index(LOAN_ID)["median_income"]
    assert got.set_index(LOAN_ID)["median_income"].equals(want.loc[got[LOAN_ID]])
