"""Serving logic, apart from the BentoML glue in ``serving/service.py``.

- The request type is derived from the declared schema: entity keys plus the request-time
  features, with their bounds; unknown fields and NaN/inf are rejected by pydantic (a 400).
- Stored features come from the Feast online store, the same definitions training used.
- Which model answers is decided in :mod:`aiinfra.deployment`.
- Requests and predictions are logged, sampled, to JSON lines for drift monitoring.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from aiinfra import schema
from aiinfra.config import PlatformConfig
from aiinfra.deployment import Served

log = logging.getLogger(__name__)


def _request_field(f: schema.Feature) -> tuple[Any, Any]:
    if f.kind == "categorical":
        return Literal[f.categories], Field(description=f.description)
    kind: type = int if f.integer else float
    return kind, Field(
        ge=f.min_value, le=f.max_value, allow_inf_nan=False, description=f.description
    )


LoanApplication: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "LoanApplication",
    __config__=ConfigDict(extra="forbid", strict=False),
    applicant_id=(int, Field(ge=1, description="applicant known to the feature store")),
    zipcode=(str, Field(pattern=r"^\d{5}$", description="5-digit US zipcode")),
    **{f.name: _request_field(f) for f in schema.REQUEST_FEATURES},
)


class Prediction(BaseModel):
    default_probability: float
    will_default: bool


class PredictionResponse(BaseModel):
    model_name: str
    model_version: str
    predictions: list[Prediction]


class UnknownEntities(ValueError):
    """Some rows name applicants or zipcodes the online store has no features for."""


class OnlineFeatures:
    """Reads the stored features of request rows from the Feast online store."""

    def __init__(self, config: PlatformConfig) -> None:
        from aiinfra import feature_store

        self._fs = feature_store
        self.store = feature_store.open_store(config)
        self.repo = feature_store.repo_objects(config)

    def lookup(self, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[int]]:
        """Model input for every row, and the positions of rows the store does not know."""
        stored = self._fs.online_features(self.store, self.repo, rows)
        request = pd.DataFrame(rows)[[f.name for f in schema.REQUEST_FEATURES]]
        frame = pd.concat([stored.reset_index(drop=True), request.reset_index(drop=True)], axis=1)
        return frame, self._fs.missing_online(stored)

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Model input for ``rows``; raises UnknownEntities naming rows the store lacks."""
        frame, missing = self.lookup(rows)
        if missing:
            raise UnknownEntities(f"no stored features for {_describe(rows, missing)}")
        return frame


def _describe(rows: list[dict[str, Any]], positions: list[int]) -> str:
    return ", ".join(
        f"row {i} (applicant_id={rows[i]['applicant_id']}, zipcode={rows[i]['zipcode']})"
        for i in positions[:5]
    )


class RowPrediction(BaseModel):
    """One row's answer from the batched endpoint: a prediction, or why there is none."""

    model_version: str
    default_probability: float | None = None
    will_default: bool | None = None
    error: str | None = None


def predict_rows(served: Served, lookup: tuple[pd.DataFrame, list[int]]) -> list[RowPrediction]:
    """Predictions for the rows the store knows; an error entry for the others, so one bad
    row in a merged batch does not fail the requests it was batched with."""
    frame, missing = lookup
    known = [i for i in range(len(frame)) if i not in set(missing)]
    out = [
        RowPrediction(model_version=served.version, error="no stored features for this entity")
        for _ in range(len(frame))
    ]
    if known:
        probabilities = served.model.predict_proba(frame.iloc[known])
        for i, p in zip(known, probabilities, strict=True):
            out[i] = RowPrediction(
                model_version=served.version,
                default_probability=float(p),
                will_default=bool(p >= 0.5),
            )
    return out


def predict(served: Served, features: pd.DataFrame, model_name: str) -> PredictionResponse:
    p = served.model.predict_proba(features)
    return PredictionResponse(
        model_name=model_name,
        model_version=served.version,
        predictions=[
            Prediction(default_probability=float(v), will_default=bool(v >= 0.5)) for v in p
        ],
    )


MAX_BATCH_ROWS = 1000
BatchOfApplications = Annotated[
    list[LoanApplication],
    Field(min_length=1, max_length=MAX_BATCH_ROWS),
]


class PredictionLog:
    """Appends sampled requests and their predictions as JSON lines, one file per day.

    The sink for drift monitoring: what the model was asked, what it answered, which version.
    """

    def __init__(self, directory: Path, sample_rate: float, seed: int | None = None) -> None:
        self.directory = directory
        self.sample_rate = sample_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def record(self, rows: list[dict[str, Any]], response: PredictionResponse) -> bool:
        if self.sample_rate <= 0 or self._random.random() >= self.sample_rate:
            return False
        now = datetime.now(UTC)
        lines = [
            json.dumps(
                {
                    "at": now.isoformat(timespec="milliseconds"),
                    "model_version": response.model_version,
                    "request": row,
                    "default_probability": prediction.default_probability,
                }
            )
            for row, prediction in zip(rows, response.predictions, strict=True)
        ]
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"predictions-{now:%Y-%m-%d}.jsonl"
        with self._lock, path.open("a") as sink:
            sink.write("\n".join(lines) + "\n")
        return True
