"""Checkpoints: atomic files, safe loading, and a run killed with SIGKILL that resumes and ends
bit-identical to one that was never interrupted (CPU, deterministic settings)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from aiinfra.data.training_set import write_training_set
from aiinfra.project.config import ModelConfig, PlatformConfig, TrainingConfig, load_config
from aiinfra.project.schema import Schema
from aiinfra.training import checkpoint, train
from aiinfra.training.model import TabularModel
from tests.conftest import SMOKE


def smoke(home: Path, **training: Any) -> PlatformConfig:
    """The smoke profile with some training settings changed (an override passed to
    load_config would replace its whole training section)."""
    config = load_config(SMOKE, home=home)
    config.training = TrainingConfig.model_validate({**config.training.model_dump(), **training})
    return config


def _state(value: float) -> dict[str, object]:
    return {"model": {"w": torch.full((3,), value)}, "loop": {"history": [{"val_loss": value}]}}


def test_save_is_atomic_keeps_the_newest_and_skips_damaged_files(tmp_path: Path) -> None:
    store = checkpoint.CheckpointStore.for_run(tmp_path, "abc", keep=2)
    for epoch in (1, 2, 3):
        store.save(epoch, _state(float(epoch)))
    assert store.epochs() == [2, 3]  # pruned to `keep`
    assert [p.name for p in store.directory.iterdir() if p.name.endswith(".tmp")] == []
    # A kill mid-write leaves only a temporary file: it is never taken for a checkpoint.
    (store.directory / ".epoch-00004.pt.999.tmp").write_bytes(b"half a checkpoint")
    latest = store.latest()
    assert latest is not None and latest["epoch"] == 3
    assert torch.equal(latest["model"]["w"], torch.full((3,), 3.0))
    # A damaged newest file (disk trouble) falls back to the one before.
    store.path(3).write_bytes(b"garbage")
    latest = store.latest()
    assert latest is not None and latest["epoch"] == 2


def test_loading_refuses_code(tmp_path: Path) -> None:
    store = checkpoint.CheckpointStore.for_run(tmp_path, "abc")
    store.directory.mkdir(parents=True)
    # A pickle that would run code on load: weights_only loading rejects it.
    torch.save({"format_version": 1, "epoch": 1, "evil": print}, store.path(1))
    assert store.latest() is None


def test_fingerprint_follows_settings_data_and_ranks() -> None:
    x, y = torch.ones(4, 2), torch.zeros(4)
    base = checkpoint.fingerprint({"lr": 0.1}, x, y)
    assert base == checkpoint.fingerprint({"lr": 0.1}, x.clone(), y.clone())
    assert base != checkpoint.fingerprint({"lr": 0.2}, x, y)
    assert base != checkpoint.fingerprint({"lr": 0.1}, x * 2, y)
    assert base != checkpoint.fingerprint({"lr": 0.1}, x, y, world_size=2)


def test_rng_states_round_trip(tmp_path: Path) -> None:
    shuffle = torch.Generator().manual_seed(3)
    saved = checkpoint.rng_state(shuffle)
    store = checkpoint.CheckpointStore.for_run(tmp_path, "rng")
    store.save(1, {"rng": [saved]})
    expected = (
        torch.rand(3),
        torch.randperm(9, generator=shuffle),
        np.random.rand(),
        random.random(),
    )
    loaded = store.latest()
    assert loaded is not None
    checkpoint.restore_rng(loaded["rng"][0], shuffle)
    again = (torch.rand(3), torch.randperm(9, generator=shuffle), np.random.rand(), random.random())
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_killed_run_resumes_and_ends_bit_identical(
    training_frame: pd.DataFrame, schema: Schema, tmp_path: Path
) -> None:
    epochs, every = 150, 5
    config = smoke(tmp_path, epochs=epochs, checkpoint_every_epochs=every, progress="off")
    training_set, config_file = tmp_path / "training_set.parquet", tmp_path / "config.json"
    write_training_set(training_frame, schema, training_set)
    config_file.write_text(config.to_json())
    checkpoints, model_dir, summary = tmp_path / "ckpt", tmp_path / "model", tmp_path / "sum.json"
    command = [sys.executable, "-m", "aiinfra.training.launcher", "--config-json", str(config_file),
               "--training-set", str(training_set), "--model-dir", str(model_dir),
               "--checkpoint-dir", str(checkpoints), "--summary", str(summary)]  # fmt: skip

    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not list(checkpoints.rglob("epoch-*.pt")):
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.002)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    assert not model_dir.exists() and not summary.exists()  # it really died mid-run

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    resumed = json.loads(summary.read_text())
    assert every <= resumed["resumed_from_epoch"] < epochs
    assert resumed["resumed_from_epoch"] % every == 0
    assert resumed["epochs_run"] == epochs

    # The same run, never interrupted (in this process, without checkpoints).
    train_part, _ = train.split_by_time(training_frame, config.training.eval_fraction, schema)
    reference = train.train(train_part, schema, config.training, config.model)
    got = TabularModel.load(model_dir).network.state_dict()
    want = reference.model.network.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    losses = [(r["train_loss"], r["val_loss"], r["lr"]) for r in reference.history]
    assert [(r["train_loss"], r["val_loss"], r["lr"]) for r in resumed["history"]] == losses


@pytest.mark.parametrize(("every", "kept"), [(0, None), (3, [3, 6])])
def test_checkpoint_interval(
    training_frame: pd.DataFrame,
    schema: Schema,
    tmp_path: Path,
    every: int,
    kept: list[int] | None,
) -> None:
    config = TrainingConfig(epochs=7, device="cpu", checkpoint_every_epochs=every)
    model = ModelConfig(settings={"hidden_sizes": [8]})
    train.train(training_frame, schema, config, model, checkpoint_dir=tmp_path)
    runs = list(tmp_path.iterdir())
    if kept is None:
        assert runs == []  # 0: no checkpoints at all
    else:
        (run,) = runs
        assert checkpoint.CheckpointStore(run).epochs() == kept
