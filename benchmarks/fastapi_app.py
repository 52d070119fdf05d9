"""The baseline server of benchmarks/serving.py: the same model and the same Feast online lookup
as the BentoML service, behind one bare FastAPI endpoint with the same request body.

It serves the @champion it finds at start-up and never follows the registry: it exists only to
show what the HTTP framework costs. Run (the config as JSON in ``AIINFRA_CONFIG_JSON``):

    uvicorn benchmarks.fastapi_app:create_app --factory --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from aiinfra.release import registry
from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, config_from_json
from aiinfra.runtime.champion import Served
from aiinfra.runtime.serving import (
    BatchOfApplications,
    OnlineFeatures,
    PredictionResponse,
    UnknownEntities,
    predict,
)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: BatchOfApplications


def create_app() -> FastAPI:
    config = config_from_json(os.environ["AIINFRA_CONFIG_JSON"])
    uri, name = config.mlflow.tracking_uri, config.model_name
    version = registry.alias_version(uri, name, registry.CHAMPION)
    if version is None:
        raise RuntimeError(f"{name} has no @champion to serve")
    with tempfile.TemporaryDirectory() as tmp:
        served = Served(version, registry.load_version(uri, name, version, Path(tmp)))
    features = OnlineFeatures(config)
    app = FastAPI(title="loan-default baseline")

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"model_version": served.version}

    # A plain `def`, like the BentoML API: both run the blocking Feast read and the torch
    # forward in a thread pool, so the comparison is framework against framework.
    @app.post("/predict")
    def predict_endpoint(body: PredictRequest) -> PredictionResponse:
        try:
            frame = features.frame([row.model_dump() for row in body.rows])
        except UnknownEntities as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return predict(served, frame, name)

    return app


def service(config: PlatformConfig, port: int) -> local_servers.Service:
    """This app under uvicorn, one worker, started and stopped like the platform's servers."""
    command = [
        *(sys.executable, "-m", "uvicorn", "benchmarks.fastapi_app:create_app", "--factory"),
        *("--app-dir", str(PROJECT_ROOT), "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1"),
    ]
    env = {"AIINFRA_CONFIG_JSON": config.to_json()}
    return local_servers.Service(
        "fastapi", command, env, f"http://127.0.0.1:{port}/readyz", config.run_dir
    )
