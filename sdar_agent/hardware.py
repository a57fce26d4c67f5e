"""The device's peak matmul throughput, for reporting training speed as a share of it.

GPUs: the vendor's dense (no sparsity) bfloat16 / float16 tensor-core figure, by device name. CPUs:
a float32 matmul timed once in this process (the figure the hardware actually gives here).
"""

from __future__ import annotations

import functools
import time

import torch

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
    """An n x n matmul's FLOP/s in `dtype` on this CPU with torch's threads (best of `repeats`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
