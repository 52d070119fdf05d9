"""BentoML service: serves the MLflow ``@champion`` of the loan default model.

Configuration comes from the platform config, passed as JSON in ``AIINFRA_CONFIG_JSON`` (set
by ``aiinfra serve``). The service starts even when no champion exists yet, reporting not
ready on ``/readyz`` until one is promoted; a watcher swaps in each new champion without a
restart (see ``aiinfra.serving``).
"""

from __future__ import annotations

import os

import bentoml
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable

from aiinfra.config import config_from_json, load_config
from aiinfra.serving import (
    BatchOfApplications,
    ChampionSlot,
    OnlineFeatures,
    PredictionResponse,
    UnknownEntities,
    predict,
)

served_version = bentoml.metrics.Gauge(
    name="aiinfra_serving_model_version",
    documentation="Registry version of the model answering requests",
    labelnames=["model_name"],
)


@bentoml.service(workers=1, traffic={"timeout": 30})
class LoanScorer:
    def __init__(self) -> None:
        payload = os.environ.get("AIINFRA_CONFIG_JSON")
        self.config = config_from_json(payload) if payload else load_config()
        self.features = OnlineFeatures(self.config)
        self.slot = ChampionSlot(self.config)
        self._refresh()
        self.slot.watch()

    def _refresh(self) -> None:
        try:
            self.slot.refresh()
        except Exception as exc:  # never crash the worker: BentoML would restart it forever
            self.slot.last_error = f"registry unreachable: {exc}"
        if self.slot.served is not None:
            served_version.labels(model_name=self.config.mlflow.model_name).set(
                float(self.slot.served.version)
            )

    def __is_ready__(self) -> bool:
        return self.slot.served is not None

    @bentoml.api
    def predict(self, rows: BatchOfApplications) -> PredictionResponse:
        """Probability of default for each application. Example body:
        {"rows": [{"applicant_id": 1, "zipcode": "10000", "loan_amount": 12000,
                   "term_months": 36, "purpose": "car"}]}
        """
        served = self.slot.served
        if served is None:
            raise ServiceUnavailable("no @champion model is deployed yet")
        served_version.labels(model_name=self.config.mlflow.model_name).set(float(served.version))
        try:
            features = self.features.frame([row.model_dump() for row in rows])
        except UnknownEntities as exc:
            raise NotFound(str(exc)) from exc
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        return predict(served, features, self.config.mlflow.model_name)
