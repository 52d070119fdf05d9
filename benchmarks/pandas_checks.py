"""The validation suite's checks written as plain vectorized pandas: the benchmark's baseline.

Returns the names of the failed checks in the same form as the GX report, so the benchmark
can also confirm that both give the same verdicts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from aiinfra.project import schema
from aiinfra.project.config import ValidationConfig


def pandas_checks(frame: pd.DataFrame, config: ValidationConfig) -> list[str]:
    failed = []
    if set(frame.columns) != set(schema.TRAINING_COLUMNS):
        failed.append("expect_table_columns_to_match_set")
    if not config.min_rows <= len(frame) <= config.max_rows:
        failed.append("expect_table_row_count_to_be_between")
    if frame[schema.LOAN_ID].duplicated().any():
        failed.append(f"expect_column_values_to_be_unique({schema.LOAN_ID})")
    if frame.duplicated([schema.APPLICANT_ID, schema.EVENT_TIMESTAMP]).any():
        failed.append("expect_compound_columns_to_be_unique(applicant_id,event_timestamp)")
    nulls = frame[[*schema.ROW_KEYS, *schema.FEATURE_NAMES, schema.LABEL]].isna().any()
    failed += [f"expect_column_values_to_not_be_null({c})" for c in nulls[nulls].index]
    now = datetime.now(UTC)
    ts = frame[schema.EVENT_TIMESTAMP]
    if (ts > now + timedelta(minutes=config.future_tolerance_minutes)).any():
        failed.append(f"expect_column_values_to_be_between({schema.EVENT_TIMESTAMP})")
    if ts.max() < now - timedelta(days=config.max_age_days):
        failed.append(f"expect_column_max_to_be_between({schema.EVENT_TIMESTAMP})")
    for f in schema.FEATURES:
        values = frame[f.name]
        if f.kind == "categorical":
            if not values.dropna().isin(f.categories).all():
                failed.append(f"expect_column_values_to_be_in_set({f.name})")
            if values.dtype != object:
                failed.append(f"expect_column_values_to_be_in_type_list({f.name})")
            continue
        if not values.dropna().between(f.min_value, f.max_value).all():
            failed.append(f"expect_column_values_to_be_between({f.name})")
        kind = "iu" if f.integer else "iuf"
        if values.dtype.kind not in kind:
            failed.append(f"expect_column_values_to_be_in_type_list({f.name})")
    label = frame[schema.LABEL]
    if not label.dropna().isin([0, 1]).all():
        failed.append(f"expect_column_values_to_be_in_set({schema.LABEL})")
    if not config.min_label_rate <= label.mean() <= config.max_label_rate:
        failed.append(f"expect_column_mean_to_be_between({schema.LABEL})")
    return failed
