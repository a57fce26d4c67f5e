"""The device's peak matmul throughput, for reporting training speed as a share of it.

GPUs: the vendor's dense (no sparsity) bfloat16 / float16 tensor-core figure, by device name. CPUs:
a matmul in the compute dtype timed once in this process (the figure the hardware actually gives
here); the same timings tell whether bfloat16 pays on this CPU (`check_cpu_bfloat16`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)

BF16_WORTH_IT = 1.5
"""How much faster than float32 a CPU's bfloat16 matmul must be for bfloat16 passes to pay there.

A training step gains less than its matmuls do (the elementwise work around the products gains
little); `benchmarks/sft_step.py` measures both dtypes' steps.
"""

# dense bf16/fp16 tensor-core peak, FLOP/s, by a substring of torch.cuda.get_device_name()
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
}


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The device's matmul peak in FLOP/s for `dtype` forward passes, or None where unknown."""
    if device.type == "cuda":
        if dtype not in (torch.bfloat16, torch.float16):
            return None
        name = torch.cuda.get_device_name(device)
        return next((peak for key, peak in GPU_PEAK_BF16.items() if key in name), None)
    if device.type == "cpu" and dtype in (torch.float32, torch.bfloat16):
        return cpu_matmul_flops(dtype=dtype)
    return None


@functools.cache
def cpu_matmul_flops(n: int = 1024, repeats: int = 8, dtype: torch.dtype = torch.float32) -> float:
    """An n x n matmul's FLOP/s in `dtype` on this CPU with torch's threads (best of `repeats`).

    Its operands come from a generator of its own: timing leaves the global random stream (a
    run's sampling) where it was.
    """
    rng = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=rng).to(dtype) for _ in range(2))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


@functools.cache
def check_cpu_bfloat16() -> bool:
    """Whether this CPU's bfloat16 matmul is `BF16_WORTH_IT` times its float32 one; warns once per process if not.

    A CPU without native bf16 dot products (AVX512-BF16 or AMX on x86) converts bf16 operands to
    float32 inside the product, so bfloat16 passes (`model.compute_dtype=bfloat16`, the demo
    presets' setting) run slower than float32 ones there. Timed, not read from CPU flags, so it
    holds on any architecture; the two timings are `cpu_matmul_flops`' (cached for the process).
    """
    bf16, fp32 = cpu_matmul_flops(dtype=torch.bfloat16), cpu_matmul_flops()
    if bf16 >= BF16_WORTH_IT * fp32:
        return True
    logger.warning("model.compute_dtype=bfloat16: this CPU multiplies bfloat16 matrices at %.0f GFLOP/s against "
                   "%.0f in float32 (no native bf16 dot products, e.g. AVX512-BF16 or AMX), so bfloat16 passes "
                   "are likely slower than float32 here; model.compute_dtype=float32 is the faster setting.",
                   bf16 / 1e9, fp32 / 1e9)
    return False


def describe_machine(device: torch.device | None = None) -> str:
    """The machine a figure was measured on: cores, CPU model and its measured fp32 / bf16 matmul peaks; or the GPU."""
    import os
    import platform

    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({os.cpu_count()} CPU cores)"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{torch.get_num_threads()} cores, {model}, fp32 {cpu_matmul_flops() / 1e9:.0f} / bf16 "
            f"{cpu_matmul_flops(dtype=torch.bfloat16) / 1e9:.0f} GFLOP/s")


def commit_id() -> str:
    """The project's git commit (short), with `+` when tracked files differ from it; `unknown` outside a checkout."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=here).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{'+' if dirty else ''}" if commit else "unknown"


def measured_on(device: torch.device | None = None) -> str:
    """The first cells of a benchmark's table row: `| date | machine | commit |`."""
    import datetime

    return f"| {datetime.date.today().isoformat()} | {describe_machine(device)} | {commit_id()} |"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]], device: torch.device | None = None) -> str:
    """A benchmark's result as a Markdown table whose rows start with the date, the machine and the commit.

    The rows go into docs/benchmarks.md as printed; the machine (with its measured matmul peaks) is
    described once for all of them.
    """
    start = measured_on(device)
    lines = ["| date | machine | commit | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
    lines += [f"{start} " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
