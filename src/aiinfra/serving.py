"""Serving logic, apart from the BentoML glue in ``serving/service.py``.

- The request type is derived from the declared schema: entity keys plus the request-time
  features, with their bounds; unknown fields and NaN/inf are rejected by pydantic (a 400).
- Stored features come from the Feast online store, the same definitions training used.
- The model is whatever ``@champion`` points at: a watcher polls the registry, loads a new
  champion beside the current one, checks it on a smoke row, and only then swaps it in. A
  model that fails the check is never served; the old one stays.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from aiinfra import registry, schema
from aiinfra.config import PlatformConfig
from aiinfra.model import LoanModel

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


def smoke_frame() -> pd.DataFrame:
    """One plausible row (mid-range values) to check a model answers before it serves."""
    row: dict[str, Any] = {}
    for f in schema.FEATURES:
        if f.kind == "categorical":
            row[f.name] = f.categories[0]
        else:
            lo, hi = f.min_value or 0.0, f.max_value or 1.0
            middle = (lo + hi) / 2
            row[f.name] = round(middle) if f.integer else middle
    return pd.DataFrame([row])


def check_model(model: LoanModel) -> None:
    """Raise unless the model gives one finite probability per row."""
    out = model.predict_proba(smoke_frame())
    if out.shape != (1,) or not np.isfinite(out).all() or not (0 <= out[0] <= 1):
        raise ValueError(f"model failed the smoke check: output {out!r}")


@dataclass(frozen=True)
class Served:
    version: str
    model: LoanModel


class ChampionSlot:
    """The model being served, swapped atomically when @champion moves."""

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self._served: Served | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.last_error: str | None = None

    @property
    def served(self) -> Served | None:
        return self._served

    def refresh(self) -> bool:
        """Load the current @champion if it is not the one served; True if it swapped."""
        uri, name = self.config.mlflow.tracking_uri, self.config.mlflow.model_name
        version = registry.alias_version(uri, name, registry.CHAMPION)
        current = self._served
        if version is None or (current is not None and current.version == version):
            return False
        try:
            with tempfile.TemporaryDirectory() as tmp:
                candidate = registry.load_version(uri, name, version, Path(tmp))
            check_model(candidate)
        except Exception as exc:  # keep serving the old model, whatever broke
            self.last_error = f"version {version} not deployed: {exc}"
            log.error(self.last_error)
            return False
        with self._lock:
            self._served = Served(version, candidate)
        self.last_error = None
        log.info("now serving %s version %s", name, version)
        return True

    def watch(self) -> threading.Thread:
        """Poll the registry in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.config.serving.poll_seconds):
                try:
                    self.refresh()
                except Exception:  # the registry may be briefly down; try again next tick
                    log.exception("champion refresh failed")

        thread = threading.Thread(target=loop, name="champion-watcher", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


class OnlineFeatures:
    """Reads the stored features of request rows from the Feast online store."""

    def __init__(self, config: PlatformConfig) -> None:
        from aiinfra import feature_store

        self._fs = feature_store
        self.store = feature_store.open_store(config)
        self.repo = feature_store.repo_objects(config)

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        stored = self._fs.online_features(self.store, self.repo, rows)
        missing = self._fs.missing_online(stored)
        if missing:
            names = ", ".join(
                f"row {i} (applicant_id={rows[i]['applicant_id']}, zipcode={rows[i]['zipcode']})"
                for i in missing[:5]
            )
            raise UnknownEntities(f"no stored features for {names}")
        request = pd.DataFrame(rows)[[f.name for f in schema.REQUEST_FEATURES]]
        return pd.concat([stored.reset_index(drop=True), request.reset_index(drop=True)], axis=1)


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
