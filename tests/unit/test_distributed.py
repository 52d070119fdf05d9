"""Data-parallel training: 2 processes under torchrun (gloo, CPU) against one process.

Tolerance: with dropout off, two ranks compute the same gradient as one process up to the order
of floating-point sums (each rank sums its half of a batch, gloo adds the halves), so after the
smoke run's 8 epochs weights agree to 1e-5 absolute and losses to 1e-5 relative; what we see is
~1e-7. With dropout on, each rank draws its own masks, so the runs are equally good but not
equal, and no such comparison holds.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from aiinfra import steps
from aiinfra.data.training_set import write_training_set
from aiinfra.project.config import ModelConfig, PlatformConfig, TrainingConfig, load_config
from aiinfra.project.schema import Schema
from aiinfra.training import distributed, launcher
from aiinfra.training.checkpoint import CheckpointStore
from aiinfra.training.job import train_to_directory
from aiinfra.training.model import TabularModel
from tests.conftest import SMOKE


def smoke(home: Path, dropout: float | None = None, **training: Any) -> PlatformConfig:
    """The smoke profile with some training settings (and the MLP's dropout) changed (an
    override passed to load_config would replace its whole training section)."""
    config = load_config(SMOKE, home=home)
    config.training = TrainingConfig.model_validate({**config.training.model_dump(), **training})
    if dropout is not None:
        settings = {**config.model.settings, "dropout": dropout}
        config.model = ModelConfig(entry_point=config.model.entry_point, settings=settings)
    return config


WEIGHT_ATOL = 1e-5
LOSS_RTOL = 1e-5


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_every_row_once(world: int) -> None:
    for rows in (1, 2, 7, 128, 129):
        parts = [
            distributed.shard_bounds(rows, distributed.Context(r, r, world)) for r in range(world)
        ]
        assert parts[0][0] == 0 and parts[-1][1] == rows
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
        sizes = [hi - lo for lo, hi in parts]
        assert max(sizes) - min(sizes) <= 1


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return TabularModel.load(model_dir).network.state_dict()


def test_two_processes_match_one_and_resume(
    training_frame: pd.DataFrame, schema: Schema, tmp_path: Path
) -> None:
    training: dict[str, Any] = {"epochs": 6, "checkpoint_every_epochs": 2, "progress": "off"}
    config = smoke(tmp_path, 0.0, **training, nproc_per_node=2)  # smoke: device cpu, so gloo
    training_set = tmp_path / "training_set.parquet"
    write_training_set(training_frame, schema, training_set)

    # The train step runs torchrun itself when nproc_per_node > 1.
    ddp = steps.train_model(config, training_set, tmp_path / "ddp")
    single_config = smoke(tmp_path, 0.0, **training)
    single = train_to_directory(single_config, training_set, tmp_path / "single")

    assert (ddp.world_size, single.world_size) == (2, 1)
    assert ddp.usage["devices"] == 2 and ddp.samples_per_second > 0
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=WEIGHT_ATOL) for k in a)
    for got, want in zip(ddp.history, single.history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=LOSS_RTOL)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=LOSS_RTOL)

    # Drop the last checkpoint as if both ranks died after epoch 4: a restart resumes there
    # (rank 0 picks the checkpoint, every rank loads its own RNG state) and ends bit-identical.
    (run,) = (tmp_path / "ddp-checkpoints").iterdir()
    store = CheckpointStore(run)
    assert store.epochs() == [4, 6]
    store.path(6).unlink()
    resumed = launcher.run_torchrun(
        config,
        training_set,
        tmp_path / "ddp-resumed",
        2,
        checkpoint_dir=tmp_path / "ddp-checkpoints",
    )
    assert resumed.resumed_from_epoch == 4
    c = _weights(tmp_path / "ddp-resumed")
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in ddp.history]
