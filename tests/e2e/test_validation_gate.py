"""The validation gate in the real pipeline: each corruption of the demo data stops the run at
validate-data with the right check named, and nothing is registered. A label table that no
longer fits the project's definition (a declared column gone, no rows, one class left) stops
before any task runs, naming the setting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pandas as pd
import pytest

from aiinfra.project.config import PlatformConfig
from aiinfra.project.definition import ProjectError
from aiinfra.release import registry
from aiinfra_cli.workflow import run_training
from pipelines.local import PipelineFailed
from tests.conftest import smoke_config
from tests.e2e.conftest import running_platform

pytestmark = pytest.mark.e2e

Tables = dict[str, pd.DataFrame]


def _loans(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Tables], Tables]:
    return lambda t: {**t, "loans": change(t["loans"].copy())}


def _applicants(column: str, value: object) -> Callable[[Tables], Tables]:
    def corrupt(t: Tables) -> Tables:
        a = t["applicants"].copy()
        a[column] = a[column].astype("float64")
        a.loc[a.sample(frac=0.3, random_state=0).index, column] = value
        return {**t, "applicants": a}

    return corrupt


def _late(frac: float, days: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def shift(loans: pd.DataFrame) -> pd.DataFrame:
        rows = loans.sample(frac=frac, random_state=0).index
        loans.loc[rows, "event_timestamp"] += pd.Timedelta(days=days)
        return loans

    return shift


CATALOGUE: dict[str, tuple[Callable[[Tables], Tables], str]] = {
    "nulls": (
        _applicants("credit_score", float("nan")),
        "expect_column_values_to_not_be_null(credit_score)",
    ),
    "out of range": (
        _applicants("credit_score", 2000),
        "expect_column_values_to_be_between(credit_score)",
    ),
    "wrong type": (
        _applicants("credit_score", 650.5),
        "expect_column_values_to_be_in_type_list(credit_score)",
    ),
    "too few rows": (_loans(lambda f: f.head(60)), "expect_table_row_count_to_be_between"),
    "duplicate keys": (
        _loans(lambda f: pd.concat([f, f.head(20)])),
        "expect_column_values_to_be_unique(loan_id)",
    ),
    "future timestamps": (
        _loans(_late(0.05, 30)),
        "expect_column_values_to_be_between(event_timestamp)",
    ),
    "stale data": (_loans(_late(1.0, -200)), "expect_column_max_to_be_between(event_timestamp)"),
    "label rate collapsed": (
        _loans(lambda f: f.assign(defaulted=(f.index % 200 == 0).astype("int64"))),
        "expect_column_mean_to_be_between(defaulted)",
    ),
    "shifted distribution": (
        _loans(lambda f: f.assign(loan_amount=(f["loan_amount"] * 2.5).clip(500, 100_000))),
        "distribution_drift(loan_amount)",
    ),
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformConfig]:
    yield from running_platform(smoke_config(tmp_path_factory.mktemp("gate")))


@pytest.fixture(scope="module")
def clean(platform: PlatformConfig) -> Tables:
    """The clean tables; a first run on them passes validation and sets the reference."""
    outcome = run_training(platform)
    assert outcome.promoted, outcome.describe()
    summary = (outcome.run_dir / "validate-data" / "summary").read_text()
    assert "Data validation: passed" in summary and "## Drift" in summary
    return {t: pd.read_parquet(platform.data_dir / f"{t}.parquet") for t in ("applicants", "loans")}


def _stopped_runs(config: PlatformConfig) -> int:
    c = registry.client(config.mlflow.tracking_uri)
    experiment = c.get_experiment_by_name(config.experiment)
    found = c.search_runs([experiment.experiment_id], "tags.validation = 'failed'")
    return len(found)


def _versions(config: PlatformConfig) -> int:
    c = registry.client(config.mlflow.tracking_uri)
    return len(c.search_model_versions(f"name='{config.model_name}'"))


@contextlib.contextmanager
def _tables(config: PlatformConfig, tables: Tables, clean: Tables) -> Iterator[None]:
    """The platform's tables replaced by ``tables`` for the block, the clean ones after."""
    for name, table in tables.items():
        table.to_parquet(config.data_dir / f"{name}.parquet", index=False)
    try:
        yield
    finally:
        for name, table in clean.items():
            table.to_parquet(config.data_dir / f"{name}.parquet", index=False)


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_corrupted_data_stops_the_pipeline_at_validation(
    platform: PlatformConfig, clean: Tables, case: str
) -> None:
    corrupt, check = CATALOGUE[case]
    before, stopped = _versions(platform), _stopped_runs(platform)
    with _tables(platform, corrupt(clean), clean), pytest.raises(PipelineFailed) as failure:
        run_training(platform)
    assert "run stopped at validate-data" in str(failure.value)
    assert check in str(failure.value), str(failure.value)
    assert _versions(platform) == before
    assert _stopped_runs(platform) == stopped + 1  # the report is in MLflow too


DEFINITION_ERRORS: dict[str, tuple[Callable[[Tables], Tables], str]] = {
    "missing declared column": (
        _loans(lambda f: f.drop(columns="purpose")),
        "project.labels.request_features: column 'purpose' is not in",
    ),
    "wrong type of a declared column": (
        _loans(lambda f: f.assign(loan_amount=f["loan_amount"].astype(str))),
        "'loan_amount' is declared numeric",
    ),
    "empty": (_loans(lambda f: f.head(0)), "has no rows"),
    "one-class label": (_loans(lambda f: f.assign(defaulted=0)), "label 'defaulted' has 1 classes"),
}


@pytest.mark.parametrize("case", list(DEFINITION_ERRORS))
def test_a_label_table_that_breaks_the_definition_stops_before_any_task(
    platform: PlatformConfig, clean: Tables, case: str
) -> None:
    corrupt, message = DEFINITION_ERRORS[case]
    before = _versions(platform)
    runs_before = set(platform.pipeline_root.iterdir())
    with _tables(platform, corrupt(clean), clean), pytest.raises(ProjectError) as failure:
        run_training(platform)
    assert message in str(failure.value), str(failure.value)
    assert _versions(platform) == before
    assert set(platform.pipeline_root.iterdir()) == runs_before  # no task ran


def test_undeclared_columns_are_ignored_and_listed(platform: PlatformConfig, clean: Tables) -> None:
    from aiinfra.steps import check_project

    extra = {"loans": clean["loans"].assign(ssn="000-00-0000", branch="north")}
    with _tables(platform, extra, clean):
        assert check_project(platform).ignored_columns == ("ssn", "branch")
