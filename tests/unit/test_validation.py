from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from aiinfra import schema
from aiinfra.config import ValidationConfig
from aiinfra.validation import DataValidationError, validate

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
        lambda f: f.assign(**{schema.LABEL: 0}),
        "expect_column_mean_to_be_between(defaulted)",
    ),
    "label not binary": (_set(schema.LABEL, 2), "expect_column_values_to_be_in_set(defaulted)"),
}


def test_clean_training_set_passes(training_frame: pd.DataFrame) -> None:
    report = validate(training_frame, CONFIG)
    assert report.success, report.summary()
    assert len(report.checks) > 30


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_is_caught_and_named(training_frame: pd.DataFrame, case: str) -> None:
    corrupt, expected = CORRUPTIONS[case]
    report = validate(corrupt(training_frame), CONFIG)
    assert not report.success
    assert expected in [c.name for c in report.failed], report.summary()
    assert expected in report.summary() and expected in report.markdown()


def test_report_carries_counts_and_samples(training_frame: pd.DataFrame) -> None:
    report = validate(_set("credit_score", 2000, rows=7)(training_frame), CONFIG)
    check = next(c for c in report.failed if c.column == "credit_score")
    assert check.detail.startswith("7 unexpected") and 2000 in check.samples
    page = report.html()
    assert "<script" not in page and "http" not in page and "credit_score" in page


def test_error_message_names_the_failed_checks(training_frame: pd.DataFrame) -> None:
    report = validate(_set("credit_score", 2000)(training_frame), CONFIG)
    assert "expect_column_values_to_be_between(credit_score)" in str(DataValidationError(report))
