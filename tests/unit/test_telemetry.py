"""Telemetry: RAPL energy (on a fake powercap tree, with a counter wrap), peak memory, cost."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiinfra.training import hardware, telemetry


def _domain(root: Path, name: str, energy_uj: int, max_uj: int) -> Path:
    domain = root / name
    domain.mkdir(parents=True)
    (domain / "energy_uj").write_text(str(energy_uj))
    (domain / "max_energy_range_uj").write_text(str(max_uj))
    return domain


def test_rapl_sums_packages_and_survives_a_wrap(tmp_path: Path) -> None:
    package0 = _domain(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    package1 = _domain(tmp_path, "intel-rapl:1", 5_000_000, 10_000_000)
    _domain(tmp_path, "intel-rapl:0:0", 123, 10_000_000)  # a sub-zone (core): inside package 0
    read = telemetry.rapl_energy(tmp_path)
    assert read is not None and read() == 0.0
    (package0 / "energy_uj").write_text("3000000")  # +2 J
    (package1 / "energy_uj").write_text("1000000")  # wrapped: +6 J
    assert read() == pytest.approx(8.0)


def test_rapl_unreadable_or_absent_means_unavailable(tmp_path: Path) -> None:
    assert telemetry.rapl_energy(tmp_path) is None
    # The counter missing or not readable (recent kernels: root only) reads as unavailable.
    (_domain(tmp_path, "intel-rapl:0", 1, 10) / "energy_uj").unlink()
    assert telemetry.rapl_energy(tmp_path) is None


def test_meter_on_cpu_records_time_memory_and_energy(tmp_path: Path) -> None:
    package = _domain(tmp_path, "intel-rapl:0", 0, 10**9)
    meter = telemetry.Meter(torch.device("cpu"), rapl_root=tmp_path).start()
    (package / "energy_uj").write_text("2500000")
    usage = meter.stop()
    assert usage.energy_source == "rapl" and usage.energy_joules == pytest.approx(2.5)
    assert usage.peak_memory_mb > 10 and usage.seconds >= 0
    assert usage.device_name == hardware.cpu_model()
    record = usage.as_dict()
    assert record["energy_joules"] == 2.5 and record["energy_source"] == "rapl"

    without = telemetry.Meter(torch.device("cpu"), rapl_root=tmp_path / "none").start().stop()
    assert without.energy_source == "unavailable" and "energy_joules" not in without.as_dict()


def test_no_nvml_energy_for_a_cpu() -> None:
    assert telemetry.nvml_energy(torch.device("cpu")) is None


def test_cost_and_combining_ranks() -> None:
    assert telemetry.cost_estimate(1800, 2, 3.0) == pytest.approx(3.0)  # 2 devices x 0.5 h x 3
    parts = [
        telemetry.Usage("gpu", 10.0, 100.0, 50.0, "nvml"),
        telemetry.Usage("gpu", 12.0, 80.0, 70.0, "nvml"),
    ]
    record = telemetry.combine(parts, price_per_device_hour=3.6)
    assert record["wall_seconds"] == 12.0 and record["peak_memory_mb"] == 100.0
    assert record["energy_joules"] == 120.0 and record["devices"] == 2
    assert record["estimated_cost"] == pytest.approx(2 * 12 / 3600 * 3.6)
    parts.append(telemetry.Usage("gpu", 1.0, 1.0, None, "unavailable"))
    assert "energy_joules" not in telemetry.combine(parts, 0.0)


def test_device_and_precision_choice_on_this_machine() -> None:
    cpu = torch.device("cpu")
    assert hardware.resolve_precision("auto", cpu) == "fp32"
    assert hardware.resolve_precision("bf16", cpu) == "fp32"  # CPU: the plain fp32 loop
    assert hardware.maybe_compile(torch.nn.Linear(2, 2), True, cpu).__class__ is torch.nn.Linear
    x = torch.ones(2)
    assert hardware.to_device(x, cpu) is x
