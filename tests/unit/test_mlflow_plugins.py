"""A process that talks to MLflow through the platform does not load Feast for MLflow's
request-header plugin (5-9 s per pipeline task and CLI command), and the rest of MLflow's
request headers are untouched."""

from __future__ import annotations

import subprocess
import sys

from aiinfra.project.config import PROJECT_ROOT

PROBE = """
import os, sys
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
from aiinfra.release import registry
try:
    registry.client("http://127.0.0.1:9").search_registered_models()
except Exception:
    pass
from mlflow.tracking.request_header.registry import _request_header_provider_registry as r
print("feast" in sys.modules, sorted(type(p).__name__ for p in r))
"""


def test_an_mlflow_call_does_not_import_feast() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.startswith("False"), out
    assert "DefaultRequestHeaderProvider" in out and "FeastMLflowHeaderProvider" not in out
