"""The examples' generators write the same files on any day unless a profile asks for
``end: today``, and every label row has a value of each feature view at its time."""

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from examples.diabetes import diabetes_data
from examples.loan_default import data as loan_data
from examples.wine import wine_data

DAY_ONE, DAY_TWO = date(2026, 11, 30), date(2027, 3, 14)
SMALL_LOANS = {"n_applicants": 50, "n_loans": 200, "n_zipcodes": 5}
# Each example: its generator module and the settings of a small run.
GENERATORS: dict[str, tuple[ModuleType, Mapping[str, object]]] = {
    "loan_default": (loan_data, SMALL_LOANS),
    "wine": (wine_data, {"days": 60}),
    "diabetes": (diabetes_data, {"days": 90}),
}


def _files_on(
    day: date,
    module: ModuleType,
    settings: Mapping[str, object],
    into: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, bytes]:
    """The generator's files as written with the clock at ``day``."""
    monkeypatch.setattr(module, "_utc_today", lambda: day)
    write: Callable[..., object] = module.write
    write(into, **settings)
    return {path.name: path.read_bytes() for path in sorted(into.iterdir())}


@pytest.mark.parametrize("example", sorted(GENERATORS))
def test_default_settings_write_the_same_files_on_any_day(
    example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, settings = GENERATORS[example]
    first = _files_on(DAY_ONE, module, settings, tmp_path / "one", monkeypatch)
    second = _files_on(DAY_TWO, module, settings, tmp_path / "two", monkeypatch)
    assert first and first == second


@pytest.mark.parametrize("example", sorted(GENERATORS))
def test_end_today_follows_the_clock(
    example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock patch reaches the generator: asked for, 'today' moves the data with it."""
    module, settings = GENERATORS[example]
    today = {**settings, "end": "today"}
    first = _files_on(DAY_ONE, module, today, tmp_path / "one", monkeypatch)
    second = _files_on(DAY_TWO, module, today, tmp_path / "two", monkeypatch)
    assert first.keys() == second.keys() and first != second
    for name in first:
        times = [
            pd.read_parquet(tmp_path / run / name)["event_timestamp"] for run in ("one", "two")
        ]
        # The same seeded times, moved with the clock, all before the day's midnight.
        assert (times[1] - times[0] == pd.Timedelta(DAY_TWO - DAY_ONE)).all(), name
        assert times[1].max() < pd.Timestamp(DAY_TWO, tz="UTC"), name


def test_the_end_setting_takes_a_day_from_yaml_or_json() -> None:
    as_yaml = loan_data.DataConfig.model_validate({"end": date(2026, 1, 15)})
    as_json = loan_data.DataConfig.model_validate({"end": "2026-01-15"})
    assert as_yaml.end == as_json.end == date(2026, 1, 15)
    data = loan_data.generate(loan_data.DataConfig(**SMALL_LOANS, end=date(2026, 1, 15)))
    assert data.loans["event_timestamp"].max() < pd.Timestamp("2026-01-15", tz="UTC")
    with pytest.raises(ValueError):
        loan_data.DataConfig.model_validate({"end": "yesterday"})


def _as_of(
    rows: pd.DataFrame, table: pd.DataFrame, key: str, ttl: timedelta, columns: list[str]
) -> pd.DataFrame:
    """Each row's newest value of ``table`` at or before its time, None past the TTL."""
    right = table[[key, "event_timestamp", *columns]].rename(columns={"event_timestamp": "_at"})
    joined = pd.merge_asof(
        rows.sort_values("event_timestamp"),
        right.sort_values("_at"),
        left_on="event_timestamp",
        right_on="_at",
        by=key,
    )
    joined.loc[joined["_at"] < joined["event_timestamp"] - ttl, columns] = None
    return joined.drop(columns="_at")


def test_every_loan_has_every_view_value_at_its_time_at_100k_loans() -> None:
    """At the benchmark's size and longest span: the zipcode snapshots and the applicant
    profiles both have a value, within the views' 400-day TTL, for every loan."""
    config = loan_data.DataConfig(
        n_applicants=25_000, n_zipcodes=200, n_loans=100_000, days=loan_data.MAX_DAYS
    )
    data = loan_data.generate(config)
    ttl = timedelta(days=400)  # feature_repo/definitions.py
    state = _as_of(data.loans, data.applicants, "applicant_id", ttl, ["credit_score", "age"])
    state = _as_of(state, data.zipcodes, "zipcode", ttl, ["median_income"])
    assert len(state) == 100_000
    assert state[["credit_score", "age", "median_income"]].notna().all().all()
    first_week = data.zipcodes["event_timestamp"].min()
    assert first_week <= data.loans["event_timestamp"].min() - timedelta(days=7)
    # (applicant, time) identifies a loan, as validation requires.
    assert not data.loans.duplicated(["applicant_id", "event_timestamp"]).any()


@pytest.mark.parametrize("module", [wine_data, diabetes_data], ids=["wine", "diabetes"])
def test_every_label_row_has_its_features_before_it(module: ModuleType) -> None:
    settings = module.WineSettings() if module is wine_data else module.DiabetesSettings()
    tables = module.tables(settings)
    labels, features = tables[module.LABELS_FILE], tables[module.FEATURES_FILE]
    key = labels.columns[0]
    joined = labels.merge(features[[key, "event_timestamp"]], on=key, suffixes=("", "_features"))
    assert len(joined) == len(labels)
    age = joined["event_timestamp"] - joined["event_timestamp_features"]
    assert (age > timedelta(0)).all() and (age <= timedelta(days=365)).all()  # within the TTL
