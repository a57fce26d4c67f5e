"""SFT warm-start throughput: tokens/s of the trainer's SFT steps on real expert turns, and their share of peak.

    python benchmarks/sft_step.py [--preset demo] [--steps 3] [--train-layers 0 10] [overrides ...]

Collects the preset's expert demonstrations (its env, template and history window), then for each
`--train-layers` value builds the SFT trainer (`Trainer(cfg, SFT)`) and times `--steps`
steps after one warm-up step. Prints, all measured in this one run: train tokens/s (prompt +
response tokens through forward, backward and AdamW), the FLOP rate (2 x all parameters x tokens
for the forward, 4 x trained parameters x tokens for the backward) and its share of this
machine's matmul peak in the preset's compute dtype (a timed large matmul; the demo presets compute
in bfloat16, `model.compute_dtype=float32` for float32), and the speed-up over training all layers.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from train_step import matmul_peak_gflops  # the script's own folder, benchmarks/, is on sys.path

from sdar_agent.config import load_config
from sdar_agent.hardware import markdown_table
from sdar_agent.models import compute_dtype
from sdar_agent.stages import SFT
from sdar_agent.trainer import Trainer


def time_sft(preset: str, train_layers: int, steps: int, overrides: list[str]) -> tuple[float, float, int, int]:
    """(tokens/s, seconds per step, all parameters, trained parameters) of `steps` timed SFT steps."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(preset, [f"output_dir={out}", "name=bench", f"model.train_layers={train_layers}",
                                   "val_every=0", "save_every=0", "log.progress=false", "log.tensorboard=false",
                                   "log.plot=false", *overrides])
        if cfg.sft.episodes == 0:
            raise SystemExit(f"preset {preset!r} has no sft stage (sft.episodes=0); pass sft.episodes=N.")
        trainer = Trainer(cfg, SFT)
        try:
            if trainer.steps < steps + 1:
                raise SystemExit(f"only {trainer.steps} SFT steps in {preset!r}; raise sft.episodes or lower --steps.")
            trainer.train_step()  # warm-up
            tokens = 0.0
            start = time.perf_counter()
            for _ in range(steps):
                metrics = trainer.train_step()
                tokens += metrics["perf/train_tokens_per_s"] * metrics["perf/update_s"]
            seconds = time.perf_counter() - start
            model = trainer.acc.unwrap_model(trainer.model)
            total = sum(p.numel() for p in model.parameters())
            trained = sum(p.numel() for p in trainer.params)
        finally:
            trainer.close()
    return tokens / seconds, seconds / steps, total, trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="demo", help="a preset with an sft: section")
    parser.add_argument("--steps", type=int, default=3, help="timed SFT steps per setting (after one warm-up)")
    parser.add_argument("--train-layers", type=int, nargs="+", default=[0, 10],
                        help="model.train_layers values to compare (0: all layers)")
    args, overrides = parser.parse_known_args()
    torch.manual_seed(0)
    dtype = compute_dtype(load_config(args.preset, overrides).model, torch.device("cpu"))
    peak = matmul_peak_gflops(dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    print(f"preset {args.preset}, computing in {name} (model.compute_dtype), {name} matmul peak {peak:.0f} GFLOP/s")
    baseline, rows = None, []
    for layers in args.train_layers:
        tps, step_s, total, trained = time_sft(args.preset, layers, args.steps, overrides)
        flops = (2 * total + 4 * trained) * tps / 1e9
        baseline = baseline or tps
        rows.append([f"{args.preset}, {name}", f"{layers} ({trained / 1e6:.1f} M of {total / 1e6:.0f} M)",
                     f"{tps:.1f}", f"{step_s:.1f}", f"{flops:.1f} ({flops / peak:.0%})", f"{tps / baseline:.2f}x"])
    print(markdown_table(["preset, compute", "train_layers (trained)", "train tokens/s", "s / step",
                          "GFLOP/s (share of peak)", "vs the first row"], rows))

if __name__ == "__main__":
    main()
