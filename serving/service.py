"""BentoML service: serves the MLflow ``@champion`` of a project's model.

Configuration comes from the platform config, passed as JSON in ``AIINFRA_CONFIG_JSON`` (set
by ``aiinfra serve``). The request and response types are built from the project's schema
when the service is imported, so the OpenAPI page shows the project's own fields. The service
starts even when no champion exists yet, reporting not ready on ``/readyz`` until one is
loaded. The registry's webhook (``POST /hooks/mlflow``,
HMAC-signed with ``AIINFRA_WEBHOOK_SECRET``) triggers a swap as soon as ``@champion`` moves;
a poll every ``serving.poll_seconds`` catches anything a webhook missed. Every answer carries
an ``X-Request-ID`` (``aiinfra.runtime.request_id``; in /predict's body too): the prediction log
keeps it with the stored features used, for ``aiinfra trace ID``. Before a request
reaches an endpoint, ``aiinfra.runtime.guards`` refuses foreign hosts, non-JSON and oversized
bodies, and drains on SIGTERM; a feature store that fails answers 503, never 500. Every error
answers one JSON shape, ``{"error": ..., "detail"?: [...]}``, declared in the OpenAPI document
(``/docs.json``, which names the project, the model and the API version); the API page is at
``/docs`` (and ``/``).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

# The service never sits in MLflow's default retries (7, with backoff: minutes) at start or
# on a swap: it answers /livez at once and its poller tries again. Set before MLflow loads.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import bentoml
import torch
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable
from fastapi import FastAPI, HTTPException, Request
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse

from aiinfra.project.config import PlatformConfig, config_from_json, load_config
from aiinfra.release import registry, webhooks
from aiinfra.runtime.api import (
    MAX_BATCH_ROWS,
    ApiDocs,
    OnlineFeatures,
    StoreUnavailable,
    UnknownEntities,
    batch_type,
    openapi_document,
    predict,
    predict_rows,
    response_types,
    row_type,
    serving_schema,
)
from aiinfra.runtime.canary import Canary
from aiinfra.runtime.champion import ChampionSlot, Served
from aiinfra.runtime.guards import Drain, RequestGuard, UniformErrors, error_body
from aiinfra.runtime.monitoring_gauges import REPORT_NAME, watch_report
from aiinfra.runtime.prediction_log import PredictionLog
from aiinfra.runtime.request_id import RequestId
from aiinfra.runtime.request_id import current as current_request_id
from aiinfra.runtime.request_outcomes import RequestOutcomes
from aiinfra.runtime.shadow import Shadow

log = logging.getLogger(__name__)


def _config() -> PlatformConfig:
    payload = os.environ.get("AIINFRA_CONFIG_JSON")
    return config_from_json(payload) if payload else load_config()


CONFIG = _config()
SCHEMA = serving_schema(CONFIG)
Row = row_type(SCHEMA)
Rows = batch_type(Row)
PredictionResponse, RowPrediction = response_types(SCHEMA)

served_version = bentoml.metrics.Gauge(
    name="aiinfra_serving_model_version",
    documentation="Registry version of the model answering requests",
    labelnames=["model_name"],
)

hooks = FastAPI(title="registry hooks")
DRAIN = Drain()
NO_CHAMPION = "no @champion model is deployed yet"


def _unavailable(reason: str) -> JSONResponse:
    """A 503 that keeps its reason: BentoML answers every 5xx an endpoint raises with a generic
    text. (A batched endpoint cannot answer this way: it answers a list for many requests.)"""
    return JSONResponse(error_body(reason), status_code=503)


@bentoml.service(workers=1, traffic={"timeout": 30})
@bentoml.asgi_app(hooks, path="/hooks")
class ModelService:
    def __init__(self) -> None:
        self.config = CONFIG
        if CONFIG.serving.cpu_threads is not None:  # a small network's kernels are too short
            torch.set_num_threads(CONFIG.serving.cpu_threads)  # to split (training.cpu_threads)
        self.webhook_secret = os.environ.get(webhooks.SECRET_ENV, "")
        self.features = OnlineFeatures(self.config, SCHEMA)
        self.log = PredictionLog(
            self.config.prediction_log_dir,
            self.config.serving.log_sample_rate,
            self.config.serving.log_retention_days,
        )
        self.slot = ChampionSlot(self.config, SCHEMA)
        # The first load runs in the background: /livez answers while the registry is slow
        # or down (a startup probe would kill the pod), /readyz once a champion is served.
        self.slot.refresh_soon()
        self.slot.watch()
        serving = self.config.serving
        # Shadow traffic: @challenger runs in a process of its own, which follows the alias.
        self.shadow = Shadow(self.config, SCHEMA) if serving.shadow else None
        self.canary = Canary(serving.canary, self._canary_stopped)
        # @challenger in this process: for the canary only.
        self.challenger: ChampionSlot | None = None
        if serving.canary.percent > 0:
            self.challenger = ChampionSlot(self.config, SCHEMA, alias=registry.CHALLENGER)
            self.challenger.refresh_soon()
            self.challenger.watch()
        DRAIN.on_sigterm(self.config.serving.drain_seconds)
        # The monitoring job's latest window, as gauges on /metrics.
        self.monitoring = watch_report(
            self.config.monitoring_dir / REPORT_NAME, serving.poll_seconds
        )

    def __is_ready__(self) -> bool:
        """A champion is served and the feature store answers (re-checked while it did not)."""
        return self.slot.served is not None and (self.features.available or self.features.ping())

    @bentoml.api
    def predict(self, rows: Rows) -> PredictionResponse:  # type: ignore[valid-type]
        """The model's answer for each row: {"rows": [{<entity keys>, <request features>}]}."""
        served = self.slot.served  # one read: the whole request uses one model version
        if served is None:
            return _unavailable(NO_CHAMPION)  # BentoML sends a returned Response as it is
        served_version.labels(model_name=self.config.model_name).set(float(served.version))
        plain = [row.model_dump() for row in rows]
        try:
            features = self.features.frame(plain)
        except UnknownEntities as exc:
            raise NotFound(str(exc)) from exc
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        except StoreUnavailable as exc:  # logged once per outage by OnlineFeatures
            return _unavailable(str(exc))
        request_id = current_request_id()  # set by RequestId, which also answers it as a header
        challenger = self.challenger.served if self.challenger is not None else None
        answering = self.canary.choose(served, challenger)
        started = time.perf_counter()
        try:
            response = predict(answering, features, self.config.model_name, request_id)
        except Exception:
            if answering is served:
                raise
            # The canary failed this request: the champion answers it, the failure counts.
            self._observe(answering, True, started, served, challenger)
            answering, started = served, time.perf_counter()
            response = predict(served, features, self.config.model_name, request_id)
        spent_ms = self._observe(answering, False, started, served, challenger)
        self.log.record(plain, response, features, request_id)
        if self.shadow is not None and answering is served:
            self.shadow.send(features, plain, response, spent_ms, request_id)
        return PredictionResponse(**response)

    def _observe(
        self, answering: Served, failed: bool, started: float, champion: Served,
        challenger: Served | None,
    ) -> float:  # fmt: skip
        spent_ms = (time.perf_counter() - started) * 1000
        self.canary.observe(
            answering.version, failed, spent_ms, champion.version,
            None if challenger is None else challenger.version,
        )  # fmt: skip
        return spent_ms

    def _canary_stopped(self, version: str, reason: str) -> None:
        """Record on the version why its canary stopped (best effort: serving goes on)."""
        try:
            registry.client(self.config.mlflow.tracking_uri).set_model_version_tag(
                self.config.model_name, version, "canary_stopped", reason[:4000]
            )
        except Exception:
            log.exception("could not record the canary's stop of version %s", version)

    # BentoML sheds a queued request (503) once its expected wait passes max_latency_ms: at
    # 1 s that shed requests at concurrency 32 on 2 cores. 10 s sheds only a real overload.
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_ROWS, max_latency_ms=10_000)
    def predict_batch(self, rows: Rows) -> list[RowPrediction]:  # type: ignore[valid-type]
        """Adaptive batching: concurrent requests are merged into one feature lookup and one
        forward pass. Same body as /predict; each row answers with its model version, or an
        error when the feature store does not know its entity."""
        served = self.slot.served
        if served is None:
            raise ServiceUnavailable(NO_CHAMPION)
        plain = [row.model_dump() for row in rows]
        try:
            lookup = self.features.lookup(plain)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        except StoreUnavailable as exc:  # logged once per outage by OnlineFeatures
            raise ServiceUnavailable(str(exc)) from None
        return [RowPrediction(**row) for row in predict_rows(served, lookup)]

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
            or event.model != self.config.model_name
            or event.alias != registry.CHAMPION
        ):
            return {"status": "ignored"}
        self.slot.refresh_soon()
        return {"status": "deploying", "version": event.version}


@functools.cache
def _openapi_document() -> dict[str, Any]:
    spec: dict[str, Any] = ModelService.openapi_spec.asdict()  # type: ignore[attr-defined]
    return openapi_document(spec, CONFIG, SCHEMA)


# Outermost first (BentoML keeps the order, Starlette wraps the first added around the rest):
# every prediction request's outcome is recorded with the status and request id the client
# got, refusals included; every answer carries its request id; every error leaves in the one
# shape; a foreign Host (DNS rebinding) is refused before anything reads the body.
ModelService.add_asgi_middleware(
    RequestOutcomes,
    directory=CONFIG.prediction_log_dir,
    retention_days=CONFIG.serving.log_retention_days,
)
ModelService.add_asgi_middleware(RequestId)
ModelService.add_asgi_middleware(UniformErrors)
ModelService.add_asgi_middleware(
    TrustedHostMiddleware, allowed_hosts=CONFIG.serving.trusted_hosts()
)
ModelService.add_asgi_middleware(
    RequestGuard,
    max_body_bytes=CONFIG.serving.max_body_bytes,
    retry_after_seconds=CONFIG.serving.retry_after_seconds,
    drain=DRAIN,
)
ModelService.add_asgi_middleware(ApiDocs, document=_openapi_document)
