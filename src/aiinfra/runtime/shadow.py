"""Shadow traffic: the challenger answers a copy of live requests, after the caller has its
answer, and its answers are only logged.

With ``serving.shadow`` on, the service also loads ``@challenger``. For a share of the
``/predict`` requests (``serving.shadow_share``) the challenger runs on the same stored
features in a background thread, once the champion's answer is on its way: the caller never
waits for it and never sees it. Each shadowed request is logged under
``<home>/serving/shadow/`` with its request id, both versions' answers and both forward-pass
latencies; ``aiinfra shadow-report`` compares them (:mod:`aiinfra.monitoring.shadow_report`).
A backlog is never allowed to grow: when the background thread is behind, a request is not
shadowed (counted as skipped).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aiinfra.runtime.champion import Served
from aiinfra.runtime.prediction_log import PredictionLog

log = logging.getLogger(__name__)
MAX_PENDING = 64  # shadowed requests waiting for the background thread


@dataclass(frozen=True)
class _Job:
    """One shadowed request, as the background thread gets it."""

    challenger: Served
    features: pd.DataFrame
    rows: list[dict[str, Any]]
    champion_response: dict[str, Any]
    champion_ms: float
    request_id: str | None


class Shadow:
    def __init__(self, log_dir: Path, share: float, retention_days: int = 30) -> None:
        self.share = share
        self.log = PredictionLog(log_dir, 1.0, retention_days)  # the share is drawn here
        self.skipped = 0  # requests not shadowed because the thread was behind
        self.failed = 0  # challenger answers that raised
        self._random = random.Random()
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")

    def send(
        self,
        challenger: Served | None,
        champion: Served,
        features: pd.DataFrame,
        rows: list[dict[str, Any]],
        champion_response: dict[str, Any],
        champion_ms: float,
        request_id: str | None,
    ) -> bool:
        """Queue the challenger's run on this request; True if it was queued."""
        if challenger is None or challenger.version == champion.version:
            return False
        if self._random.random() >= self.share:
            return False
        with self._lock:
            if self._pending >= MAX_PENDING:
                self.skipped += 1
                return False
            self._pending += 1
        job = _Job(challenger, features, rows, champion_response, champion_ms, request_id)
        self._executor.submit(self._run, job)
        return True

    def _run(self, job: _Job) -> None:
        from aiinfra.runtime.api import answers

        try:
            started = time.perf_counter()
            model = job.challenger.model
            predicted = answers(model.schema, model.classes, model.predict(job.features))
            spent = (time.perf_counter() - started) * 1000
            champion = job.champion_response
            self.log.record(
                job.rows,
                {
                    "model_name": champion.get("model_name"),
                    "model_version": job.challenger.version,
                    "predictions": predicted,
                },
                None,
                job.request_id,
                extra={
                    "champion_version": champion["model_version"],
                    "latency_ms": round(spent, 3),
                    "champion_latency_ms": round(job.champion_ms, 3),
                },
                per_row=[{"champion_answer": a} for a in champion["predictions"]],
            )
        except Exception:  # the challenger's failure is its own; the caller was answered
            self.failed += 1
            log.exception("shadow prediction of version %s failed", job.challenger.version)
        finally:
            with self._lock:
                self._pending -= 1

    def flush(self) -> None:
        """Wait for the queued shadow runs and their log lines (tests, shutdown)."""
        self._executor.submit(lambda: None).result()
        self.log.flush()
