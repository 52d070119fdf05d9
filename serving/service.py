"""BentoML service: serves the MLflow ``@champion`` of the loan default model.

Configuration comes from the platform config, passed as JSON in ``AIINFRA_CONFIG_JSON`` (set
by ``aiinfra serve``). The service starts even when no champion exists yet, reporting not
ready on ``/readyz`` until one is loaded. The registry's webhook (``POST /hooks/mlflow``,
HMAC-signed with ``AIINFRA_WEBHOOK_SECRET``) triggers a swap as soon as ``@champion`` moves;
a poll every ``serving.poll_seconds`` catches anything a webhook missed.
"""

from __future__ import annotations

import os

import bentoml
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable
from fastapi import FastAPI, HTTPException, Request

from aiinfra import registry, webhooks
from aiinfra.config import config_from_json, load_config
from aiinfra.deployment import ChampionSlot
from aiinfra.serving import (
    MAX_BATCH_ROWS,
    BatchOfApplications,
    OnlineFeatures,
    PredictionLog,
    PredictionResponse,
    RowPrediction,
    UnknownEntities,
    predict,
    predict_rows,
)

served_version = bentoml.metrics.Gauge(
    name="aiinfra_serving_model_version",
    documentation="Registry version of the model answering requests",
    labelnames=["model_name"],
)

hooks = FastAPI(title="registry hooks")


@bentoml.service(workers=1, traffic={"timeout": 30})
@bentoml.asgi_app(hooks, path="/hooks")
class LoanScorer:
    def __init__(self) -> None:
        payload = os.environ.get("AIINFRA_CONFIG_JSON")
        self.config = config_from_json(payload) if payload else load_config()
        self.webhook_secret = os.environ.get(webhooks.SECRET_ENV, "")
        self.features = OnlineFeatures(self.config)
        self.log = PredictionLog(
            self.config.prediction_log_dir, self.config.serving.log_sample_rate
        )
        self.slot = ChampionSlot(self.config)
        try:
            self.slot.refresh()
        except Exception as exc:  # never crash the worker: BentoML would restart it forever
            self.slot.last_error = f"registry unreachable at start: {exc}"
        self.slot.watch()

    def __is_ready__(self) -> bool:
        return self.slot.served is not None

    @bentoml.api
    def predict(self, rows: BatchOfApplications) -> PredictionResponse:
        """Probability of default for each application. Example body:
        {"rows": [{"applicant_id": 1, "zipcode": "10000", "loan_amount": 12000,
                   "term_months": 36, "purpose": "car"}]}
        """
        served = self.slot.served  # one read: the whole request uses one model version
        if served is None:
            raise ServiceUnavailable("no @champion model is deployed yet")
        served_version.labels(model_name=self.config.mlflow.model_name).set(float(served.version))
        plain = [row.model_dump() for row in rows]
        try:
            features = self.features.frame(plain)
        except UnknownEntities as exc:
            raise NotFound(str(exc)) from exc
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        response = predict(served, features, self.config.mlflow.model_name)
        self.log.record(plain, response)
        return response

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_ROWS, max_latency_ms=1000)
    def predict_batch(self, rows: BatchOfApplications) -> list[RowPrediction]:
        """Adaptive batching: concurrent requests are merged into one feature lookup and one
        forward pass. Same body as /predict; each row answers with its model version, or an
        error when the feature store does not know its entity."""
        served = self.slot.served
        if served is None:
            raise ServiceUnavailable("no @champion model is deployed yet")
        plain = [row.model_dump() for row in rows]
        return predict_rows(served, self.features.lookup(plain))

    @hooks.post("/mlflow", status_code=202)
    async def mlflow_webhook(self, request: Request) -> dict[str, str]:
        """Registry webhook: verify the signature, then swap to the new @champion."""
        body = await request.body()
        try:
            webhooks.verify(self.webhook_secret, dict(request.headers), body)
            event = webhooks.parse_alias_event(body)
        except webhooks.InvalidDelivery as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from exc
        except (ValueError, KeyError) as exc:
            raise HTTPException(status_code=400, detail=f"not a registry event: {exc}") from exc
        if (
            event is None
            or event.model != self.config.mlflow.model_name
            or event.alias != registry.CHAMPION
        ):
            return {"status": "ignored"}
        self.slot.refresh_soon()
        return {"status": "deploying", "version": event.version}
