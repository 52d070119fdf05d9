"""The training step as a process: in this one, or as data-parallel ranks under torchrun.

The KFP train task calls :func:`train_to_dir` (one process) or :func:`run_torchrun` (when
``training.nproc_per_node`` > 1). A PyTorchJob (:mod:`aiinfra.training_job`) runs this module
under torchrun in every pod, and a person can too::

    python -m aiinfra.launch --config configs/smoke.yaml --training-set ts.parquet --model-dir m
    torchrun --standalone --nproc_per_node 2 -m aiinfra.launch --config ... (same arguments)

Started again after being killed, it resumes from the last checkpoint in ``--checkpoint-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from aiinfra import distributed, search, train
from aiinfra.config import PlatformConfig, config_from_json, load_config

log = logging.getLogger(__name__)
CONFIG_ENV = "AIINFRA_CONFIG_JSON"


def checkpoint_dir_for(config: PlatformConfig, model_dir: Path) -> Path:
    """Configured, or beside the model output: the run's own artifact location."""
    return config.training.checkpoint_dir or model_dir.parent / f"{model_dir.name}-checkpoints"


def train_to_dir(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    checkpoint_dir: Path | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on the training part of the set; rank 0 saves the model. Returns the summary."""
    training = search.apply(config.training, hyperparameters or {})
    frame = pd.read_parquet(training_set)
    train_part, _ = train.split_by_time(frame, training.eval_fraction)
    result = train.train(train_part, training, checkpoint_dir)
    if distributed.from_env().is_main:
        result.model.save(model_dir)
    return summarize(result, len(train_part), hyperparameters or {})


def summarize(
    result: train.TrainResult, train_rows: int, hyperparameters: dict[str, Any]
) -> dict[str, Any]:
    """What the pipeline passes on: numbers become metrics, the rest params and tags."""
    chosen = result.history[result.model_epoch]
    return {
        "device": result.device,
        "precision": result.precision,
        "world_size": result.world_size,
        "train_seconds": round(result.seconds, 3),
        "samples_per_second": round(result.samples_per_second, 1),
        "train_loss": chosen["train_loss"],
        "val_loss": chosen["val_loss"],
        "best_val_loss": min(row["val_loss"] for row in result.history),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": int(result.stopped_early),
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_rows": train_rows,
        **result.usage,
        "history": result.history,
        "hyperparameters": hyperparameters,
    }


def run_torchrun(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    nproc: int,
    checkpoint_dir: Path | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``nproc`` data-parallel processes on this machine; returns rank 0's summary."""
    with tempfile.TemporaryDirectory(prefix="aiinfra-torchrun-") as tmp:
        config_file, summary = Path(tmp) / "config.json", Path(tmp) / "summary.json"
        config_file.write_text(config.to_json())
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "aiinfra.launch",
            "--config-json",
            str(config_file),
            "--training-set",
            str(training_set),
            "--model-dir",
            str(model_dir),
            "--summary",
            str(summary),
            "--hyperparameters",
            json.dumps(hyperparameters or {}),
        ]
        if checkpoint_dir is not None:
            command += ["--checkpoint-dir", str(checkpoint_dir)]
        done = subprocess.run(command, check=False)
        if done.returncode != 0 or not summary.exists():
            raise RuntimeError(f"torchrun with {nproc} processes failed (exit {done.returncode})")
        result: dict[str, Any] = json.loads(summary.read_text())
        return result


def _config(args: argparse.Namespace) -> PlatformConfig:
    if args.config_json:
        return config_from_json(Path(args.config_json).read_text())
    if args.config is None and os.environ.get(CONFIG_ENV):
        return config_from_json(os.environ[CONFIG_ENV])
    return load_config(args.config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiinfra.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML profile (default configs/local.yaml)")
    parser.add_argument("--config-json", type=Path, help=f"the config as JSON (or ${CONFIG_ENV})")
    parser.add_argument("--training-set", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, help="default: beside --model-dir")
    parser.add_argument("--hyperparameters", default="{}", help="JSON overrides of training.*")
    parser.add_argument("--summary", type=Path, help="write the summary here (JSON)")
    args = parser.parse_args(argv)
    ctx = distributed.from_env()
    logging.basicConfig(
        level=logging.INFO if ctx.is_main else logging.WARNING,
        format=f"[rank {ctx.rank}] %(levelname)s %(name)s: %(message)s",
    )
    config = _config(args)
    checkpoints = args.checkpoint_dir or checkpoint_dir_for(config, args.model_dir)
    try:
        summary = train_to_dir(
            config, args.training_set, args.model_dir, checkpoints, json.loads(args.hyperparameters)
        )
    finally:
        distributed.shutdown()
    if ctx.is_main:
        text = json.dumps(summary, indent=2)
        if args.summary:
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(text)
        else:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
