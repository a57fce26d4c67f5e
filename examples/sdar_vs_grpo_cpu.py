"""GRPO vs SDAR from one SFT checkpoint on a CPU: the same seeds, steps and held-out games; a table and a curve.

    python examples/sdar_vs_grpo_cpu.py [--seeds 0 1 2] [--algos grpo sdar] [--steps 2] [--val-tasks 24]
                                        [--out runs/sdar_vs_grpo] [--sft-set key=value ...] [key=value ...]

1. The warm start, once: the `demo` preset's SFT stage (expert demonstrations of the train split;
   `--sft-set` overrides apply to it alone) writes `<out>/sft/sft/final/`; a later call with the
   same `--out` reuses it.
2. For every seed, the SFT model is validated (step 0) on the first `--val-tasks` games of
   `valid_unseen`, spread as `val_tasks` spreads them, at the preset's validation temperature.
3. For every seed and algorithm, `--steps` RL steps from the SFT model, validated on the same games
   every `--val-every` steps (and at the end). The runs of one seed differ only in `algo.name`.
   Seeds run one after another and the table is rewritten after each, so a run cut short still
   compares the methods on the seeds it finished; a later call with the same `--out` reuses the
   finished runs and step-0 validations (delete them to re-measure).
4. Prints a table (mean ± std over seeds of validation success and valid-action ratio at the last
   step, training success, seconds per step, wall time of each stage, kept in `<out>/timings.json`),
   then the paired comparisons on the pooled seeds (each method against the SFT model, and each
   pair of methods: the same panel's tasks under each seed paired, from the validations' reports:
   the difference with a paired bootstrap 95 % interval and an exact McNemar p-value), writes both
   to `<out>/comparison.md`, and the validation success per step per algorithm (mean ± std band)
   to `<out>/comparison.png`.
Extra `key=value` arguments apply to every stage (e.g. `env.max_turns=12`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def stage_config(out: Path, name: str, overrides: list[str]):
    from sdar_agent.config import load_config

    return load_config("demo", [f"output_dir={out}", f"name={name}", "save_every=0", "log.progress=false",
                                "log.tensorboard=false", *overrides])


def warm_start(out: Path, overrides: list[str]) -> tuple[Path, bool]:
    """The SFT model folder, and whether it was trained now (not reused)."""
    from sdar_agent.train import run

    final = out / "sft" / "sft" / "final"
    if (final / "config.json").is_file():
        print(f"reusing the SFT model {final}")
        return final, False
    run(stage_config(out, "sft", ["val_every=0", *overrides]), stages=("sft",))
    return final, True


def validate_start(out: Path, model: Path, seed: int, overrides: list[str]) -> tuple[dict[str, float], bool]:
    """Step-0 validation of the SFT model with this seed's sampling, and whether it ran now (not reused)."""
    from sdar_agent.trainer import Trainer

    saved = out / f"start-seed{seed}.json"
    if saved.is_file():
        return json.loads(saved.read_text()), False
    trainer = Trainer(stage_config(out, f"start-seed{seed}", ["overwrite=true", f"seed={seed}", f"model.name={model}",
                                                               "algo.name=grpo", *overrides]))
    try:
        metrics = trainer.validate()
    finally:
        trainer.close()
    saved.write_text(json.dumps(metrics))
    return metrics, True


def train_rl(out: Path, model: Path, algo: str, seed: int, steps: int, val_every: int,
             overrides: list[str]) -> tuple[list[dict], bool]:
    """The metrics rows of `steps` RL steps from the SFT model, and whether they ran now (not reused)."""
    from sdar_agent.trainer import Trainer

    name = f"{algo}-seed{seed}"
    metrics = out / name / "metrics.jsonl"
    if metrics.is_file() and (out / name / "final" / "config.json").is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        if rows and rows[-1]["step"] == steps and "val/success_rate" in rows[-1]:
            return rows, False
    trainer = Trainer(stage_config(out, name, ["overwrite=true", f"seed={seed}", f"model.name={model}",
                                               f"algo.name={algo}", f"steps={steps}", f"val_every={val_every}",
                                               *overrides]))
    try:
        trainer.train()
    finally:
        trainer.close()
    return [json.loads(line) for line in metrics.read_text().splitlines()], True


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def table(start: dict[int, dict], runs: dict[str, dict[int, list[dict]]], wall: dict[str, float],
          header: str) -> str:
    lines = [header, "", "| method | val success | val valid-action ratio | train success | s / step | wall (s) |",
             "|---|---|---|---|---|---|"]
    seeds = sorted(start)
    lines.append(f"| SFT model (step 0) | {mean_std([start[s]['val/success_rate'] for s in seeds])} | "
                 f"{mean_std([start[s]['val/valid_action_ratio'] for s in seeds])} | - | - | {wall['sft']:.0f} |")
    for algo, by_seed in runs.items():
        finals = [[r for r in rows if "val/success_rate" in r][-1] for rows in by_seed.values()]
        train = [statistics.fmean(r["episode/success_rate"] for r in rows if "episode/success_rate" in r)
                 for rows in by_seed.values()]
        step_s = [statistics.fmean(r["perf/rollout_s"] + r["perf/update_s"] for r in rows if "perf/rollout_s" in r)
                  for rows in by_seed.values()]
        lines.append(f"| {algo} | {mean_std([f['val/success_rate'] for f in finals])} | "
                     f"{mean_std([f['val/valid_action_ratio'] for f in finals])} | {mean_std(train)} | "
                     f"{statistics.fmean(step_s):.0f} | {wall[algo]:.0f} |")
    return "\n".join(lines) + "\n"


