"""What makes the GX suite cheap at 1M rows must not change what it reports: the lighter result
format, copy-on-write and the skipped batch fingerprint give the report of GX's defaults, and
leave the caller's frame and pandas' settings as they were."""

from contextlib import nullcontext
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from great_expectations.execution_engine import pandas_execution_engine

from aiinfra.data import validation
from aiinfra.project.config import ValidationConfig
from aiinfra.project.schema import Schema
from examples.loan_default.data import LOAN_ID

CONFIG = ValidationConfig(min_rows=100)


def _broken(frame: pd.DataFrame) -> pd.DataFrame:
    """Nulls, an out-of-range value, an unknown category and duplicate ids, in a few rows each:
    failed checks with counts and sample values."""
    out = frame.copy()
    rows = out.index[::25]
    out.loc[rows, "annual_income"] = np.nan
    out.loc[rows, "credit_score"] = 2000
    out.loc[rows, "purpose"] = "yacht"
    out.loc[rows[:3], LOAN_ID] = out[LOAN_ID].iloc[-1]
    return out


def _gx_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite run as GX runs it by default: SUMMARY results, no copy-on-write, fingerprint."""
    monkeypatch.setattr(validation, "RESULT_FORMAT", "SUMMARY")
    monkeypatch.setattr(validation, "_copy_on_write", nullcontext)
    monkeypatch.setattr(validation, "_no_batch_fingerprint", nullcontext)


def test_report_is_the_one_of_gx_defaults(
    training_frame: pd.DataFrame, schema: Schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, now = _broken(training_frame), datetime.now(UTC)
    fast = validation.validate(frame, schema, CONFIG, now=now)
    _gx_defaults(monkeypatch)
    default = validation.validate(frame, schema, CONFIG, now=now)
    assert len(fast.failed) == 4, fast.summary()
    assert fast.summary() == default.summary()
    assert fast.markdown() == default.markdown() and fast.html() == default.html()
    credit = next(c for c in fast.failed if c.column == "credit_score")
    assert credit.samples == [2000] * 10  # up to 10 samples kept, as before


def test_caller_frame_and_pandas_settings_are_left_as_they_were(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    frame = _broken(training_frame)
    before = frame.copy()
    copy_on_write = pd.get_option("mode.copy_on_write")
    validation.validate(frame, schema, CONFIG)
    pd.testing.assert_frame_equal(frame, before)
    assert pd.get_option("mode.copy_on_write") == copy_on_write
    assert pandas_execution_engine.HASH_THRESHOLD == 1e9  # GX's own limit, restored


def test_the_frame_is_not_hashed_for_a_fingerprint(
    training_frame: pd.DataFrame, schema: Schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[int] = []

    def spy(df: pd.DataFrame) -> str:
        hashed.append(len(df))
        return "fingerprint"

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", spy)
    report = validation.validate(training_frame, schema, CONFIG)
    assert report.success, report.summary()
    assert hashed == []
    _gx_defaults(monkeypatch)  # the spy does see GX's default run hash the frame
    validation.validate(training_frame, schema, CONFIG)
    assert hashed and set(hashed) == {len(training_frame)}
