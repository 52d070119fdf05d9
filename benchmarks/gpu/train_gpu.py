"""The training benchmarks on a lent GPU: one prepared run, fp32 then bf16.

For each precision, with an MLP big enough that its matmuls reach the GPU's matmul peak
(4 x 4096 hidden, batch 16384, 1M rows): samples/s of our training loop and of a minimal
hand-written loop (and their ratio), the MLP's forward+backward FLOP/s as a fraction of a
measured matmul peak in the same precision, the data path, peak GPU memory and the energy per
epoch from NVML. Everything runs through the same library code as CPU training.

Run from the repository root, in the project's environment (about 2-3 minutes on an H200):

    python -m benchmarks.gpu.train_gpu --json gpu-train.json

Without a CUDA device (or with --dry-run) it runs the same code on the CPU with tiny sizes:
that checks the script end to end but measures nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from aiinfra.training import hardware
from benchmarks.training import Case, format_case, measure_case

GPU = {"rows": 1_000_000, "hidden": [4096] * 4, "batch_size": 16_384, "epochs": 2, "peak_n": 8192}
DRY = {"rows": 20_000, "hidden": [64, 64], "batch_size": 512, "epochs": 1, "peak_n": 512}


def _header(device: torch.device) -> str:
    lines = [f"torch {torch.__version__}, python {platform.python_version()}"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(
            f"{props.name}: {props.total_memory / 2**30:.0f} GiB,"
            f" {props.multi_processor_count} SMs, CUDA {torch.version.cuda},"
            f" bf16 {torch.cuda.is_bf16_supported()}"
        )
    else:
        lines.append(f"DRY RUN on the CPU ({hardware.cpu_model()}): no CUDA device, tiny sizes")
    return "\n".join(lines)


def run(
    sizes: dict[str, Any], device: torch.device, precisions: list[str], compile_: bool
) -> list[dict[str, Any]]:
    results = []
    for requested in precisions:
        precision = hardware.resolve_precision(requested, device)  # bf16 -> fp32 on a CPU
        case = Case(
            f"{requested} (runs as {precision})",
            sizes["hidden"],
            sizes["batch_size"],
            sizes["rows"],
            sizes["epochs"],
            compile_,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        result = measure_case(case, device, precision, repeats=1, peak_n=sizes["peak_n"], iters=20)
        result["seconds"] = time.perf_counter() - started
        if device.type == "cuda":
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        results.append(result)
        print(format_case(result), flush=True)
        if "peak_memory_gib" in result:
            print(f"memory      peak {result['peak_memory_gib']:.1f} GiB allocated", flush=True)
    return results


def summary(results: list[dict[str, Any]]) -> str:
    rows = ["\nprecision            ours samples/s   ratio vs hand   MLP/peak matmul   J/epoch"]
    for r in results:
        joules = r["energy_joules_per_epoch"]
        rows.append(
            f"{r['case']:<20} {r['throughput']['ours']:>15,.0f} {r['throughput']['ratio']:>15.2f}"
            f" {r['flops']['mlp'] / r['flops']['matmul_peak']:>17.1%}"
            f" {'unavailable' if joules is None else f'{joules:,.0f}':>9}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, even with a GPU")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true", help="torch.compile both loops")
    parser.add_argument("--rows", type=int, help="override the number of training rows")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    sizes = dict(GPU if cuda else DRY)
    if args.rows:
        sizes["rows"] = args.rows
    print(_header(device), flush=True)
    results = run(sizes, device, args.precisions.split(","), args.compile)
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps({"dry_run": not cuda, "results": results}, indent=2))


if __name__ == "__main__":
    main()
