"""A canary: a share of live requests answered by the challenger, stopped by itself when it
does worse than the champion.

With ``serving.canary_percent`` above 0, that share of ``/predict`` requests is answered by
``@challenger`` (each response names the version that answered). Both versions' recent
outcomes are kept (errors and forward-pass latency, the last ``window`` requests each); once
each has ``min_requests``, the canary stops when the challenger's error rate exceeds the
champion's by more than ``max_error_rate_increase`` or its p95 latency is more than
``max_latency_ratio`` times the champion's. A request the challenger fails is answered by the
champion (no failed request is caused by a canary). The reason a canary stopped is recorded on
the challenger's version (tag ``canary_stopped``) by the ``on_stop`` callback.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aiinfra.project.config import CanaryConfig
from aiinfra.runtime.champion import Served

log = logging.getLogger(__name__)


@dataclass
class _Outcomes:
    """The recent requests of one version: whether each failed, and its latency."""

    failed: deque[bool]
    latency_ms: deque[float]

    def error_rate(self) -> float:
        return sum(self.failed) / len(self.failed)

    def p95(self) -> float:
        return float(np.percentile(list(self.latency_ms), 95))


class Canary:
    def __init__(self, settings: CanaryConfig, on_stop: Callable[[str, str], None]) -> None:
        self.settings = settings
        self.on_stop = on_stop  # (challenger version, reason)
        self.stopped: dict[str, str] = {}  # challenger version -> why its canary stopped
        self._outcomes: dict[str, _Outcomes] = {}
        self._random = random.Random()
        self._lock = threading.Lock()

    def choose(self, champion: Served, challenger: Served | None) -> Served:
        """Who answers this request."""
        percent = self.settings.percent
        if challenger is None or challenger.version == champion.version or percent <= 0:
            return champion
        if challenger.version in self.stopped:
            return champion
        return challenger if self._random.random() * 100 < percent else champion

    def observe(
        self, version: str, failed: bool, latency_ms: float, champion: str, challenger: str | None
    ) -> None:
        """Record one request's outcome; stop the canary when the challenger does worse."""
        if challenger is None or challenger == champion or challenger in self.stopped:
            return
        with self._lock:
            window = self.settings.window
            outcomes = self._outcomes.setdefault(
                version, _Outcomes(deque(maxlen=window), deque(maxlen=window))
            )
            outcomes.failed.append(failed)
            outcomes.latency_ms.append(latency_ms)
            reason = self._worse(champion, challenger)
            if reason is None:
                return
            self.stopped[challenger] = reason
        log.warning("canary of version %s stopped: %s", challenger, reason)
        threading.Thread(
            target=self.on_stop, args=(challenger, reason), name="canary-stop", daemon=True
        ).start()

    def _worse(self, champion: str, challenger: str) -> str | None:
        ours, theirs = self._outcomes.get(champion), self._outcomes.get(challenger)
        enough = self.settings.min_requests
        if ours is None or theirs is None or min(len(ours.failed), len(theirs.failed)) < enough:
            return None
        s = self.settings
        if theirs.error_rate() > ours.error_rate() + s.max_error_rate_increase:
            return (
                f"error rate {theirs.error_rate():.1%} against the champion's "
                f"{ours.error_rate():.1%} (allowed: +{s.max_error_rate_increase:.1%}) over the "
                f"last {len(theirs.failed)} requests"
            )
        if theirs.p95() > ours.p95() * s.max_latency_ratio:
            return (
                f"p95 latency {theirs.p95():.2f} ms against the champion's {ours.p95():.2f} ms "
                f"(allowed: x{s.max_latency_ratio:g}) over the last {len(theirs.failed)} requests"
            )
        return None
