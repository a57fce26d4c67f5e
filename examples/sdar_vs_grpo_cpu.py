"""GRPO vs SDAR on a CPU: the same seed, model, tasks and budget; a comparison table and plot.

    python examples/sdar_vs_grpo_cpu.py [--steps 6] [--out runs/sdar_vs_grpo] [overrides ...]

Both runs start from the `demo` preset (the embedded SmolLM2-135M-Instruct on the small offline
ALFWorld set) and differ only in `algo.name`. Writes `<out>/comparison.md` (final validation
success, training success, valid-action ratio, step time, SDAR's gate statistics) and
`<out>/comparison.png`. Extra `key=value` arguments apply to both runs (e.g. `model.name=...`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ALGOS = ("grpo", "sdar")


def run(algo: str, out: Path, steps: int, overrides: list[str]) -> list[dict]:
    from sdar_agent.config import load_config
    from sdar_agent.trainer import Trainer

    cfg = load_config("demo", [f"algo.name={algo}", f"name={algo}", f"output_dir={out}", f"steps={steps}",
                               "save_every=0", f"val_every={steps}", "log.progress=false", *overrides])
    trainer = Trainer(cfg)
    try:
        trainer.train()
    finally:
        trainer.close()
    return [json.loads(line) for line in (out / algo / "metrics.jsonl").read_text().splitlines()]


def summarise(rows: list[dict]) -> dict[str, float]:
    def mean(key: str) -> float:
        values = [r[key] for r in rows if key in r]
        return statistics.fmean(values) if values else float("nan")

    final = rows[-1]
    return {
        "val success (final)": final.get("val/success_rate", float("nan")),
        "train success (mean)": mean("episode/success_rate"),
        "valid-action ratio (mean)": mean("episode/valid_action_ratio"),
        "episode return (mean)": mean("episode/return"),
        "step seconds (mean)": statistics.fmean(r["perf/rollout_s"] + r["perf/update_s"] for r in rows),
        "teacher seconds (mean)": mean("perf/teacher_s"),
        "sdar/gate_mean": mean("sdar/gate_mean"),
        "sdar/gate_active_ratio": mean("sdar/gate_active_ratio"),
        "sdar/teacher_gap_mean": mean("sdar/teacher_gap_mean"),
    }


def write_table(results: dict[str, list[dict]], out: Path, steps: int) -> str:
    summaries = {algo: summarise(rows) for algo, rows in results.items()}
    lines = [f"# GRPO vs SDAR, {steps} steps each, same seed (demo preset)", "",
             "| metric | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for metric in summaries[ALGOS[0]]:
        cells = [f"{summaries[a][metric]:.3f}" if summaries[a][metric] == summaries[a][metric] else "-"
                 for a in results]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(text)
    return text


def plot(results: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["episode/success_rate", "episode/valid_action_ratio", "episode/return", "actor/entropy",
            "sdar/gate_mean", "sdar/gate_active_ratio"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, key in zip(axes.flat, keys, strict=True):
        for algo, rows in results.items():
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=algo)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("runs/sdar_vs_grpo"))
    args, overrides = parser.parse_known_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {algo: run(algo, args.out, args.steps, overrides) for algo in ALGOS}
    print(write_table(results, args.out, args.steps))
    plot(results, args.out)
    print(f"wrote {args.out / 'comparison.md'} and {args.out / 'comparison.png'}")


if __name__ == "__main__":
    main()
