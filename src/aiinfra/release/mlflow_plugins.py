"""How the platform's processes use MLflow's client.

MLflow loads every installed request-header plugin on a process's first HTTP call. Feast
registers one (for its own MLflow data source, which the platform does not use) whose import
loads all of Feast: 5-9 s in every process that talks to MLflow, and most of ours (training,
evaluation, registration, promotion, the CLI's registry commands) never touch Feast. That one
plugin is skipped; any other installed plugin still loads.

MLflow's usage telemetry is off unless a user turns it on (``MLFLOW_DISABLE_TELEMETRY``): the
platform sends nothing anywhere by default, and the telemetry thread sets and deletes an
environment variable while other threads iterate ``os.environ`` (a ``KeyError`` in an HTTP
call, seen in the tests).

Import this module before the first MLflow call (the registry modules do, at their top).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before mlflow reads it

import mlflow.utils.plugins as plugins

SKIPPED = {("mlflow.request_header_provider", "feast")}
_installed = plugins.get_entry_points


def _wanted_entry_points(group: str) -> list[Any]:
    return [ep for ep in _installed(group) if (group, ep.name) not in SKIPPED]


# MLflow's registry module binds the name when it is imported, on the first request: this
# must run before then.
plugins.get_entry_points = _wanted_entry_points
