"""Which device and precision a run uses, and the settings that make it reproducible.

One training loop serves CPU and CUDA: everything device-specific (bf16 autocast, pinned
host memory and non-blocking copies, ``torch.compile``) is decided here, and on a CPU each of
these is a no-op, so the CPU path is the CUDA path minus the accelerations.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

Precision = Literal["fp32", "bf16"]
# cuBLAS is only deterministic with a fixed workspace; it must be set before its first use.
_CUBLAS_WORKSPACE = ":4096:8"


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else CPU. Data-parallel ranks each get their own GPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is available")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        visible = torch.cuda.device_count()
        if local_rank >= visible:  # two ranks on one GPU would fail inside NCCL, obscurely
            raise RuntimeError(
                f"local rank {local_rank} has no GPU of its own ({visible} visible): "
                f"use at most {visible} processes per node"
            )
        return torch.device("cuda", local_rank)
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """bf16 only on a CUDA device that supports it; a CPU always trains in fp32.

    (CPU bf16 autocast exists but is slower than fp32 on CPUs without AMX, and the promise is
    that the CPU loop is the plain one.)
    """
    if device.type != "cuda":
        return "fp32"
    if requested in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return "bf16"
    if requested == "bf16":
        raise RuntimeError(f"training.precision is bf16 but {device_name(device)} lacks bf16")
    return "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed precision for the forward pass: matmuls in bf16, reductions and loss in fp32.

    bf16 has fp32's exponent range, so no loss scaling (GradScaler) is needed.
    """
    if precision == "bf16" and device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def set_determinism(enabled: bool, device: torch.device) -> None:
    """Deterministic kernels (a process-wide switch in torch). ``warn_only``: an op without a
    deterministic version warns rather than failing a run."""
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def set_cpu_threads(threads: int | None, device: torch.device) -> None:
    """torch's intra-op threads for a CPU run (None: torch's default, one per core). A small
    network's kernels are too short to split: on a 2-core machine whose other core is busy
    (a second test worker, a server), two threads ran ~5x slower than one."""
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy host data to the device once: from pinned memory and asynchronously on CUDA."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def maybe_compile(module: nn.Module, enabled: bool, device: torch.device) -> nn.Module:
    """``torch.compile`` on CUDA only: on CPU it would need a C++ toolchain at run time and
    buys little for an MLP this size."""
    if enabled and device.type == "cuda":
        compiled: nn.Module = torch.compile(module)  # type: ignore[assignment]
        return compiled
    return module


def device_name(device: torch.device) -> str:
    """Human-readable name of the device, e.g. ``NVIDIA H200`` or the CPU model."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return cpu_model()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a timer measures work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
