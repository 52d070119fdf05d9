"""Data validation: a Great Expectations 1.x suite derived from the declared schema and the
reference data's statistics, plus distribution drift against that reference."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pandas as pd

from aiinfra.data import drift
from aiinfra.data.validation_report import CheckResult, ValidationReport
from aiinfra.project.config import DriftConfig, ValidationConfig
from aiinfra.project.schema import Feature, Schema

# GX logs at INFO, on every import, ~200 lines on how it registers its own docs and metrics;
# they say nothing to a user (a pipeline task's logger is at INFO).
for _chatty in ("great_expectations._docs_decorators", "great_expectations.expectations.registry"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)

INTEGER_TYPES = ["int8", "int16", "int32", "int64", "Int64", "int"]
FLOAT_TYPES = ["float16", "float32", "float64", "Float64", "float", *INTEGER_TYPES]
STRING_TYPES = ["object", "str", "string", "string[python]", "category"]


class DataValidationError(RuntimeError):
    """The data broke the suite (or drifted, in fail mode); the message names every failure."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.summary())


def build_suite(
    schema: Schema,
    config: ValidationConfig,
    reference: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Any:
    """The expectation suite for a training set: the schema's columns, keys, declared bounds
    and categories (else the reference's, learned), freshness, the label, the reference size."""
    import great_expectations as gx

    now = now or datetime.now(UTC)
    e: Any = gx.expectations
    # Collected, then handed to the suite at once: ``add_expectation`` compares each new
    # expectation with every one before it (quadratic) and needs an active context.
    expectations: list[Any] = []
    add = expectations.append
    add(e.ExpectTableColumnsToMatchSet(column_set=list(schema.training_columns), exact_match=True))
    low, high = config.min_rows, config.max_rows
    if reference is not None:  # a training set far smaller or larger than the last is suspect
        low = max(low, int(reference["rows"] * config.min_row_ratio))
        high = min(high, int(reference["rows"] * config.max_row_ratio))
    add(e.ExpectTableRowCountToBeBetween(min_value=low, max_value=high))
    if schema.row_id:
        add(e.ExpectColumnValuesToBeUnique(column=schema.row_id))
    keys = [*schema.entity_names, schema.timestamp]
    add(e.ExpectCompoundColumnsToBeUnique(column_list=keys))
    for column in schema.training_columns:
        add(e.ExpectColumnValuesToNotBeNull(column=column))
    # Freshness: nothing from the future, and the newest row not older than allowed.
    latest = now + timedelta(minutes=config.future_tolerance_minutes)
    add(e.ExpectColumnValuesToBeBetween(column=schema.timestamp, max_value=latest))
    oldest = now - timedelta(days=config.max_age_days)
    add(e.ExpectColumnMaxToBeBetween(column=schema.timestamp, min_value=oldest))
    learned = (reference or {}).get("features", {})
    for f in schema.features:
        _feature_expectations(add, e, f, learned.get(f.name), config)
    learned_label = (reference or {}).get("label", {}).get(schema.label)
    _label_expectations(add, e, schema, learned_label, config)
    return gx.ExpectationSuite(name="training_set", expectations=expectations)


def _feature_expectations(
    add: Any, e: Any, f: Feature, learned: dict[str, Any] | None, config: ValidationConfig
) -> None:
    if f.kind == "categorical":
        add(e.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=STRING_TYPES))
        if f.categories:
            add(e.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.categories)))
        elif learned and learned.get("kind") == "categorical":
            add(e.ExpectColumnValuesToBeInSet(column=f.name, value_set=sorted(learned["shares"])))
        return
    types = INTEGER_TYPES if f.integer else FLOAT_TYPES
    add(e.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=types))
    bounds = _bounds_of(f.min_value, f.max_value, learned, config.learned_range_margin)
    if bounds is not None:
        add(
            e.ExpectColumnValuesToBeBetween(column=f.name, min_value=bounds[0], max_value=bounds[1])
        )


def _bounds_of(
    low: float | None, high: float | None, learned: dict[str, Any] | None, margin: float
) -> tuple[float | None, float | None] | None:
    """Declared bounds; where one is missing, the reference's range widened by ``margin``."""
    if learned and learned.get("kind") == "numeric" and learned.get("edges"):
        lo, hi = learned["edges"][0], learned["edges"][-1]
        pad = (hi - lo) * margin or abs(hi) * margin or margin
        low = low if low is not None else lo - pad
        high = high if high is not None else hi + pad
    return None if low is None and high is None else (low, high)


