"""The prediction log never fails or slows a request, survives a torn line, and keeps only
its retention."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiinfra.runtime.prediction_log import PredictionLog, day_file, read_entries

RESPONSE = {"model_version": "3", "predictions": [{"value": 1.5}]}


def test_an_unwritable_log_loses_lines_but_never_raises(tmp_path: Path) -> None:
    """A regular file where the directory should be: as for a full disk or a read-only
    volume, every write fails (and the test holds even when run as root)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    log = PredictionLog(blocker / "predictions", sample_rate=1.0)
    for _ in range(3):
        assert log.record([{"id": 1}], RESPONSE)  # before the fix: NotADirectoryError here
    log.flush()
    assert log.write_errors == 3


def test_lines_are_written_in_the_background_whole(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, sample_rate=1.0)
    for i in range(50):
        log.record([{"id": i}], RESPONSE)
    log.flush()
    entries = list(read_entries(tmp_path, datetime.now(UTC) - timedelta(minutes=1)))
    assert [e["request"]["id"] for e in entries] == list(range(50))
    assert entries[0]["model_version"] == "3" and entries[0]["answer"] == {"value": 1.5}


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    whole = json.dumps({"at": now.isoformat(), "request": {"id": 1}, "answer": {}})
    day_file(tmp_path, now).write_text(whole + "\n" + whole[: len(whole) // 2])
    entries = list(read_entries(tmp_path, now - timedelta(minutes=1)))
    assert [e["request"]["id"] for e in entries] == [1]


def test_files_past_the_retention_are_deleted_when_a_new_day_starts(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old, kept = now - timedelta(days=10), now - timedelta(days=2)
    for day in (old, kept):
        day_file(tmp_path, day).write_text("{}\n")
    log = PredictionLog(tmp_path, sample_rate=1.0, retention_days=7)
    log.record([{"id": 1}], RESPONSE)
    log.flush()
    assert not day_file(tmp_path, old).exists()
    assert day_file(tmp_path, kept).exists() and day_file(tmp_path, now).exists()


def test_a_stalled_disk_drops_and_counts_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled = threading.Event()
    monkeypatch.setattr(PredictionLog, "_write", lambda self, when, lines: stalled.wait(30))
    log = PredictionLog(tmp_path, sample_rate=1.0, capacity=5)
    started = time.perf_counter()
    for _ in range(100):
        log.record([{"id": 1}], RESPONSE)
    assert time.perf_counter() - started < 1  # the requests never waited on the disk
    assert 94 <= log.dropped <= 95  # 5 queued, maybe 1 taken by the stalled writer
    stalled.set()
    log.flush()
