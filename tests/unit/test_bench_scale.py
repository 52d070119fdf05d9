"""The scale benchmark's measurements: a step's peak memory is its own (an earlier spike does
not count), and the record on disk names the running step, so a killed size names where."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import scale

MIB = 1024 * 1024


def _touch(mib: int) -> np.ndarray:
    """``mib`` MiB resident (every page written)."""
    return np.ones(mib * MIB, dtype=np.uint8)


@pytest.mark.parametrize("kernel_mark", [True, False], ids=["kernel-mark", "sampling"])
def test_peak_is_the_steps_own(kernel_mark: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel_mark and not scale._reset_kernel_peak():
        pytest.skip("the kernel's high-water mark cannot be reset here")
    if not kernel_mark:
        monkeypatch.setattr(scale, "_reset_kernel_peak", lambda: False)
    spike = _touch(400)  # before the step: not its peak
    del spike
    figures: dict[str, float] = {}
    with scale.peak_rss(figures):
        held = _touch(150)
        time.sleep(0.1)  # the sampler's period is 20 ms
        del held
    assert figures["peak_mib"] - figures["start_mib"] >= 140
    assert figures["peak_mib"] - figures["start_mib"] < 350


def test_record_names_the_running_step_and_keeps_a_failed_steps_figures(
    tmp_path: Path,
) -> None:
    path = tmp_path / "record.json"
    recorder = scale.StepRecorder(path, rows=1000)
    seen_running = recorder.step("first", lambda: json.loads(path.read_text())["running"])
    assert seen_running == "first"

    def raising(exc: Exception) -> None:
        raise exc

    assert (
        recorder.step("tolerated", lambda: raising(ValueError("bad data")), (ValueError,)) is None
    )
    with pytest.raises(RuntimeError):
        recorder.step("fatal", lambda: raising(RuntimeError("boom")))
    record = json.loads(path.read_text())
    assert set(record["steps"]) == {"first", "tolerated", "fatal"}
    assert record["running"] is None
    assert record["tolerated"] == [{"step": "tolerated", "error": "ValueError: bad data"}]
    assert record["failed"] == {"step": "fatal", "error": "RuntimeError: boom"}
