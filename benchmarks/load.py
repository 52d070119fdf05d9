"""A small closed-loop HTTP load generator for benchmarks/serving.py.

``concurrency`` clients each send one request, wait for the answer, and send the next, until
either ``max_requests`` have been sent or ``max_seconds`` have passed. Latency and throughput
count answered 200s only; anything else is tallied in ``errors`` by status code or exception.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    ok: int
    seconds: float
    latencies_s: list[float] = field(repr=False)
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return (
            float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "ok": self.ok,
            "errors": self.errors,
            "rps": self.rps,
            "p50_ms": self.percentile_ms(50),
            "p99_ms": self.percentile_ms(99),
        }


async def _drive(
    url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> LoadResult:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    # One connection per client, kept alive: we measure the server, not TCP handshakes.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one_client(deadline: float) -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=JSON)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[str(response.status_code)] += 1

        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(*(one_client(deadline) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(concurrency, len(latencies), elapsed, latencies, dict(errors))


def run_load(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup: int = 20,
) -> LoadResult:
    """Warm up (connections, lazy imports, caches), then measure one load level."""
    asyncio.run(_drive(url, bodies, concurrency, max(warmup, concurrency), max_seconds))
    return asyncio.run(_drive(url, bodies, concurrency, max_requests, max_seconds))
