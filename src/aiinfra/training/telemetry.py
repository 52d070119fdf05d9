"""What a training run used: wall time, peak memory, energy where the hardware reports it, cost.

Energy comes from the hardware's own counters: NVML's total-energy counter on NVIDIA GPUs
(Volta and newer), the RAPL package counters under ``/sys/class/powercap`` on CPUs when they
are readable (recent kernels make them root-only). RAPL measures the whole CPU package, so on a
shared machine it includes other processes' work. When neither is available, the run records
the energy as ``unavailable`` rather than a guess.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aiinfra.training.hardware import device_name

log = logging.getLogger(__name__)

POWERCAP = Path("/sys/class/powercap")
EnergyReader = Callable[[], float]  # joules since some fixed origin


def nvml_energy(device: torch.device) -> EnergyReader | None:
    """Reader of the GPU's energy counter (mJ in NVML), or None when NVML cannot give it."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, device)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises where unsupported
    except Exception as exc:  # no driver, no library, or a GPU without the counter
        log.info("NVML energy unavailable: %s", exc)
        return None
    return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0


def _nvml_handle(pynvml: Any, device: torch.device) -> Any:
    # CUDA and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES): match by UUID.
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except Exception:
            log.debug("NVML has no GPU-%s; falling back to index %d", uuid, index)
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def rapl_energy(root: Path = POWERCAP) -> EnergyReader | None:
    """Reader summing the RAPL package domains (``intel-rapl:N``), or None if not readable.

    The counters wrap at ``max_energy_range_uj``; the reader keeps a running total across
    wraps, so it must be called at least once per wrap period (minutes at full load).
    """
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    try:
        ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        last = [int((d / "energy_uj").read_text()) for d in domains]
    except (OSError, ValueError) as exc:
        log.info("RAPL energy unavailable: %s", exc)
        return None
    if not domains:
        return None
    total = [0.0]

    def read() -> float:
        for i, domain in enumerate(domains):
            now = int((domain / "energy_uj").read_text())
            delta = now - last[i]
            total[0] += (delta if delta >= 0 else delta + ranges[i]) / 1e6
            last[i] = now
        return total[0]

    return read


@dataclass(frozen=True)
class Usage:
    device_name: str
    seconds: float
    peak_memory_mb: float
    energy_joules: float | None
    energy_source: str  # nvml, rapl or unavailable

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device_name": self.device_name,
            "wall_seconds": round(self.seconds, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "energy_source": self.energy_source,
        }
        if self.energy_joules is not None:
            out["energy_joules"] = round(self.energy_joules, 3)
        return out


class Meter:
    """Measures one stretch of work on one device: ``start()``, the work, ``stop()``."""

    def __init__(self, device: torch.device, rapl_root: Path = POWERCAP) -> None:
        self.device = device
        self._rapl_root = rapl_root
        self._energy: EnergyReader | None = None
        self._source = "unavailable"
        self._started = 0.0
        self._energy_start = 0.0

    def start(self) -> Meter:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._energy, self._source = nvml_energy(self.device), "nvml"
        else:
            self._energy, self._source = rapl_energy(self._rapl_root), "rapl"
        if self._energy is None:
            self._source = "unavailable"
        self._energy_start = self._energy() if self._energy else 0.0
        self._started = time.perf_counter()
        return self

    def stop(self) -> Usage:
        seconds = time.perf_counter() - self._started
        energy = self._energy() - self._energy_start if self._energy else None
        return Usage(
            device_name(self.device), seconds, peak_memory_mb(self.device), energy, self._source
        )


def peak_memory_mb(device: torch.device) -> float:
    """Peak tensor memory on a GPU; peak resident memory of the process on a CPU (which
    includes the interpreter and libraries, not only the training's tensors)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cost_estimate(seconds: float, devices: int, price_per_device_hour: float) -> float:
    """What the run cost at the configured price: devices x hours x price."""
    return devices * seconds / 3600.0 * price_per_device_hour


def combine(parts: list[Usage], price_per_device_hour: float) -> dict[str, Any]:
    """One record for a job of ``len(parts)`` ranks (one device each): the longest wall time,
    the highest peak memory, the energy summed (unknown if any rank's is), the cost."""
    energies = [p.energy_joules for p in parts]
    total = Usage(
        parts[0].device_name,
        max(p.seconds for p in parts),
        max(p.peak_memory_mb for p in parts),
        None if None in energies else sum(e for e in energies if e is not None),
        parts[0].energy_source,
    )
    record = total.as_dict()
    record["devices"] = len(parts)
    record["estimated_cost"] = cost_estimate(total.seconds, len(parts), price_per_device_hour)
    return record
