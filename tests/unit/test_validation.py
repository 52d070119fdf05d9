from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from aiinfra.data.drift import build_profile
from aiinfra.data.validation import DataValidationError, validate
from aiinfra.project.config import ValidationConfig
from aiinfra.project.schema import Schema
from examples.loan_default.data import APPLICANT_ID, EVENT_TIMESTAMP, LABEL, LOAN_ID

CONFIG = ValidationConfig(min_rows=100)


def _set(column: str, value: object, rows: int = 5) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        if isinstance(value, str) and out[column].dtype != object:
            out[column] = out[column].astype(object)
        out.loc[out.index[:rows], column] = value
        return out

    return corrupt


# Each corruption and the check that must name it.
CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "null feature": (
        _set("annual_income", np.nan),
        "expect_column_values_to_not_be_null(annual_income)",
    ),
    "out of range": (
        _set("credit_score", 2000),
        "expect_column_values_to_be_between(credit_score)",
    ),
    "unknown category": (_set("purpose", "yacht"), "expect_column_values_to_be_in_set(purpose)"),
    "wrong type": (_set("age", "old"), "expect_column_values_to_be_in_type_list(age)"),
    "missing column": (
        lambda f: f.drop(columns="debt_to_income"),
        "expect_table_columns_to_match_set",
    ),
    "extra column": (lambda f: f.assign(ssn="000"), "expect_table_columns_to_match_set"),
    "too few rows": (lambda f: f.head(10), "expect_table_row_count_to_be_between"),
    "duplicate loans": (
        lambda f: pd.concat([f, f.head(3)], ignore_index=True),
        "expect_column_values_to_be_unique(loan_id)",
    ),
    "one-class label": (
        lambda f: f.assign(**{LABEL: 0}),
        "expect_column_mean_to_be_between(defaulted)",
    ),
    "label not binary": (_set(LABEL, 2), "expect_column_values_to_be_in_set(defaulted)"),
}


def test_clean_training_set_passes(training_frame: pd.DataFrame, schema: Schema) -> None:
    report = validate(training_frame, schema, CONFIG)
    assert report.success, report.summary()
    assert len(report.checks) > 30


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_is_caught_and_named(
    training_frame: pd.DataFrame, schema: Schema, case: str
) -> None:
    corrupt, expected = CORRUPTIONS[case]
    report = validate(corrupt(training_frame), schema, CONFIG)
    assert not report.success
    assert expected in [c.name for c in report.failed], report.summary()
    assert expected in report.summary() and expected in report.markdown()


def test_report_carries_counts_and_samples(training_frame: pd.DataFrame, schema: Schema) -> None:
    report = validate(_set("credit_score", 2000, rows=7)(training_frame), schema, CONFIG)
    check = next(c for c in report.failed if c.column == "credit_score")
    assert check.detail.startswith("7 unexpected") and 2000 in check.samples
    page = report.html()
    assert "<script" not in page and "http" not in page and "credit_score" in page


