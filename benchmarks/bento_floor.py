"""The floor of benchmarks/serving.py: a BentoML service with the platform's request and answer
types that does no lookup and no forward pass (a fixed answer per row).

Its latency is what BentoML and the HTTP round trip cost on their own on this machine, so the
serving benchmark can say how much of the platform service's added latency is ours. Run (the
config as JSON in ``AIINFRA_CONFIG_JSON``):

    bentoml serve benchmarks.bento_floor:FloorService --port 3001

(benchmarks/serving.py starts it with ``floor_service``.)
"""

from __future__ import annotations

import os

import bentoml

from aiinfra.project.config import config_from_json
from aiinfra.project.definition import load_project
from aiinfra.runtime.api import batch_type, response_types, row_type

SCHEMA = load_project(config_from_json(os.environ["AIINFRA_CONFIG_JSON"])).schema
Rows = batch_type(row_type(SCHEMA))
PredictionResponse, _ = response_types(SCHEMA)
if SCHEMA.task == "binary":
    ANSWER: dict[str, object] = {"probability": 0.5, "predicted_class": SCHEMA.classes[1]}
elif SCHEMA.task == "multiclass":
    share = 1 / len(SCHEMA.classes)
    ANSWER = {
        "probabilities": {str(c): share for c in SCHEMA.classes},
        "predicted_class": SCHEMA.classes[0],
    }
else:
    ANSWER = {"value": 0.0}


@bentoml.service(workers=1, traffic={"timeout": 30})
class FloorService:
    @bentoml.api
    def predict(self, rows: Rows) -> PredictionResponse:  # type: ignore[valid-type]
        """A fixed answer per row: the framework's cost, nothing else."""
        predictions = [ANSWER for _ in rows]  # type: ignore[attr-defined]
        return PredictionResponse(model_name="floor", model_version="0", predictions=predictions)
