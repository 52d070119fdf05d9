"""Sampled requests and their answers as JSON lines, one file per UTC day: what the model was
asked, what it answered, which version (the sink for drift monitoring and retraining).

The request path only hands lines to a bounded queue; a background thread writes them. A full
disk, a read-only directory or a slow volume therefore never fails or slows a prediction: the
lines are dropped and counted instead (``dropped``, ``write_errors``). Files older than the
retention are deleted when a new day's file is started. A reader skips a torn last line (a
crash mid-write) rather than failing on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PREFIX = "predictions-"
SUFFIX = ".jsonl"


def day_file(directory: Path, day: datetime) -> Path:
    return directory / f"{PREFIX}{day:%Y-%m-%d}{SUFFIX}"


class PredictionLog:
    """Appends sampled requests and their answers from a background thread."""

    def __init__(
        self,
        directory: Path,
        sample_rate: float,
        retention_days: int = 30,
        seed: int | None = None,
        capacity: int = 10_000,
    ) -> None:
        self.directory = directory
        self.sample_rate = sample_rate
        self.retention = timedelta(days=retention_days)
        self.dropped = 0  # lines lost because the writer fell behind
        self.write_errors = 0  # batches lost because the disk refused them
        self._random = random.Random(seed)
        self._queue: queue.Queue[tuple[datetime, list[str]]] = queue.Queue(maxsize=capacity)
        self._day: str | None = None
        threading.Thread(target=self._drain, name="prediction-log", daemon=True).start()

    def record(self, rows: list[dict[str, Any]], response: dict[str, Any]) -> bool:
        """Queue ``rows`` with the answers of a /predict ``response``; True if sampled."""
        if self.sample_rate <= 0 or self._random.random() >= self.sample_rate:
            return False
        now = datetime.now(UTC)
        at = now.isoformat(timespec="milliseconds")
        version = response["model_version"]
        lines = [
            json.dumps(
                {"at": at, "model_version": version, "request": row, "answer": answer},
                default=str,
            )
            for row, answer in zip(rows, response["predictions"], strict=True)
        ]
        try:
            self._queue.put_nowait((now, lines))
        except queue.Full:
            self.dropped += len(lines)
        return True

    def flush(self) -> None:
        """Wait until every queued line is written (or counted as lost)."""
        self._queue.join()

    def _drain(self) -> None:
        while True:
            when, lines = self._queue.get()
            try:
                self._write(when, lines)
            except OSError as exc:
                self.write_errors += 1
                if self.write_errors == 1 or self.write_errors % 1000 == 0:
                    log.error(
                        "prediction log not written (%d batches lost): %s", self.write_errors, exc
                    )
            finally:
                self._queue.task_done()

    def _write(self, when: datetime, lines: list[str]) -> None:
        day = f"{when:%Y-%m-%d}"
        if day != self._day:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._prune(when)
            self._day = day
        # One write of whole lines in append mode: concurrent readers see whole lines or none.
        with day_file(self.directory, when).open("a") as sink:
            sink.write("\n".join(lines) + "\n")

    def _prune(self, now: datetime) -> None:
        oldest = f"{PREFIX}{now - self.retention:%Y-%m-%d}{SUFFIX}"
        for path in self.directory.glob(f"{PREFIX}*{SUFFIX}"):
            if path.name < oldest:
                with contextlib.suppress(OSError):
                    path.unlink()


def read_entries(directory: Path, since: datetime) -> Iterator[dict[str, Any]]:
    """Logged entries at or after ``since``, oldest file first; torn lines are skipped."""
    first = day_file(directory, since).name
    for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}")):
        if path.name < first:  # a whole day before the window
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                entry = json.loads(line)
                at = datetime.fromisoformat(entry["at"])
            except (ValueError, KeyError, TypeError):
                log.warning("skipping unreadable line %d of %s", number, path.name)
                continue
            if at >= since:
                yield entry
