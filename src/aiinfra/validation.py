"""Data validation with Great Expectations 1.x, the suite derived from the declared schema."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from aiinfra import schema
from aiinfra.config import ValidationConfig

INTEGER_TYPES = ["int8", "int16", "int32", "int64", "Int64", "int"]
FLOAT_TYPES = ["float16", "float32", "float64", "Float64", "float", *INTEGER_TYPES]
STRING_TYPES = ["object", "str", "string", "string[python]", "category"]


class DataValidationError(RuntimeError):
    """The data broke the suite; the message names every failed expectation."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.summary())


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    column: str | None
    success: bool
    detail: str
    samples: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass(frozen=True)
class ValidationReport:
    checks: list[CheckResult]
    n_rows: int

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> str:
        passed = len(self.checks) - len(self.failed)
        verdict = "passed" if self.success else "FAILED"
        head = f"validation {verdict}: {passed}/{len(self.checks)} checks on {self.n_rows} rows"
        if self.success:
            return head
        return head + "; failed: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def markdown(self) -> str:
        lines = [
            f"# Data validation: {'passed' if self.success else 'FAILED'}",
            "",
            self.summary(),
            "",
            "| check | result | detail | sample values |",
            "|---|---|---|---|",
        ]
        for c in sorted(self.checks, key=lambda c: c.success):
            samples = ", ".join(map(str, c.samples[:5]))
            lines.append(
                f"| `{c.name}` | {'pass' if c.success else '**FAIL**'} | {c.detail} | {samples} |"
            )
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """Self-contained page (inline style, no external assets): renders offline."""
        rows = "".join(
            f"<tr class={'ok' if c.success else 'bad'}><td><code>{html.escape(c.name)}</code></td>"
            f"<td>{'pass' if c.success else 'FAIL'}</td><td>{html.escape(c.detail)}</td>"
            f"<td>{html.escape(', '.join(map(str, c.samples[:5])))}</td></tr>"
            for c in sorted(self.checks, key=lambda c: c.success)
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Data validation</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}.bad{background:#fdd}.ok{background:#efe}"
            "</style></head><body>"
            f"<h1>Data validation: {'passed' if self.success else 'FAILED'}</h1>"
            f"<p>{html.escape(self.summary())}</p><table><tr><th>check</th><th>result</th>"
            f"<th>detail</th><th>sample values</th></tr>{rows}</table></body></html>"
        )


def build_suite(config: ValidationConfig) -> Any:
    """The expectation suite for a training set, from the schema and the configured bounds."""
    import great_expectations as gx

    e: Any = gx.expectations
    suite = gx.ExpectationSuite(name="training_set")
    add = suite.add_expectation
    add(e.ExpectTableColumnsToMatchSet(column_set=list(schema.TRAINING_COLUMNS), exact_match=True))
    add(e.ExpectTableRowCountToBeBetween(min_value=config.min_rows, max_value=config.max_rows))
    add(e.ExpectColumnValuesToBeUnique(column=schema.LOAN_ID))
    for column in (*schema.ROW_KEYS, *schema.FEATURE_NAMES, schema.LABEL):
        add(e.ExpectColumnValuesToNotBeNull(column=column))
    for f in schema.FEATURES:
        if f.kind == "categorical":
            add(e.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.categories)))
            add(e.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=STRING_TYPES))
        else:
            add(
                e.ExpectColumnValuesToBeBetween(
                    column=f.name, min_value=f.min_value, max_value=f.max_value
                )
            )
            types = INTEGER_TYPES if f.integer else FLOAT_TYPES
            add(e.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=types))
    add(e.ExpectColumnValuesToBeInSet(column=schema.LABEL, value_set=[0, 1]))
    add(
        e.ExpectColumnMeanToBeBetween(
            column=schema.LABEL, min_value=config.min_label_rate, max_value=config.max_label_rate
        )
    )
    return suite


def validate(frame: pd.DataFrame, config: ValidationConfig) -> ValidationReport:
    """Run the suite on ``frame`` in an ephemeral GX context; never raises on bad data."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # quiet in pipeline logs
    batch = (
        context.data_sources.add_pandas("training")
        .add_dataframe_asset("training_set")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(build_suite(config))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="training_set", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame})
    return ValidationReport([_check(r) for r in result.results], len(frame))


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
        column=kwargs.get("column"),
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
