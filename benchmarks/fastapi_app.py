"""The baseline server of benchmarks/serving.py: the same model and the same Feast online lookup
as the BentoML service, behind one bare FastAPI endpoint with the same request body.

It serves the @champion it finds at start-up and never follows the registry: it exists only to
show what the HTTP framework costs. Run (the config as JSON in ``AIINFRA_CONFIG_JSON``):

    uvicorn benchmarks.fastapi_app:create_app --factory --host 127.0.0.1 --port 8000
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint's body type from its
# annotation, and that type is built at start-up from the project's schema (a local name).
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from pydantic import ConfigDict, create_model

from aiinfra.ops import local_servers
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, config_from_json
from aiinfra.project.definition import load_project
from aiinfra.release import registry
from aiinfra.runtime.api import (
    OnlineFeatures,
    UnknownEntities,
    batch_type,
    predict,
    response_types,
    row_type,
)
from aiinfra.runtime.champion import Served


def create_app() -> FastAPI:
    config = config_from_json(os.environ["AIINFRA_CONFIG_JSON"])
    if config.serving.cpu_threads is not None:  # as the service does
        torch.set_num_threads(config.serving.cpu_threads)
    schema = load_project(config).schema
    uri, name = config.mlflow.tracking_uri, config.model_name
    version = registry.alias_version(uri, name, registry.CHAMPION)
    if version is None:
        raise RuntimeError(f"{name} has no @champion to serve")
    with tempfile.TemporaryDirectory() as tmp:
        model = registry.load_version(uri, name, version, Path(tmp), config.project.root)
        served = Served(version, model)
    features = OnlineFeatures(config, schema)
    # The same body and answer types as the BentoML service: built from the schema.
    request_type: Any = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(batch_type(row_type(schema)), ...),
    )
    response_type, _ = response_types(schema)
    app = FastAPI(title=f"{config.project.name} baseline")

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"model_version": served.version}

    # A plain `def`, like the BentoML API: both run the blocking Feast read and the torch
    # forward in a thread pool, so the comparison is framework against framework.
    @app.post("/predict", response_model=response_type)
    def predict_endpoint(body: request_type) -> dict[str, Any]:  # type: ignore[valid-type]
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