def test_error_message_names_the_failed_checks(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    report = validate(_set("credit_score", 2000)(training_frame), schema, CONFIG)
    assert "expect_column_values_to_be_between(credit_score)" in str(DataValidationError(report))


def _shift(schema: Schema, column: str, factor: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        f = schema.feature(column)
        return frame.assign(**{column: (frame[column] * factor).clip(f.min_value, f.max_value)})

    return corrupt


def test_freshness_future_and_stale_rows_are_named(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    future = training_frame.copy()
    newest = future[EVENT_TIMESTAMP].nlargest(3).index  # whatever order the rows come in
    future.loc[newest, EVENT_TIMESTAMP] += pd.Timedelta(days=30)
    report = validate(future, schema, CONFIG)
    assert "expect_column_values_to_be_between(event_timestamp)" in [c.name for c in report.failed]
    stale = training_frame.assign(
        **{EVENT_TIMESTAMP: training_frame[EVENT_TIMESTAMP] - pd.Timedelta(days=90)}
    )
    report = validate(stale, schema, CONFIG)
    assert "expect_column_max_to_be_between(event_timestamp)" in [c.name for c in report.failed]


def test_same_applicant_twice_at_the_same_time_is_a_duplicate(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    twin = training_frame.head(1).assign(**{LOAN_ID: 10**9})
    report = validate(pd.concat([training_frame, twin], ignore_index=True), schema, CONFIG)
    failed = [c.name for c in report.failed]
    # Every entity key of the label table together with the event time (applicant, zipcode).
    keys = ",".join([*schema.entity_names, EVENT_TIMESTAMP])
    assert APPLICANT_ID in schema.entity_names
    assert f"expect_compound_columns_to_be_unique({keys})" in failed


def test_drift_against_the_reference_fails_the_gate_and_is_reported(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    reference = build_profile(training_frame, schema)
    clean = validate(training_frame, schema, CONFIG, reference)
    assert clean.success and clean.drift and not clean.drifted, clean.summary()
    shifted = validate(
        _shift(schema, "loan_amount", 2.5)(training_frame), schema, CONFIG, reference
    )
    assert not shifted.success
    assert "distribution_drift(loan_amount)" in [c.name for c in shifted.failed]
    assert [d.feature for d in shifted.drifted] == ["loan_amount"]
    assert "loan_amount" in shifted.html() and "PSI" in shifted.markdown()


def test_drift_in_warn_mode_passes_but_says_so(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    warn = CONFIG.model_copy(update={"drift_mode": "warn"})
    shifted = _shift(schema, "loan_amount", 2.5)(training_frame)
    report = validate(shifted, schema, warn, build_profile(training_frame, schema))
    assert report.success and "drift (warning only): loan_amount" in report.summary()


def test_a_run_started_because_the_data_moved_reports_drift_without_failing(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    shifted = _shift(schema, "loan_amount", 2.5)(training_frame)
    reason = "2 features drifted in v3's window"
    report = validate(
        shifted, schema, CONFIG, build_profile(training_frame, schema), expected_change=reason
    )
    assert report.success and [d.feature for d in report.drifted] == ["loan_amount"]
    assert reason in report.markdown()


def test_the_label_is_checked_like_a_feature(training_frame: pd.DataFrame, schema: Schema) -> None:
    """Its rate passes the 0.01-0.99 bounds, but it is not the reference's distribution."""
    rng = np.random.default_rng(3)
    flipped = training_frame.assign(
        **{schema.label: (rng.random(len(training_frame)) < 0.73).astype("int64")}
    )
    report = validate(flipped, schema, CONFIG, build_profile(training_frame, schema))
    assert "label_drift(defaulted)" in [c.name for c in report.failed], report.summary()


def test_row_count_is_bounded_by_the_reference(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    reference = {**build_profile(training_frame, schema), "rows": len(training_frame) * 100}
    report = validate(training_frame, schema, CONFIG, reference)
    assert "expect_table_row_count_to_be_between" in [c.name for c in report.failed]


def test_freshness_is_judged_at_the_time_given(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    newest = training_frame[EVENT_TIMESTAMP].max().to_pydatetime()
    at_build = validate(training_frame, schema, CONFIG, now=newest)
    assert at_build.success, at_build.summary()
    later = validate(training_frame, schema, CONFIG, now=newest + pd.Timedelta(days=90))
    assert "expect_column_max_to_be_between(event_timestamp)" in [c.name for c in later.failed]
    earlier = validate(training_frame, schema, CONFIG, now=newest - pd.Timedelta(days=1))
    failed = [c.name for c in earlier.failed]
    assert "expect_column_values_to_be_between(event_timestamp)" in failed  # from the future


def test_undeclared_label_columns_are_listed_not_failed(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    report = validate(training_frame, schema, CONFIG, ignored_columns=("branch_code",))
    assert report.success and report.ignored_columns == ("branch_code",)
    assert "branch_code" in report.markdown() and "branch_code" in report.html()
