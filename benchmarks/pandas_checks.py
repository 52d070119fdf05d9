"""The validation suite's checks written as plain vectorized pandas: the benchmark's baseline.

The same checks as :func:`aiinfra.data.validation.build_suite` without a reference (columns,
row count, keys, nulls, freshness, declared bounds and categories, the label), derived from
the same schema. Returns the names of the failed checks in the same form as the GX report, so
the benchmark can also confirm that both give the same verdicts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from aiinfra.data.validation import FLOAT_TYPES, INTEGER_TYPES, STRING_TYPES
from aiinfra.project.config import ValidationConfig
from aiinfra.project.schema import Schema


def pandas_checks(frame: pd.DataFrame, schema: Schema, config: ValidationConfig) -> list[str]:
    failed = []
    if set(frame.columns) != set(schema.training_columns):
        failed.append("expect_table_columns_to_match_set")
    if not config.min_rows <= len(frame) <= config.max_rows:
        failed.append("expect_table_row_count_to_be_between")
    if schema.row_id and frame[schema.row_id].duplicated().any():
        failed.append(f"expect_column_values_to_be_unique({schema.row_id})")
    keys = [*schema.entity_names, schema.timestamp]
    if frame.duplicated(keys).any():
        failed.append(f"expect_compound_columns_to_be_unique({','.join(keys)})")
    nulls = frame[list(schema.training_columns)].isna().any()
    failed += [f"expect_column_values_to_not_be_null({c})" for c in nulls[nulls].index]
    now = datetime.now(UTC)
    ts = frame[schema.timestamp]
    if (ts > now + timedelta(minutes=config.future_tolerance_minutes)).any():
        failed.append(f"expect_column_values_to_be_between({schema.timestamp})")
    if ts.max() < now - timedelta(days=config.max_age_days):
        failed.append(f"expect_column_max_to_be_between({schema.timestamp})")
    for f in schema.features:
        values = frame[f.name]
        if f.kind == "categorical":
            if not _holds_strings(values):
                failed.append(f"expect_column_values_to_be_in_type_list({f.name})")
            if f.categories and not values.dropna().isin(f.categories).all():
                failed.append(f"expect_column_values_to_be_in_set({f.name})")
            continue
        if values.dtype.name not in (INTEGER_TYPES if f.integer else FLOAT_TYPES):
            failed.append(f"expect_column_values_to_be_in_type_list({f.name})")
        if f.min_value is None and f.max_value is None:
            continue
        low = f.min_value if f.min_value is not None else -float("inf")
        high = f.max_value if f.max_value is not None else float("inf")
        if not values.dropna().between(low, high).all():
            failed.append(f"expect_column_values_to_be_between({f.name})")
    failed += _label_checks(frame[schema.label], schema, config)
    return failed


def _holds_strings(values: pd.Series) -> bool:
    """A string dtype and, in an object column, every value a ``str``: GX checks each value of
    an object column against the type list, not only its dtype."""
    if values.dtype.name not in STRING_TYPES:
        return False
    if values.dtype != object:
        return True
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")  # one C pass


def _label_checks(label: pd.Series, schema: Schema, config: ValidationConfig) -> list[str]:
    name = schema.label
    if schema.task == "regression":
        ok = label.dtype.name in FLOAT_TYPES
        return [] if ok else [f"expect_column_values_to_be_in_type_list({name})"]
    failed = []
    if not label.dropna().isin(schema.classes).all():
        failed.append(f"expect_column_values_to_be_in_set({name})")
    if schema.task == "binary" and schema.classes[1] in (1, True):
        if not config.min_label_rate <= label.mean() <= config.max_label_rate:
            failed.append(f"expect_column_mean_to_be_between({name})")
    elif not set(schema.classes) <= set(label.dropna().unique()):
        failed.append(f"expect_column_distinct_values_to_contain_set({name})")
    return failed
