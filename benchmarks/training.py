"""Training benchmarks, printed as ratios: our loop against hand-written torch on the same work.

1. Throughput: ``train.fit`` (our loop: batches, train_step, per-epoch validation, history,
   early-stopping bookkeeping) against a minimal hand-written loop with the same model,
   optimizer, batch size, data and per-epoch validation pass. Aim: ratio >= 0.9.
2. Data path: one epoch of our batching (shuffle, one gather, views) against raw slicing of
   tensors (no shuffle: the floor), a gather per batch, and a DataLoader over a TensorDataset
   (which builds each batch row by row).
3. FLOP/s: the MLP's forward+backward against a matmul the size of its largest layer and a
   large square matmul (what the device can do), in the same precision.

Run: make bench-training   (or: python -m benchmarks.training [--device cuda --precision bf16])
``benchmarks/gpu/train_gpu.py`` runs the same measurements on a GPU with a model that fills it.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiinfra.project.config import PROJECT_ROOT, TrainingConfig, load_config
from aiinfra.project.schema import Schema
from aiinfra.training import distributed, hardware, telemetry, train
from aiinfra.training.batches import Batches
from aiinfra.training.hardware import Precision
from aiinfra.training.model import MLP, Target

# Binary cross-entropy on the logits, summed: what training uses for a binary task.
LOSS = Target("binary", [0, 1]).loss


def loan_schema() -> Schema:
    """The loan example's schema, built as the platform builds it (its Feast repo and the smoke
    profile) from a tiny generated label table: no files, no feature store."""
    from aiinfra.project.definition import load_project
    from examples.loan_default import data

    config = load_config(PROJECT_ROOT / "configs" / "smoke.yaml")
    sizes = data.DataConfig(n_applicants=10, n_zipcodes=2, n_loans=50, days=2)
    return load_project(config, labels=data.generate(sizes).loans).schema


@functools.cache
def loan_width() -> int:
    """Encoded width of a loan: the numeric features plus the one-hot categories."""
    schema = loan_schema()
    return len(schema.numeric) + sum(max(1, len(f.categories)) for f in schema.categorical)


@dataclass(frozen=True)
class Case:
    name: str
    hidden: list[int]
    batch_size: int
    rows: int
    epochs: int
    compile: bool = False  # torch.compile both loops (CUDA only, as in training)


def make_data(
    rows: int, width: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Standardized features and a label with an interaction (like the encoded loans); 80% to
    train, 20% to validate; moved to the device once."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=g)
    logit = x[:, 0] - 0.5 * x[:, 1] + 0.8 * x[:, 2] * x[:, 3]
    y = (torch.rand(rows, generator=g) < torch.sigmoid(logit)).float()
    cut = int(rows * 0.8)
    parts = (x[:cut], y[:cut], x[cut:], y[cut:])
    return tuple(hardware.to_device(p, device) for p in parts)


def _config(case: Case, device: torch.device, precision: str, epochs: int) -> TrainingConfig:
    return TrainingConfig(
        epochs=epochs,
        batch_size=case.batch_size,
        device=device.type,
        precision=precision,
        deterministic=False,
        checkpoint_every_epochs=0,
        progress="off",
        compile=case.compile,
    )


def ours(case: Case, data: tuple[torch.Tensor, ...], precision: str, epochs: int) -> float:
    """Samples/s of our loop (seconds as ``train.fit`` counts them)."""
    device = data[0].device
    torch.manual_seed(0)
    network = MLP(data[0].shape[1], 1, case.hidden, 0.0).to(device)
    config = _config(case, device, precision, epochs)
    setup = train.prepare(network, data, config, _single(), LOSS)
    _, _, seconds = train.fit(setup)
    return len(data[0]) * epochs / seconds


def hand_written(
    case: Case, data: tuple[torch.Tensor, ...], precision: Precision, epochs: int
) -> float:
    """Samples/s of the loop anyone would write: shuffle, gather a batch, step; validate."""
    x, y, xv, yv = data
    device = x.device
    torch.manual_seed(0)
    net = MLP(x.shape[1], 1, case.hidden, 0.0).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    net = hardware.maybe_compile(net, case.compile, device)
    loss_fn = nn.functional.binary_cross_entropy_with_logits
    amp = torch.autocast("cuda", torch.bfloat16, enabled=precision == "bf16")
    hardware.synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x), case.batch_size):
            idx = perm[i : i + case.batch_size]
            opt.zero_grad(set_to_none=True)
            with amp:
                logits = net(x[idx])
            loss_fn(logits.float().reshape(-1), y[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad(), amp:
            float(loss_fn(net(xv).float().reshape(-1), yv))
    hardware.synchronize(device)
    return len(x) * epochs / (time.perf_counter() - start)


def _single() -> distributed.Context:
    return distributed.Context()


def throughput(
    case: Case, data: tuple[torch.Tensor, ...], precision: Precision, repeats: int
) -> dict[str, Any]:
    """Best of ``repeats`` alternating runs of each (after a one-epoch warm-up of each)."""
    ours(case, data, precision, 1)
    hand_written(case, data, precision, 1)
    a, b = [], []
    for _ in range(repeats):
        a.append(ours(case, data, precision, case.epochs))
        b.append(hand_written(case, data, precision, case.epochs))
    return {"ours": max(a), "hand": max(b), "ratio": max(a) / max(b)}


def _epoch_time(run: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def data_path(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, repeats: int = 5
) -> dict[str, float]:
    """Seconds per batch for one epoch of each way of batching (nothing trains)."""
    device = x.device
    batches = Batches(x, y, batch_size, _single())
    generator = torch.Generator().manual_seed(0)
    n_batches = len(batches)

    def sync(fn: Callable[[], Any]) -> Callable[[], None]:
        return lambda: (fn(), hardware.synchronize(device))

    def raw() -> None:
        for i in range(0, len(x), batch_size):
            x[i : i + batch_size], y[i : i + batch_size]

    def ours_() -> None:
        for _ in batches.epoch(generator):
            pass

    def per_batch_gather() -> None:
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            x[idx], y[idx]

    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch_size, shuffle=True)
    loader_batches = min(n_batches, 10)  # row by row is slow: a few batches tell enough

    def dataloader() -> None:
        for _, (xb, yb) in zip(range(loader_batches), loader, strict=False):
            xb.to(device), yb.to(device)

    out = {
        "raw": _epoch_time(sync(raw), repeats) / n_batches,
        "ours": _epoch_time(sync(ours_), repeats) / n_batches,
        "gather": _epoch_time(sync(per_batch_gather), repeats) / n_batches,
        "dataloader": _epoch_time(sync(dataloader), 3) / loader_batches,
    }
    return out


def mlp_flops_per_sample(width: int, hidden: list[int]) -> int:
    """Forward 2*in*out per layer; backward the weight gradient (2*in*out) everywhere and the
    input gradient (2*in*out) everywhere but the first layer (the data needs none)."""
    sizes = [width, *hidden, 1]
    layers = list(itertools.pairwise(sizes))
    return sum(6 * i * o for i, o in layers) - 2 * layers[0][0] * layers[0][1]


def _timed(fn: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Fastest of ``iters`` synchronized calls: the machine is shared, and other work only
    ever makes a call slower."""
    fn()  # warm-up (allocations, kernel selection)
    best = float("inf")
    for _ in range(iters):
        hardware.synchronize(device)
        start = time.perf_counter()
        fn()
        hardware.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def flops(
    hidden: list[int],
    batch: int,
    device: torch.device,
    precision: Precision,
    peak_n: int,
    iters: int,
) -> dict[str, float]:
    """FLOP/s of the MLP's forward+backward, of one matmul the size of its largest layer, and
    the device's practical peak (the best of that and a large square matmul), in ``precision``."""
    width = loan_width()
    net = MLP(width, 1, hidden, 0.0).to(device)
    x = torch.randn(batch, width, device=device)
    y = (torch.rand(batch, device=device) < 0.5).float()

    def step() -> None:
        net.zero_grad(set_to_none=True)
        with hardware.autocast(device, precision):
            logits = net(x)
        nn.functional.binary_cross_entropy_with_logits(logits.float().reshape(-1), y).backward()

    mlp = mlp_flops_per_sample(width, hidden) * batch / _timed(step, device, iters)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    sizes = [width, *hidden]
    i, o = max(itertools.pairwise(sizes), key=lambda p: p[0] * p[1])
    a, b = (
        torch.randn(batch, i, device=device, dtype=dtype),
        torch.randn(i, o, device=device, dtype=dtype),
    )
    similar = 2 * batch * i * o / _timed(lambda: a @ b, device, iters)
    p, q = (torch.randn(peak_n, peak_n, device=device, dtype=dtype) for _ in range(2))
    square = 2 * peak_n**3 / _timed(lambda: p @ q, device, max(5, iters // 4))
    # The peak is the best matmul rate measured here (usually the large square one).
    return {"mlp": mlp, "matmul_similar": similar, "matmul_peak": max(square, similar)}


def energy_per_epoch(
    case: Case, data: tuple[torch.Tensor, ...], precision: Precision
) -> tuple[float | None, str]:
    """Joules per epoch of our loop, from NVML (GPU) or RAPL (CPU), if the hardware tells."""
    meter = telemetry.Meter(data[0].device).start()
    ours(case, data, precision, case.epochs)
    usage = meter.stop()
    if usage.energy_joules is None:
        return None, usage.energy_source
    return usage.energy_joules / case.epochs, usage.energy_source


def measure_case(
    case: Case, device: torch.device, precision: Precision, repeats: int, peak_n: int, iters: int
) -> dict[str, Any]:
    data = make_data(int(case.rows / 0.8), loan_width(), device)
    t = throughput(case, data, precision, repeats)
    joules, source = energy_per_epoch(case, data, precision)
    return {
        "case": case.name,
        "hidden": case.hidden,
        "batch_size": case.batch_size,
        "rows": case.rows,
        "device": f"{device.type} ({hardware.device_name(device)})",
        "precision": precision,
        "throughput": t,
        "data_path": data_path(data[0], data[1], case.batch_size),
        "flops": flops(case.hidden, case.batch_size, device, precision, peak_n, iters),
        "energy_joules_per_epoch": joules,
        "energy_source": source,
    }


def format_case(r: dict[str, Any]) -> str:
    t, d, f = r["throughput"], r["data_path"], r["flops"]
    us = {k: f"{v * 1e6:.1f} us" for k, v in d.items()}
    g = {k: f"{v / 1e9:,.1f} GFLOP/s" for k, v in f.items()}
    step_s = r["batch_size"] / t["ours"]
    joules = r["energy_joules_per_epoch"]
    energy = f"{joules:.1f} J/epoch ({r['energy_source']})" if joules is not None else "unavailable"
    return "\n".join(
        [
            f"\n== {r['case']}: MLP {r['hidden']}, batch {r['batch_size']}, {r['rows']:,} rows, "
            f"{r['device']}, {r['precision']} ==",
            f"throughput  ours {t['ours']:,.0f} samples/s | hand-written {t['hand']:,.0f}"
            f" samples/s | ratio {t['ratio']:.2f}",
            f"data path   per batch: raw slicing {us['raw']} | ours {us['ours']} | gather per"
            f" batch {us['gather']} | DataLoader {us['dataloader']}",
            f"            ours / raw slicing {d['raw'] / d['ours']:.2f} | ours"
            f" {d['dataloader'] / d['ours']:.0f}x faster than DataLoader"
            f" | ours = {d['ours'] / step_s:.1%} of a step",
            f"FLOP/s      MLP fwd+bwd {g['mlp']} | same-size matmul {g['matmul_similar']}"
            f" | peak matmul {g['matmul_peak']}",
            f"            MLP / peak {f['mlp'] / f['matmul_peak']:.1%} | MLP / same-size"
            f" {f['mlp'] / f['matmul_similar']:.1%} | same-size / peak"
            f" {f['matmul_similar'] / f['matmul_peak']:.1%}",
            f"energy      {energy}",
        ]
    )


CPU_CASES = [
    Case("local profile model", [64, 32], 256, 40_000, 3),
    Case("wide model", [512, 512], 1024, 40_000, 2),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = hardware.select_device(args.device)
    precision = hardware.resolve_precision(args.precision, device)
    results = []
    for case in CPU_CASES:
        results.append(measure_case(case, device, precision, args.repeats, peak_n=2048, iters=20))
        print(format_case(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
