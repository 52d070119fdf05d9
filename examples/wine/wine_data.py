"""The wine recognition data set that ships with scikit-learn (178 wines, 13 chemical
measurements, 3 cultivars), shaped as a winery's project would hold it.

Two tables, written into the platform's data folder:

- ``wine_features.parquet``: the laboratory analysis of each wine (the ``wine_analysis``
  Feast view), recorded the day before the wine was graded;
- ``wine_labels.parquet``: one row per graded wine: its cultivar (the label, as the class
  names ``class_0`` .. ``class_2``: string classes, not integers), the colour intensity measured
  at grading time (sent with each prediction request) and a cellar column the project does not
  declare (the platform ignores it).

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
from sklearn.datasets import load_wine

WINE_ID, EVENT_TIMESTAMP, LABEL = "wine_id", "event_timestamp", "cultivar"
REQUEST_FEATURE = "color_intensity"  # measured at grading, sent by the caller
LABELS_FILE, FEATURES_FILE = "wine_labels.parquet", "wine_features.parquet"
# scikit-learn's column name has a slash, which a Feast field name cannot hold.
RENAMED = {"od280/od315_of_diluted_wines": "od280_od315"}
# The fixed last day of the data: the tables end at its midnight UTC unless the settings say
# otherwise.
DEMO_END = date(2026, 11, 1)


class WineSettings(BaseModel):
    """The profile's ``project.generator.settings``."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(60, ge=2, le=365, description="span of the grading times, ending at `end`")
    end: date | Literal["today"] = Field(
        DEMO_END, description="the data end at this day's midnight UTC; 'today': the clock's"
    )
    seed: int = 11


def _utc_today() -> date:
    return datetime.now(UTC).date()


def end_time(end: date | Literal["today"]) -> datetime:
    """Midnight UTC of the ``end`` setting's day; the clock is read only for 'today'."""
    day = end if isinstance(end, date) else _utc_today()  # 'today'
    return datetime.combine(day, time(), tzinfo=UTC)


def tables(settings: WineSettings, end: datetime | None = None) -> dict[str, pd.DataFrame]:
    """The two tables, by file name."""
    bunch = load_wine(as_frame=True)
    measured = bunch.data.rename(columns=RENAMED).reset_index(drop=True)
    names = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    rng = np.random.default_rng(settings.seed)
    end = end or end_time(settings.end)
    span = timedelta(days=settings.days).total_seconds()
    graded = pd.Timestamp(end) - pd.to_timedelta(rng.uniform(1, span, len(measured)), unit="s")
    graded = graded.floor("s")
    ids = np.arange(1, len(measured) + 1, dtype="int64")
    labels = pd.DataFrame(
        {
            WINE_ID: ids,
            EVENT_TIMESTAMP: graded,
            REQUEST_FEATURE: measured[REQUEST_FEATURE].to_numpy(),
            LABEL: names.astype(str),
            "cellar": rng.choice(["north", "south", "east"], len(measured)),  # undeclared
        }
    )
    analysed = graded - pd.Timedelta(days=1)
    features = measured.drop(columns=[REQUEST_FEATURE])
    features["magnesium"] = features["magnesium"].round().astype("int64")  # mg/l, whole
    features.insert(0, WINE_ID, ids)
    features.insert(1, EVENT_TIMESTAMP, analysed)
    features["created"] = analysed
    return {
        LABELS_FILE: labels.sort_values(EVENT_TIMESTAMP).reset_index(drop=True),
        FEATURES_FILE: features.sort_values(EVENT_TIMESTAMP).reset_index(drop=True),
    }


def write(data_dir: Path, **settings: object) -> None:
    """The profile's ``project.generator`` entry point: both tables into ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables(WineSettings.model_validate(settings)).items():
        frame.to_parquet(data_dir / name, index=False)
