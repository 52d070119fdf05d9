import numpy as np
import pandas as pd

from aiinfra.data import demo_data
from aiinfra.project import schema
from aiinfra.project.config import DataConfig


def test_same_seed_same_data() -> None:
    end = demo_data.default_end()
    a = demo_data.generate(DataConfig(n_applicants=50, n_loans=200, n_zipcodes=5), end)
    b = demo_data.generate(DataConfig(n_applicants=50, n_loans=200, n_zipcodes=5), end)
    pd.testing.assert_frame_equal(a.loans, b.loans)
    c = demo_data.generate(DataConfig(n_applicants=50, n_loans=200, n_zipcodes=5, seed=8), end)
    assert not a.loans[schema.LABEL].equals(c.loans[schema.LABEL])


def test_tables_follow_the_schema(demo: demo_data.DemoData) -> None:
    for f in schema.FEATURES:
        table = {
            "request": demo.loans,
            "applicant_profile": demo.applicants,
            "zipcode_stats": demo.zipcodes,
        }[f.origin]
        values = table[f.name]
        if f.kind == "categorical":
            assert set(values.astype(str)) <= set(f.categories), f.name
        else:
            assert values.between(f.min_value, f.max_value).all(), f.name
    assert demo.loans[schema.LOAN_ID].is_unique


def test_every_loan_has_a_profile_before_it(demo: demo_data.DemoData) -> None:
    first = demo.applicants.groupby(schema.APPLICANT_ID)[schema.EVENT_TIMESTAMP].min()
    loans = demo.loans.join(first.rename("first_profile"), on=schema.APPLICANT_ID)
    assert (loans["first_profile"] < loans[schema.EVENT_TIMESTAMP]).all()


def test_label_carries_signal(demo: demo_data.DemoData) -> None:
    rate = demo.loans[schema.LABEL].mean()
    assert 0.1 < rate < 0.5
    # Bigger loans default more: the generator's risk function is real, not noise.
    big = demo.loans["loan_amount"] > demo.loans["loan_amount"].quantile(0.8)
    assert demo.loans.loc[big, schema.LABEL].mean() > rate + 0.03
    assert np.isfinite(demo.loans["loan_amount"]).all()
