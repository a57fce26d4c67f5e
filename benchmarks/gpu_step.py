"""One training step of a paper preset at full scale, phase by phase, for each generation backend.

    python benchmarks/gpu_step.py [--preset alfworld_sdar_qwen2.5-3b] [--shape qwen2.5-3b]
                                  [--backends hf,vllm] [key=value ...]

Builds a randomly initialised model of `--shape` locally (no download: a transformers config and the
embedded model's tokenizer, saved once under the cache), then runs `steps=1` of `--preset` on it
with `env.max_turns=2`, no validation and no checkpoint (more `key=value` overrides follow the
preset's as on the trainer's command line), once per backend: `hf` (always) and `vllm` (where vllm
imports and a GPU is visible). Prints per backend:

- per-phase seconds: rollout (generation + env), the teacher pass, the update (teacher included),
  as the trainer's own `perf/*` metrics report them;
- generation tokens/s and its share of the decode bandwidth limit: a decoding step reads every
  weight once (in the compute dtype) for all the rows of a `generate` call, so the limit is
  rows per call x memory bandwidth / weight bytes (KV-cache reads ignored: the limit is
  optimistic); rows per call are counted (HF) or taken as all the turn's rollouts (vLLM);
- train tokens/s and its share of the device's peak (`perf/train_peak_share`: dense bf16 by GPU
  name; a timed fp32 matmul on CPU);
- peak device memory (GPU: torch's allocator peak; CPU: the process's peak resident set).

On a CPU, `--shape tiny` (and e.g. `rollout.tasks_per_step=1 rollout.group_size=2
rollout.max_response_tokens=16 model.compute_dtype=float32`) checks the script end to end in
seconds; the shapes' figures only mean something on the GPU they were sized for.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sdar_agent.hardware import markdown_table

# Decoder shapes (transformers config fields); the vocabulary is the tokenizer's.
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "qwen2.5-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                       rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "tiny": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True),
}

# HBM bandwidth in bytes/s by a substring of torch.cuda.get_device_name() (vendor figures).
GPU_BANDWIDTH = {
    "H200": 4.8e12,
    "H100 NVL": 3.9e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,
    "A100-SXM4-80GB": 2.04e12,
    "A100 80GB PCIe": 1.94e12,
    "A100": 1.555e12,
    "L40S": 0.864e12,
    "A10G": 0.6e12,
    "L4": 0.3e12,
    "RTX 4090": 1.008e12,
}

DEFAULT_OVERRIDES = ["steps=1", "env.max_turns=2", "val_every=0", "save_every=0", "log.tensorboard=false",
                     "log.progress=false", "skills.bank=alfworld"]


def random_model_dir(shape: str, layers: int = 0) -> Path:
    """A folder with a randomly initialised model of `shape` and the embedded tokenizer (made once, cached).

    `layers` (where given) replaces the shape's number of decoder layers.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sdar_agent.models import embedded_model_dir
    from sdar_envs.cache import cache_dir

    target = cache_dir() / "models" / (f"random-{shape}-{layers}l" if layers else f"random-{shape}")
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("embedded:smollm2-135m-instruct", weights=False))
    fields = dict(SHAPES[shape]) | ({"num_hidden_layers": layers} if layers else {})
    config = AutoConfig.for_model(fields.pop("model_type"), vocab_size=len(tokenizer), **fields,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising billions of weights is minutes on a CPU, seconds on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def memory_bandwidth(device: torch.device) -> float:
    """Bytes/s the device's memory gives: the vendor figure by GPU name, or a timed copy on a CPU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        known = next((bw for key, bw in GPU_BANDWIDTH.items() if key in name), None)
        if known is not None:
            return known
    src = torch.empty(64 * 2**20, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best  # read + write


class CallCounter:
    """Counts the rows of every HF `generate` call made while it is active."""

    def __init__(self) -> None:
        from transformers.generation.utils import GenerationMixin

        self.mixin = GenerationMixin
        self.rows: list[int] = []

    def __enter__(self) -> CallCounter:
        original = self.original = self.mixin.generate

        def counted(model: Any, *args: Any, **kwargs: Any) -> Any:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None:
                self.rows.append(int(ids.shape[0]))
            return original(model, *args, **kwargs)

        self.mixin.generate = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mixin.generate = self.original


def step_figures(preset: str, model_dir: Path, backend: str, overrides: list[str]) -> dict[str, float]:
    """Run one step of `preset` on `model_dir` with `backend`; the step's figures."""
    from sdar_agent.config import load_config
    from sdar_agent.models import compute_dtype, pick_device
    from sdar_agent.train import run

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(preset, [*DEFAULT_OVERRIDES, f"model.name={model_dir}", f"rollout.backend={backend}",
                                   f"output_dir={out}", f"name=gpu-step-{backend}", *overrides])
        device = pick_device(cfg.model)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        with CallCounter() as calls:
            start = time.perf_counter()
            metrics = run(cfg, stages=("rl",))["rl"]["last"]
            wall = time.perf_counter() - start
    if device.type == "cuda":
        peak_bytes = torch.cuda.max_memory_allocated(device)
    else:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    rollouts = cfg.rollout.tasks_per_step * cfg.rollout.group_size
    rows = sum(calls.rows) / len(calls.rows) if calls.rows else float(rollouts)
    return {"wall_s": wall, "rows_per_call": rows, "peak_gb": peak_bytes / 1e9,
            "device": str(device), "dtype": str(compute_dtype(cfg.model, device)).replace("torch.", ""),
            **{k: float(v) for k, v in metrics.items() if k.startswith("perf/") or k.startswith("rollout/")}}


def weight_bytes(model_dir: Path, dtype_name: str) -> float:
    """Bytes of the model's weights in the compute dtype (what a decoding step reads)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())  # tied weights counted once
    return n * torch.empty((), dtype=getattr(torch, dtype_name)).element_size()


def table(results: dict[str, dict[str, Any]], bandwidth: float, weights: float) -> str:
    rows = [("phase", *results)]  # phases' seconds to the millisecond: a tiny model's teacher pass takes a few

    def add(label: str, fmt: str, value: Any) -> None:
        rows.append((label, *(fmt.format(value(r)) if value(r) is not None else "-" for r in results.values())))

    add("rollout s", "{:.3f}", lambda r: r.get("perf/rollout_s"))
    add("  generation s", "{:.3f}", lambda r: r.get("perf/generation_s"))
    add("  env s", "{:.3f}", lambda r: r.get("perf/env_s"))
    add("teacher pass s", "{:.3f}", lambda r: r.get("perf/teacher_s"))
    add("update s (teacher incl.)", "{:.3f}", lambda r: r.get("perf/update_s"))
    add("step wall s (incl. load)", "{:.1f}", lambda r: r["wall_s"])
    add("generation tokens/s", "{:,.0f}", lambda r: r.get("perf/generation_tokens_per_s"))
    add("rows per generate call", "{:.0f}", lambda r: r["rows_per_call"])
    add("bandwidth limit tokens/s", "{:,.0f}", lambda r: r["rows_per_call"] * bandwidth / weights)
    add("  share of the limit", "{:.1%}",
        lambda r: r.get("perf/generation_tokens_per_s", 0) / (r["rows_per_call"] * bandwidth / weights))
    add("train tokens/s", "{:,.0f}", lambda r: r.get("perf/train_tokens_per_s"))
    add("  TFLOP/s", "{:.1f}", lambda r: r.get("perf/train_tflops"))
    add("  share of peak", "{:.1%}", lambda r: r.get("perf/train_peak_share"))
    add("peak memory GB", "{:.1f}", lambda r: r["peak_gb"])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(" | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                                enumerate(zip(row, widths, strict=True))) for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="alfworld_sdar_qwen2.5-3b")
    parser.add_argument("--shape", default="qwen2.5-3b", choices=sorted(SHAPES))
    parser.add_argument("--backends", default="hf,vllm", help="comma-separated: hf, vllm")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the preset")
    args = parser.parse_args(argv)
    asked = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(asked) - {"hf", "vllm"})
    if unknown or not asked:
        parser.error(f"--backends {args.backends!r}: expected a comma-separated list of hf, vllm")
    backends = [b for b in asked
                if b == "hf" or (importlib.util.find_spec("vllm") is not None and torch.cuda.is_available())]
    skipped = sorted(set(asked) - set(backends))
    model_dir = random_model_dir(args.shape)
    results = {b: step_figures(args.preset, model_dir, b, args.overrides) for b in backends}
    first = next(iter(results.values()))
    device = torch.device(first["device"])
    bandwidth = memory_bandwidth(device)
    weights = weight_bytes(model_dir, first["dtype"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.preset} on a random {args.shape} model ({weights / 1e9:.2f} GB of {first['dtype']} weights), "
          f"{name}, memory bandwidth {bandwidth / 1e12:.2f} TB/s; "
          f"{first.get('rollout/samples', 0):.0f} turn samples, "
          f"{first.get('rollout/response_tokens', 0):.0f} response tokens on average")
    print(table(results, bandwidth, weights))
    print(markdown_table(
        ["preset, shape", "backend", "rollout s (generation)", "generation tokens/s (share of the limit)",
         "teacher s", "update s", "train tokens/s (share of peak)", "peak memory GB"],
        [[f"{args.preset}, {args.shape}", backend,
          f"{r.get('perf/rollout_s', 0):.1f} ({r.get('perf/generation_s', 0):.1f})",
          f"{r.get('perf/generation_tokens_per_s', 0):,.0f} "
          f"({r.get('perf/generation_tokens_per_s', 0) / (r['rows_per_call'] * bandwidth / weights):.0%})",
          f"{r.get('perf/teacher_s', 0):.1f}", f"{r.get('perf/update_s', 0):.1f}",
          f"{r.get('perf/train_tokens_per_s', 0):,.0f} ({r.get('perf/train_peak_share') or 0:.0%})",
          f"{r['peak_gb']:.1f}"]
         for backend, r in results.items()], device))
    if skipped:
        print(f"not run: {', '.join(skipped)} (needs `pip install 'sdar[vllm]'` and a visible GPU)")


if __name__ == "__main__":
    main()