def final_outcomes(out: Path, name: str, step: int, split: str = "valid_unseen") -> dict[str, list[bool]]:
    """The per-task outcomes of run `name`'s validation at `step` (its report in `validations/`)."""
    report = out / name / "validations" / f"step_{step:06d}_{split}.json"
    return json.loads(report.read_text())["outcomes"]


def pooled(out: Path, names: dict[int, tuple[str, int]]) -> dict[str, list[bool]]:
    """Outcomes of one method over seeds, keyed `<seed>/<task>`: {seed: (run name, step)} -> pooled outcomes."""
    return {f"{seed}/{task}": won for seed, (name, step) in sorted(names.items())
            for task, won in final_outcomes(out, name, step).items()}


def paired_table(out: Path, seeds: list[int], algos: list[str], steps: int) -> str:
    """Each method against the SFT model and each pair of methods, paired per (seed, task) on the pooled seeds."""
    from sdar_agent.stats import paired_comparison

    methods = {"SFT model": pooled(out, {s: (f"start-seed{s}", 0) for s in seeds})}
    methods.update({algo: pooled(out, {s: (f"{algo}-seed{s}", steps) for s in seeds}) for algo in algos})
    names = list(methods)
    pairs = [(names[0], b) for b in names[1:]] + [(a, b) for i, a in enumerate(names[1:], 1) for b in names[i + 1 :]]
    lines = ["", f"Paired on {len(seeds)} seeds x the panel (each (seed, task) a pair; B - A):", "",
             "| A | B | success A | success B | B - A [95 % CI] | won by B alone / A alone | McNemar p |",
             "|---|---|---|---|---|---|---|"]
    for a, b in pairs:
        c = paired_comparison(methods[a], methods[b])
        lines.append(f"| {a} | {b} | {c.success_a:.3f} | {c.success_b:.3f} | {c.difference:+.3f} "
                     f"[{c.difference_low:+.3f}, {c.difference_high:+.3f}] | {c.only_b} / {c.only_a} | "
                     f"{c.mcnemar_p:.3g} |")
    return "\n".join(lines) + "\n"


def plot(start: dict[int, dict], runs: dict[str, dict[int, list[dict]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for algo, by_seed in runs.items():
        curves = []
        for seed, rows in by_seed.items():
            points = {0: start[seed]["val/success_rate"]}
            points.update({r["step"]: r["val/success_rate"] for r in rows if "val/success_rate" in r})
            curves.append(points)
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        # The sample standard deviation over seeds, as the table's (statistics.stdev).
        mean, std = values.mean(axis=0), values.std(axis=0, ddof=1 if len(curves) > 1 else 0)
        ax.plot(steps, mean, marker="o", label=f"{algo} (n={len(curves)} seeds)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("RL step (0 = the SFT model)")
    ax.set_ylabel("validation success (valid_unseen)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["grpo", "sdar"])
    parser.add_argument("--steps", type=int, default=2, help="RL steps per run")
    parser.add_argument("--val-every", type=int, default=0, help="validate every N steps (0: at the end only)")
    parser.add_argument("--val-tasks", type=int, default=24, help="held-out valid_unseen games")
    parser.add_argument("--out", type=Path, default=Path("runs/sdar_vs_grpo"))
    parser.add_argument("--sft-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for the SFT stage only, after the shared ones; put it last")
    args, overrides = parser.parse_known_args(argv)
    overrides = [f"val_tasks={args.val_tasks}", *overrides]
    args.out.mkdir(parents=True, exist_ok=True)
    timings_file = args.out / "timings.json"  # seconds per stage, kept so that a reused stage keeps its time
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.is_file() else {}

    def timed(key: str, work):
        began = time.perf_counter()
        result, fresh = work()
        if fresh or key not in timings:
            timings[key] = time.perf_counter() - began
            timings_file.write_text(json.dumps(timings, indent=1))
        return result

    model = timed("sft", lambda: warm_start(args.out, [*overrides, *args.sft_set]))
    setting = (f"{args.val_tasks} valid_unseen games (`demo` preset; overrides: {' '.join(overrides)}; "
               f"SFT stage also: {' '.join(args.sft_set) or '-'})")
    start: dict[int, dict] = {}
    runs: dict[str, dict[int, list[dict]]] = {algo: {} for algo in args.algos}
    for seed in args.seeds:  # seed by seed, so a run cut short still compares the methods on the seeds it finished
        start[seed] = timed(f"start-seed{seed}", lambda seed=seed: validate_start(args.out, model, seed, overrides))
        print(f"seed {seed}: SFT model validation success {start[seed]['val/success_rate']:.3f}", flush=True)
        for algo in args.algos:
            runs[algo][seed] = timed(f"{algo}-seed{seed}", lambda algo=algo, seed=seed: train_rl(
                args.out, model, algo, seed, args.steps, args.val_every or args.steps, overrides))
            final = [r for r in runs[algo][seed] if "val/success_rate" in r][-1]
            print(f"{algo} seed {seed}: validation success {final['val/success_rate']:.3f} after "
                  f"{args.steps} steps ({timings[f'{algo}-seed{seed}']:.0f}s)", flush=True)
        wall = {"sft": timings["sft"] + sum(timings[f"start-seed{s}"] for s in start)}
        wall.update({algo: sum(timings[f"{algo}-seed{s}"] for s in by_seed) for algo, by_seed in runs.items()})
        header = (f"# {' vs '.join(args.algos)} from one SFT model: {args.steps} RL steps, seeds {sorted(start)} of "
                  f"{args.seeds} finished, {setting}")
        text = table(start, runs, wall, header) + paired_table(args.out, sorted(start), args.algos, args.steps)
        (args.out / "comparison.md").write_text(text)
        plot(start, runs, args.out)
    print(text)
    print(f"wrote {args.out / 'comparison.md'} and {args.out / 'comparison.png'}")


if __name__ == "__main__":
    main()
