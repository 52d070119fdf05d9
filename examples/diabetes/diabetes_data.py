"""The diabetes data set that ships with scikit-learn (442 patients, ten baseline measurements,
disease progression one year later), shaped as a clinic's project would hold it.

The measurements are scikit-learn's raw ones (``scaled=False``: age in years, BMI, blood
pressure in mm Hg, six blood serum values), not the mean-centred copy. Two tables, written into
the platform's data folder:

- ``diabetes_features.parquet``: each patient's lab results (the ``patient_labs`` Feast view),
  recorded the day before the visit;
- ``diabetes_labels.parquet``: one row per visit: the disease progression (the label), the
  blood pressure measured at the visit (sent with each prediction request) and a clinic column
  the project does not declare (the platform ignores it).

Timestamps are seeded and spread over the ``days`` days before ``end``: a fixed day
(``DEMO_END``) unless the settings name another, so the same settings write the same files on any
day; the example's profile asks for ``end: today`` (midnight UTC of the clock's day), as its
validation checks freshness against the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.datasets import load_diabetes

PATIENT_ID, EVENT_TIMESTAMP, LABEL = "patient_id", "event_timestamp", "progression"
REQUEST_FEATURE = "bp"  # measured at the visit, sent by the caller
LABELS_FILE, FEATURES_FILE = "diabetes_labels.parquet", "diabetes_features.parquet"
# scikit-learn's names of the six serum measurements, spelled out.
RENAMED = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glucose"}
# The fixed last day of the data: the tables end at its midnight UTC unless the settings say
# otherwise.
DEMO_END = date(2026, 11, 1)


class DiabetesSettings(BaseModel):
    """The profile's ``project.generator.settings``."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(90, ge=2, le=365, description="span of the visit times, ending at `end`")
    end: date | Literal["today"] = Field(
        DEMO_END, description="the data end at this day's midnight UTC; 'today': the clock's"
    )
    seed: int = 5


def _utc_today() -> date:
    return datetime.now(UTC).date()


def end_time(end: date | Literal["today"]) -> datetime:
    """Midnight UTC of the ``end`` setting's day; the clock is read only for 'today'."""
    day = end if isinstance(end, date) else _utc_today()  # 'today'
    return datetime.combine(day, time(), tzinfo=UTC)


def tables(settings: DiabetesSettings, end: datetime | None = None) -> dict[str, pd.DataFrame]:
    """The two tables, by file name."""
    bunch = load_diabetes(as_frame=True, scaled=False)
    measured = bunch.data.rename(columns=RENAMED).reset_index(drop=True)
    measured["age"] = measured["age"].round().astype("int64")
    measured["sex"] = measured["sex"].round().astype("int64")  # coded 1 or 2
    rng = np.random.default_rng(settings.seed)
    end = end or end_time(settings.end)
    span = timedelta(days=settings.days).total_seconds()
    visits = pd.Timestamp(end) - pd.to_timedelta(rng.uniform(1, span, len(measured)), unit="s")
    visits = visits.floor("s")
    ids = np.arange(1, len(measured) + 1, dtype="int64")
    labels = pd.DataFrame(
        {
            PATIENT_ID: ids,
            EVENT_TIMESTAMP: visits,
            REQUEST_FEATURE: measured[REQUEST_FEATURE].to_numpy(),
            LABEL: bunch.target.to_numpy(dtype="float64"),
            "clinic": rng.choice(["A", "B", "C", "D"], len(measured)),  # undeclared
        }
    )
    recorded = visits - pd.Timedelta(days=1)
    features = measured.drop(columns=[REQUEST_FEATURE])
    features.insert(0, PATIENT_ID, ids)
    features.insert(1, EVENT_TIMESTAMP, recorded)
    features["created"] = recorded
    return {
        LABELS_FILE: labels.sort_values(EVENT_TIMESTAMP).reset_index(drop=True),
        FEATURES_FILE: features.sort_values(EVENT_TIMESTAMP).reset_index(drop=True),
    }


def write(data_dir: Path, **settings: object) -> None:
    """The profile's ``project.generator`` entry point: both tables into ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables(DiabetesSettings.model_validate(settings)).items():
        frame.to_parquet(data_dir / name, index=False)
