"""Memory per process of data parallel (DDP) against sharded data parallel (FSDP2), measured.

    python benchmarks/parallel_memory.py [--shape qwen2.5-0.5b] [--layers 12] [--processes 2] [key=value ...]

Launches the trainer with each shipped accelerate config (`examples/accelerate/ddp.yaml`,
`fsdp.yaml`) on `--processes` processes of this machine (gloo on a CPU, one GPU each where there
are enough), on a randomly initialised model of `--shape` (`benchmarks/gpu_step.py`'s shapes, built
locally; `--layers` keeps that many decoder layers, 0 all of them: two processes of the whole
Qwen2.5-0.5B under DDP need more than a 24 GB machine), for `steps=2` of the `demo` preset (SDAR,
every block trained, float32 master weights) with short episodes; `key=value` overrides follow.
Each process reports:

- the bytes it holds in weights, gradients (during an update: the trained weights' size) and AdamW
  moments after the last step, counted from its own tensors (what the config files' memory
  figures are computed from: 16 bytes per parameter under DDP, 16 / N under FSDP);
- its peak memory: on a GPU torch's allocator peak, on a CPU the process's peak resident set
  (which includes loading the whole model before it is sharded, the interpreter and the envs);
- the step's wall time.

Prints one row per config (the mean over processes) and the FSDP / DDP ratios of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from sdar_agent.hardware import markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("ddp", "fsdp")
DEFAULT_OVERRIDES = ["algo.name=sdar", "model.train_layers=0", "sft.episodes=0", "steps=2", "val_every=0",
                     "save_every=0", "env.max_turns=2", "rollout.max_response_tokens=16", "rollout.group_size=2",
                     "log.progress=false", "log.tensorboard=false", "log.plot=false"]


def held_bytes(trainer: Any) -> dict[str, int]:
    """Bytes of weights, gradients and optimizer state this process holds (its shards under FSDP)."""

    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if hasattr(t, "to_local") else t

    params = list(trainer.model.parameters())
    weights = sum(local(p).numel() * local(p).element_size() for p in params)
    # gradients are freed after each optimizer step; during the update they match the trained weights
    grads = sum(local(p).numel() * local(p).element_size() for p in params if p.requires_grad)
    moments = sum(local(v).numel() * local(v).element_size() for state in trainer.optimizer.state.values()
                  for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return {"weights": weights, "grads": grads, "moments": moments}


def worker(out_dir: Path, overrides: list[str]) -> None:
    """One process of a launched run: train, then write its figures to `out_dir/<rank>.json`."""
    import time

    from sdar_agent.config import load_config
    from sdar_agent.trainer import Trainer

    cfg = load_config("demo", overrides)
    trainer = Trainer(cfg)
    try:
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
        held = held_bytes(trainer)
    finally:
        trainer.close()
    device = trainer.acc.device
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    figures = {"rank": trainer.acc.process_index, "parameters": sum(p.numel() for p in trainer.model.parameters()),
               "peak_bytes": peak, "wall_s": wall / cfg.steps, **held}
    (out_dir / f"{trainer.acc.process_index}.json").write_text(json.dumps(figures))


def launch(config: str, processes: int, out_dir: Path, overrides: list[str]) -> list[dict[str, Any]]:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "examples" / "accelerate" / f"{config}.yaml"), "--num_processes", str(processes),
               "--main_process_port", port, str(Path(__file__).resolve()), "--worker", str(out_dir), *overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if result.returncode != 0:
        raise SystemExit(f"{config} run failed:\n{result.stderr[-4000:]}")
    return [json.loads((out_dir / f"{rank}.json").read_text()) for rank in range(processes)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen2.5-0.5b")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the demo preset")
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.overrides)
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_step import SHAPES, random_model_dir

    if args.shape not in SHAPES:
        parser.error(f"--shape {args.shape!r}: expected one of {sorted(SHAPES)}")
    model_dir = random_model_dir(args.shape, args.layers)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            out = Path(tmp) / config
            out.mkdir()
            overrides = [*DEFAULT_OVERRIDES, f"model.name={model_dir}", f"output_dir={out}", f"name={config}",
                         f"rollout.tasks_per_step={args.processes}", *args.overrides]
            ranks = launch(config, args.processes, out, overrides)
            rows[config] = {key: sum(r[key] for r in ranks) / len(ranks)
                            for key in ("parameters", "weights", "grads", "moments", "peak_bytes", "wall_s")}
    n = rows["ddp"]["parameters"]
    layers = f", {args.layers} layers" if args.layers else ""
    print(f"random {args.shape} model{layers} ({n / 1e6:,.0f} M parameters), {args.processes} processes, "
          f"{'GPU' if torch.cuda.is_available() else 'CPU (gloo)'}; per process, mean over processes:")
    table = []
    for config, r in rows.items():
        states = r["weights"] + r["grads"] + r["moments"]
        table.append([f"{args.shape}{layers}, {n / 1e6:,.0f} M", config, f"{r['weights'] / 1e9:.2f}",
                      f"{r['grads'] / 1e9:.2f}", f"{r['moments'] / 1e9:.2f}", f"{states / n:.1f}",
                      f"{r['peak_bytes'] / 1e9:.2f}", f"{r['wall_s']:.1f}"])
    print(markdown_table(["model", "config", "weights GB", "grads GB", "AdamW GB", "bytes / param", "peak GB",
                          "s / step"], table))
    ddp, fsdp = rows["ddp"], rows["fsdp"]
    held = [sum(r[k] for k in ("weights", "grads", "moments")) for r in (ddp, fsdp)]
    print(f"FSDP / DDP: states held {held[1] / held[0]:.2f}x, peak {fsdp['peak_bytes'] / ddp['peak_bytes']:.2f}x, "
          f"step time {fsdp['wall_s'] / ddp['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
