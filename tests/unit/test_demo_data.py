"""The loan example's generator: seeded, consistent with the project's schema, with signal."""

import numpy as np
import pandas as pd

from aiinfra.project.schema import REQUEST, Schema
from examples.loan_default import data as demo_data
from examples.loan_default.data import APPLICANT_ID, EVENT_TIMESTAMP, LABEL, LOAN_ID, DataConfig


def test_same_seed_same_data() -> None:
    end = demo_data.default_end()
    a = demo_data.generate(DataConfig(n_applicants=50, n_loans=200, n_zipcodes=5), end)
    b = demo_data.generate(DataConfig(n_applicants=50, n_loans=200, n_zipcodes=5), end)
    pd.testing.assert_frame_equal(a.loans, b.loans)
    c = demo_data.generate(DataConfig(n_applicants=50, n_loans=200, n_zipcodes=5, seed=8), end)
    assert not a.loans[LABEL].equals(c.loans[LABEL])


def test_tables_follow_the_schema(demo: demo_data.DemoData, schema: Schema) -> None:
    """Every feature of the project's schema (from its Feast repo and profile) is in the table
    it comes from, within its declared bounds or categories."""
    tables = {
        REQUEST: demo.loans,
        "applicant_profile": demo.applicants,
        "zipcode_stats": demo.zipcodes,
    }
    assert {f.source for f in schema.features} == set(tables)
    for f in schema.features:
        values = tables[f.source][f.name]
        if f.kind == "categorical":
            assert f.categories, f.name
            assert set(values.astype(str)) <= set(f.categories), f.name
        else:
            assert f.min_value is not None and f.max_value is not None, f.name
            assert values.between(f.min_value, f.max_value).all(), f.name
    assert demo.loans[LOAN_ID].is_unique


def test_every_loan_has_a_profile_before_it(demo: demo_data.DemoData) -> None:
    first = demo.applicants.groupby(APPLICANT_ID)[EVENT_TIMESTAMP].min()
    loans = demo.loans.join(first.rename("first_profile"), on=APPLICANT_ID)
    assert (loans["first_profile"] < loans[EVENT_TIMESTAMP]).all()


def test_label_carries_signal(demo: demo_data.DemoData) -> None:
    rate = demo.loans[LABEL].mean()
    assert 0.1 < rate < 0.5
    # Bigger loans default more: the generator's risk function is real, not noise.
    big = demo.loans["loan_amount"] > demo.loans["loan_amount"].quantile(0.8)
    assert demo.loans.loc[big, LABEL].mean() > rate + 0.03
    assert np.isfinite(demo.loans["loan_amount"]).all()
