"""What shadow traffic says about a challenger: how many live requests it saw, how often it
agreed with the champion, by how much their answers differ, and the latency of each.

Read from the shadow log the service writes (``aiinfra.runtime.shadow``): one line per
shadowed row with the challenger's answer, the champion's answer and both forward-pass
latencies. "Agree" means the same predicted class (classification), or values within
``value_tolerance`` of each other (regression).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from aiinfra.runtime.prediction_log import read_entries


@dataclass(frozen=True)
class ShadowSummary:
    version: str  # the challenger's
    champion_versions: list[str]
    requests: int
    rows: int
    agreement: float  # share of rows with the same decision
    mean_difference: float  # mean |probability or value difference|
    latency_ms: tuple[float, float]  # the challenger's p50, p95
    champion_latency_ms: tuple[float, float]

    def lines(self) -> list[str]:
        return [
            f"challenger {self.version} against champion {', '.join(self.champion_versions)}",
            f"  requests shadowed  {self.requests} ({self.rows} rows)",
            f"  agreement          {self.agreement:.1%}",
            f"  mean difference    {self.mean_difference:.4g}",
            f"  latency p50 / p95  {self.latency_ms[0]:.2f} / {self.latency_ms[1]:.2f} ms "
            f"(champion {self.champion_latency_ms[0]:.2f} / {self.champion_latency_ms[1]:.2f} ms)",
            "  live metric        needs labels: none are joined to requests yet",
        ]


def summarize(
    shadow_dir: Path, since: datetime, value_tolerance: float = 0.0
) -> dict[str, ShadowSummary]:
    """One summary per challenger version seen in the shadow log since ``since``."""
    by_version: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in read_entries(shadow_dir, since):
        if "champion_answer" in entry:
            by_version[str(entry["model_version"])].append(entry)
    return {v: _summary(v, entries, value_tolerance) for v, entries in by_version.items()}


def _summary(version: str, entries: list[dict[str, Any]], tolerance: float) -> ShadowSummary:
    agree, difference = zip(*(_compare(e, tolerance) for e in entries), strict=True)
    ours = [float(e["latency_ms"]) for e in entries if e.get("row") == 0]
    theirs = [float(e["champion_latency_ms"]) for e in entries if e.get("row") == 0]
    return ShadowSummary(
        version=version,
        champion_versions=sorted({str(e["champion_version"]) for e in entries}, key=int),
        requests=len({e.get("request_id") or id(e) for e in entries}),
        rows=len(entries),
        agreement=float(np.mean(agree)),
        mean_difference=float(np.mean(difference)),
        latency_ms=_p50_p95(ours),
        champion_latency_ms=_p50_p95(theirs),
    )


def _compare(entry: dict[str, Any], tolerance: float) -> tuple[bool, float]:
    """Whether the two answers agree, and their difference (see the module's docstring)."""
    ours, theirs = entry["answer"], entry["champion_answer"]
    if "value" in ours:
        gap = abs(float(ours["value"]) - float(theirs["value"]))
        return gap <= tolerance, gap
    if "probability" in ours:
        gap = abs(float(ours["probability"]) - float(theirs["probability"]))
    else:
        gap = max(
            abs(float(p) - float(theirs["probabilities"][c]))
            for c, p in ours["probabilities"].items()
        )
    return ours["predicted_class"] == theirs["predicted_class"], gap


def _p50_p95(values: list[float]) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    return (float(np.percentile(values, 50)), float(np.percentile(values, 95)))