def _label_expectations(
    add: Any, e: Any, schema: Schema, learned: dict[str, Any] | None, config: ValidationConfig
) -> None:
    label = schema.label
    if schema.task == "regression":
        add(e.ExpectColumnValuesToBeInTypeList(column=label, type_list=FLOAT_TYPES))
        bounds = _bounds_of(None, None, learned, config.learned_range_margin)
        if bounds is not None:
            add(
                e.ExpectColumnValuesToBeBetween(
                    column=label, min_value=bounds[0], max_value=bounds[1]
                )
            )
        return
    add(e.ExpectColumnValuesToBeInSet(column=label, value_set=list(schema.classes)))
    if schema.task == "binary":  # not collapsed to (almost) one class
        positive = schema.classes[1]
        rate = {"min_value": config.min_label_rate, "max_value": config.max_label_rate}
        if positive in (1, True):  # 0/1 labels: the mean is the positive rate
            add(e.ExpectColumnMeanToBeBetween(column=label, **rate))
            return
    # Every class present: a label collapsed to fewer classes cannot be learned.
    add(e.ExpectColumnDistinctValuesToContainSet(column=label, value_set=list(schema.classes)))


def validate(
    frame: pd.DataFrame,
    schema: Schema,
    config: ValidationConfig,
    reference: dict[str, Any] | None = None,
    now: datetime | None = None,
    ignored_columns: tuple[str, ...] = (),
    drift_rule: DriftConfig | None = None,
    expected_change: str = "",
) -> ValidationReport:
    """Run the suite and the drift tests (features and label) on ``frame``; never raises on
    bad data. ``expected_change``: why this run was started, when it was started because the
    data moved (a monitoring rule): then drift is reported, not failed."""
    result = _run_suite(frame, build_suite(schema, config, reference, now))
    mode = config.drift_mode if reference is not None else "off"
    if mode == "fail" and expected_change:
        mode = "warn"
    drifts = []
    if reference is not None and mode != "off" and len(frame):
        drifts = drift.compare(reference, frame, drift_rule or DriftConfig())
    return ValidationReport(
        [_check(r) for r in result.results],
        len(frame),
        drifts,
        mode,
        None if reference is None else int(reference["rows"]),
        ignored_columns,
        expected_change,
    )


# What the report reads of a result: counts, observed values and up to 10 sample values. BASIC
# spares GX the index lists and value counts of its default (SUMMARY): whole-column work for each
# of the ~35 row-level checks.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 10}


def _run_suite(frame: pd.DataFrame, suite: Any) -> Any:
    """Validate ``frame`` against ``suite`` in an ephemeral GX context; nothing is stored.
    Its two settings are process-wide while it lasts (a pandas option, a GX constant): another
    thread writing through chained assignment meanwhile would write to a copy."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # quiet in pipeline logs
    definition = (
        context.data_sources.add_pandas("training")
        .add_dataframe_asset("training_set")
        .add_batch_definition_whole_dataframe("all")
    )
    with _copy_on_write(), _no_batch_fingerprint():
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format=RESULT_FORMAT)


@contextmanager
def _copy_on_write() -> Iterator[None]:
    """GX selects the non-null rows of the WHOLE frame before each row-level check
    (``df[df[column].notnull()]``). Where no row is null, pandas answers with a full copy of the
    frame, or with copy-on-write a lazy one (no check writes to it, and the caller's frame is
    safe from any that would). pandas 3 always copies on write and drops the option."""
    if int(pd.__version__.split(".")[0]) >= 3:
        yield
        return
    with pd.option_context("mode.copy_on_write", True):
        yield


@contextmanager
def _no_batch_fingerprint() -> Iterator[None]:
    """GX hashes every row of a frame under 1 GB into an md5 "fingerprint" of the batch (twice:
    for the batch, then for its validator), kept in batch metadata the report never reads: ~30%
    of the run at 1M rows. Its size limit, set to 0 for the run, turns it off (a GX version
    without that limit keeps hashing)."""
    from great_expectations.execution_engine import pandas_execution_engine as engine

    if not hasattr(engine, "HASH_THRESHOLD"):
        yield
        return
    with patch.object(engine, "HASH_THRESHOLD", 0):
        yield


def _check(result: Any) -> CheckResult:
    cfg = result.expectation_config
    kwargs = dict(cfg.kwargs)
    details: dict[str, Any] = result.result or {}
    exception = (result.exception_info or {}).get("exception_message")
    if exception:
        detail = str(exception).splitlines()[0]
    elif "unexpected_count" in details:
        detail = f"{details['unexpected_count']} unexpected of {details.get('element_count', '?')}"
        if "observed_value" in details:
            detail += f"; observed {details['observed_value']}"
    else:
        detail = f"observed {_short(details.get('observed_value'))}"
        detail += _bounds(kwargs)
    return CheckResult(
        expectation=cfg.type,
        column=kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or None,
        success=bool(result.success),
        detail=detail,
        samples=list(details.get("partial_unexpected_list") or [])[:10],
    )


def _bounds(kwargs: dict[str, Any]) -> str:
    if "min_value" in kwargs or "max_value" in kwargs:
        return f" (expected {kwargs.get('min_value')} .. {kwargs.get('max_value')})"
    return ""


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) < 200 else text[:197] + "..."
