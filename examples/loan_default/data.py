"""Seeded generator of the demo problem: will a loan application default?

Three tables, as a lending team would have them:

- ``applicants.parquet``: profile snapshots per applicant (the bureau refreshes them), the
  source of the ``applicant_profile`` feature view;
- ``zipcodes.parquet``: weekly statistics per zipcode, the ``zipcode_stats`` view;
- ``loans.parquet``: one row per application with the request-time fields and the label,
  the entity frame of point-in-time training sets.

The label depends on the features through a known, partly non-linear risk function, so a
model that learns more of it scores measurably better.

The tables end at a fixed day (``DEMO_END``) unless the settings name another ``end``: the
same settings write the same files on any day. ``end: today`` (midnight UTC of the clock's day)
is for profiles whose validation checks freshness against the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

TABLES = ("applicants", "zipcodes", "loans")
# The example's names: its Feast repo (feature_repo/definitions.py) and profiles use the same.
LOAN_ID, APPLICANT_ID, ZIPCODE = "loan_id", "applicant_id", "zipcode"
EVENT_TIMESTAMP, LABEL = "event_timestamp", "defaulted"
PURPOSES = ("debt_consolidation", "home_improvement", "car", "education", "medical", "other")
HOME_OWNERSHIP = ("rent", "own", "mortgage")
# The demo's fixed last day: the tables end at its midnight UTC unless the settings say otherwise.
DEMO_END = date(2026, 11, 1)
# Every value is younger than the views' TTL (400 days in feature_repo/definitions.py) at every
# loan: the oldest first profile is 59 days before the window opens.
MAX_DAYS = 330


class DataConfig(BaseModel):
    """Size and seed of the generated tables (the profile's ``project.generator.settings``)."""

    model_config = ConfigDict(extra="forbid")

    n_applicants: int = Field(2000, ge=10)
    n_zipcodes: int = Field(50, ge=2)
    n_loans: int = Field(8000, ge=50)
    days: int = Field(120, ge=2, le=MAX_DAYS, description="span of the loans, ending at `end`")
    end: date | Literal["today"] = Field(
        DEMO_END, description="the tables end at this day's midnight UTC; 'today': the clock's"
    )
    seed: int = 7


@dataclass(frozen=True)
class DemoData:
    applicants: pd.DataFrame
    zipcodes: pd.DataFrame
    loans: pd.DataFrame

    def write(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in TABLES:
            path = directory / f"{name}.parquet"
            getattr(self, name).to_parquet(path, index=False)
            paths[name] = path
        return paths


def _utc_today() -> date:
    return datetime.now(UTC).date()


def end_time(end: date | Literal["today"]) -> datetime:
    """Midnight UTC of the ``end`` setting's day; the clock is read only for 'today'."""
    day = end if isinstance(end, date) else _utc_today()  # 'today'
    return datetime.combine(day, time(), tzinfo=UTC)


def default_end() -> datetime:
    """Where the tables of the default settings end."""
    return end_time(DataConfig().end)


def generate(config: DataConfig, end: datetime | None = None) -> DemoData:
    """The three tables; ``end`` overrides the settings' end (a test's fixed clock)."""
    end = end or end_time(config.end)
    start = end - timedelta(days=config.days)
    rng = np.random.default_rng(config.seed)
    zipcodes = _zipcodes(rng, config, start, end)
    applicants = _applicants(rng, config, start, end, zipcodes)
    loans = _loans(rng, config, start, end, applicants, zipcodes)
    return DemoData(applicants=applicants, zipcodes=zipcodes, loans=loans)


def _zip_names(n: int) -> list[str]:
    return [f"{10000 + 37 * i:05d}" for i in range(n)]


def _zipcodes(
    rng: np.random.Generator, c: DataConfig, start: datetime, end: datetime
) -> pd.DataFrame:
    names = _zip_names(c.n_zipcodes)
    base_income = rng.lognormal(np.log(62_000), 0.35, c.n_zipcodes)
    base_unemp = rng.beta(2, 30, c.n_zipcodes)
    # Weekly snapshots from a week before the window opens: every loan has one in its past.
    weeks = pd.date_range(start - timedelta(days=7), end, freq="7D", tz="UTC")
    rows = []
    for t_i, ts in enumerate(weeks):
        drift = 1 + 0.002 * t_i
        for z, name in enumerate(names):
            unemp = float(np.clip(base_unemp[z] + rng.normal(0, 0.004), 0.005, 0.6))
            rows.append(
                {
                    ZIPCODE: name,
                    EVENT_TIMESTAMP: ts,
                    "median_income": float(base_income[z] * drift),
                    "unemployment_rate": unemp,
                    "regional_default_rate": float(np.clip(0.04 + 1.2 * unemp, 0, 1)),
                }
            )
    return _with_created(pd.DataFrame(rows))


def _applicants(
    rng: np.random.Generator, c: DataConfig, start: datetime, end: datetime, zips: pd.DataFrame
) -> pd.DataFrame:
    n = c.n_applicants
    ids = np.arange(1, n + 1, dtype="int64")
    zip_of = rng.choice(zips[ZIPCODE].unique(), n)
    age = rng.integers(21, 75, n)
    income = rng.lognormal(np.log(58_000), 0.5, n).clip(8_000, 1.5e6)
    score = rng.normal(690, 60, n).clip(300, 850)
    dti = rng.beta(2.2, 6, n) * 1.2
    employment = np.minimum(rng.exponential(6, n), age - 18)
    lines = rng.poisson(6, n).clip(0, 60)
    ownership = rng.choice(HOME_OWNERSHIP, n, p=[0.45, 0.2, 0.35])
    # First snapshot before the window opens; then a few refreshes inside it.
    frames = []
    n_snapshots = 3
    previous = np.full(n, -1)
    for k in range(n_snapshots):
        if k == 0:
            ts = pd.Timestamp(start - timedelta(days=30)) - pd.to_timedelta(
                rng.integers(0, 30, n), unit="D"
            )
        else:
            offsets = rng.integers(0, c.days, n)
            # Two refreshes of one applicant never share a day: "the value as of t" is unique.
            offsets = np.where(offsets == previous, (offsets + 1) % c.days, offsets)
            previous = offsets
            ts = pd.Timestamp(start) + pd.to_timedelta(offsets, unit="D")
        score_k = (score + rng.normal(0, 12, n) * k).clip(300, 850).round()
        frames.append(
            pd.DataFrame(
                {
                    APPLICANT_ID: ids,
                    EVENT_TIMESTAMP: ts,
                    ZIPCODE: zip_of,
                    "age": age.astype("int64"),
                    "annual_income": income * (1 + 0.01 * k),
                    "credit_score": score_k.astype("int64"),
                    "debt_to_income": (dti + rng.normal(0, 0.02, n) * k).clip(0, 1.5),
                    "employment_years": employment,
                    "open_credit_lines": lines.astype("int64"),
                    "home_ownership": ownership,
                    # Two refreshes may share an event day: the later one was written later,
                    # and the point-in-time join breaks such ties by this creation time.
                    "created": ts + pd.Timedelta(seconds=k),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True).sort_values([EVENT_TIMESTAMP])
    return frame.reset_index(drop=True)


def _loans(
    rng: np.random.Generator,
    c: DataConfig,
    start: datetime,
    end: datetime,
    applicants: pd.DataFrame,
    zips: pd.DataFrame,
) -> pd.DataFrame:
    n = c.n_loans
    applicant_ids = rng.integers(1, c.n_applicants + 1, n)
    span = (end - start).total_seconds()
    ts = pd.Timestamp(start) + pd.to_timedelta(rng.uniform(0, span, n), unit="s")
    loans = pd.DataFrame(
        {
            LOAN_ID: np.arange(1, n + 1, dtype="int64"),
            APPLICANT_ID: applicant_ids.astype("int64"),
            EVENT_TIMESTAMP: _one_per_second(applicant_ids, ts.floor("s")),
            "loan_amount": rng.lognormal(np.log(12_000), 0.7, n).clip(500, 100_000).round(2),
            "term_months": rng.choice([36, 60], n, p=[0.7, 0.3]).astype("int64"),
            "purpose": rng.choice(PURPOSES, n, p=[0.4, 0.15, 0.15, 0.1, 0.1, 0.1]),
        }
    ).sort_values(EVENT_TIMESTAMP)
    home = applicants[[APPLICANT_ID, ZIPCODE]].drop_duplicates(APPLICANT_ID)
    loans = loans.merge(home, on=APPLICANT_ID, how="left")
    # The label comes from the features as they were when the loan was made.
    state = _as_of(loans, applicants, APPLICANT_ID)
    state = _as_of(state, zips.drop(columns="created"), ZIPCODE)
    missing = state.columns[state.isna().any()]
    if len(missing):  # never, by construction: each view has a value before every loan
        raise RuntimeError(f"loans without a value of {list(missing)} at their time")
    risk = _risk(state, rng)
    loans[LABEL] = (rng.uniform(size=n) < risk).astype("int64")
    return loans.sort_values(LOAN_ID).reset_index(drop=True)


def _one_per_second(applicant_ids: np.ndarray, ts: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The loan times, one of two loans of an applicant in the same second moved a second
    earlier: (applicant, time) identifies a loan, as validation requires."""
    frame = pd.DataFrame({APPLICANT_ID: applicant_ids, EVENT_TIMESTAMP: ts})
    while (clash := frame.duplicated([APPLICANT_ID, EVENT_TIMESTAMP])).any():
        frame.loc[clash, EVENT_TIMESTAMP] -= pd.Timedelta(seconds=1)
    return pd.DatetimeIndex(frame[EVENT_TIMESTAMP])


def _as_of(left: pd.DataFrame, right: pd.DataFrame, key: str) -> pd.DataFrame:
    right = right.drop(columns=[c for c in ("created", ZIPCODE) if c != key and c in right])
    return pd.merge_asof(
        left.sort_values(EVENT_TIMESTAMP),
        right.sort_values(EVENT_TIMESTAMP),
        on=EVENT_TIMESTAMP,
        by=key,
        direction="backward",
    )


def _risk(s: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Probability of default: known coefficients plus interactions a linear model misses."""
    burden = s["loan_amount"] / (s["annual_income"] / 12 * s["term_months"])
    logit = (
        -2.4
        - 0.018 * (s["credit_score"] - 690)
        + 2.6 * (s["debt_to_income"] - 0.3)
        + 9.0 * burden
        + 6.0 * (s["regional_default_rate"] - 0.08)
        + 0.35 * (s["term_months"] == 60)
        - 0.05 * s["employment_years"].clip(0, 10)
        + 0.45 * s["purpose"].isin(["medical", "other"])
        - 0.3 * (s["home_ownership"] == "own")
        # Young applicants with thin files and high burden are much riskier (an interaction).
        + 1.2 * ((s["age"] < 30) & (s["open_credit_lines"] < 4)) * (burden > 0.05)
    )
    return np.asarray(1 / (1 + np.exp(-logit)), dtype="float64")


def _with_created(frame: pd.DataFrame) -> pd.DataFrame:
    frame["created"] = frame[EVENT_TIMESTAMP]
    return frame


def write_demo_data(
    config: DataConfig, directory: Path, end: datetime | None = None
) -> dict[str, Path]:
    return generate(config, end).write(directory)


def write(data_dir: Path, **settings: object) -> dict[str, Path]:
    """The profile's ``project.generator`` entry point: the three tables into ``data_dir``."""
    return write_demo_data(DataConfig.model_validate(settings), data_dir)
