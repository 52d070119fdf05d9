"""Closed-loop clients for the end-to-end tests: each sends a request, waits for the answer,
and sends the next, until stopped. Every outcome is kept (status code, or the error's repr),
with its latency, so a test can assert "zero failures" and report percentiles."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np


@dataclass
class Outcome:
    endpoint: str
    status: int | str  # an HTTP status, or the repr of a transport error
    seconds: float
    version: str | None = None


@dataclass
class Load:
    """``clients`` threads posting ``body`` to each of ``endpoints`` in turn."""

    url: str
    body: dict[str, object]
    clients: int = 4
    endpoints: tuple[str, ...] = ("predict",)
    timeout: float = 10
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)
        ]

    @property
    def statuses(self) -> list[int | str]:
        return [o.status for o in self.outcomes]

    @property
    def versions(self) -> set[str]:
        return {o.version for o in self.outcomes if o.version is not None}

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def percentile(self, q: float, endpoint: str | None = None) -> float:
        seconds = [o.seconds for o in self.outcomes if endpoint in (None, o.endpoint)]
        return float(np.percentile(seconds, q)) if seconds else float("nan")

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            turn = index
            while not self._stop.is_set():
                endpoint = self.endpoints[turn % len(self.endpoints)]
                turn += 1
                started = time.perf_counter()
                try:
                    response = client.post(f"{self.url}/{endpoint}", json=self.body)
                except httpx.HTTPError as exc:
                    self.outcomes.append(
                        Outcome(endpoint, repr(exc), time.perf_counter() - started)
                    )
                    continue
                elapsed = time.perf_counter() - started
                version = None
                if response.status_code == 200:
                    answer = response.json()
                    version = (answer[0] if isinstance(answer, list) else answer)["model_version"]
                self.outcomes.append(Outcome(endpoint, response.status_code, elapsed, version))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
