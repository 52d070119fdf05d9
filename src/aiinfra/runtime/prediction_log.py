"""Sampled requests and their answers as JSON lines, one file per day: what the model was
asked, what it answered, which version (the sink for drift monitoring and retraining)."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class PredictionLog:
    """Appends sampled requests and their answers as JSON lines, one file per day."""

    def __init__(self, directory: Path, sample_rate: float, seed: int | None = None) -> None:
        self.directory = directory
        self.sample_rate = sample_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def record(self, rows: list[dict[str, Any]], response: dict[str, Any]) -> bool:
        """Log ``rows`` with the answers of a /predict ``response``; True if sampled."""
        if self.sample_rate <= 0 or self._random.random() >= self.sample_rate:
            return False
        now = datetime.now(UTC)
        lines = [
            json.dumps(
                {
                    "at": now.isoformat(timespec="milliseconds"),
                    "model_version": response["model_version"],
                    "request": row,
                    "answer": answer,
                },
                default=str,
            )
            for row, answer in zip(rows, response["predictions"], strict=True)
        ]
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"predictions-{now:%Y-%m-%d}.jsonl"
        with self._lock, path.open("a") as sink:
            sink.write("\n".join(lines) + "\n")
        return True
