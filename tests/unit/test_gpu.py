"""GPU paths. On a CUDA machine: bf16 autocast, torch.compile and NVML energy in a real run.
Everywhere: the prepared GPU benchmark runs (as a dry run on the CPU), so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from aiinfra.project.config import PROJECT_ROOT, ModelConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.training import train


def test_gpu_benchmark_runs_as_a_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu.train_gpu", "--dry-run", "--json", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["dry_run"] is True
    assert [r["precision"] for r in report["results"]] == ["fp32", "fp32"]  # bf16 -> fp32 on CPU
    for result in report["results"]:
        assert result["throughput"]["ours"] > 0 and result["throughput"]["hand"] > 0
        assert result["flops"]["mlp"] > 0 and result["flops"]["matmul_peak"] > 0
    assert "DRY RUN" in done.stdout and "ratio vs hand" in done.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_uses_bf16_compile_and_reports_the_gpu(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    config = TrainingConfig(epochs=3, device="cuda", compile=True)
    model = ModelConfig(settings={"hidden_sizes": [32, 16]})
    result = train.train(training_frame, schema, config, model)
    assert result.device.startswith("cuda") and result.precision == "bf16"
    assert result.usage["device_name"] == torch.cuda.get_device_name(0)
    assert result.usage["peak_memory_mb"] > 0
    assert result.usage["energy_source"] in {"nvml", "unavailable"}
    assert next(result.model.network.parameters()).device.type == "cpu"  # saved from the CPU
