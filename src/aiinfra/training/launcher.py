"""The training job as a process of its own: data-parallel ranks under torchrun.

The KFP train task trains in its own process (:func:`.job.train_to_directory`), or calls
:func:`run_torchrun` when ``training.nproc_per_node`` > 1. A PyTorchJob
(:mod:`aiinfra.ops.training_job`) runs this module under torchrun in every pod, and a person
can too::

    python -m aiinfra.training.launcher --config configs/smoke.yaml \
        --training-set ts.parquet --model-dir m
    torchrun --standalone --nproc_per_node 2 -m aiinfra.training.launcher --config ... (same)

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

from aiinfra.project.config import PlatformConfig, config_from_json, load_config
from aiinfra.training import distributed
from aiinfra.training.job import TrainingSummary, checkpoint_dir_for, train_to_directory

log = logging.getLogger(__name__)
CONFIG_ENV = "AIINFRA_CONFIG_JSON"


def run_torchrun(
    config: PlatformConfig,
    training_set: Path,
    model_dir: Path,
    nproc: int,
    checkpoint_dir: Path | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> TrainingSummary:
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
            "aiinfra.training.launcher",
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
        return TrainingSummary.from_json(summary.read_text())


def _config(args: argparse.Namespace) -> PlatformConfig:
    if args.config_json:
        return config_from_json(Path(args.config_json).read_text())
    if args.config is None and os.environ.get(CONFIG_ENV):
        return config_from_json(os.environ[CONFIG_ENV])
    return load_config(args.config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiinfra.training.launcher",
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
        summary = train_to_directory(
            config, args.training_set, args.model_dir, checkpoints, json.loads(args.hyperparameters)
        )
    finally:
        distributed.shutdown()
    if ctx.is_main:
        text = summary.to_json()
        if args.summary:
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(text)
        else:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
