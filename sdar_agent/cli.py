"""The command lines: `python -m sdar_agent.train`, `python -m sdar_agent.sft`, `python -m sdar_agent.evaluate`.

Each takes a preset and `key=value` overrides, checks all of it before anything loads, and exits
0 when done, 2 for a bad command line or config (one `error: ...` line), 1 when training stops on
a diverged loss. Library modules never import this one.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdar_agent.config import ConfigError, describe_config, load_config, parse_command_line, preset_names
from sdar_agent.objective import ALGORITHMS
from sdar_agent.preflight import check_runnable
from sdar_agent.train import STAGES, NonFiniteTraining, run

TRAIN = """Train a Hugging Face causal LM on a registered env: the SFT warm start (when the preset has one), then RL.

    python -m sdar_agent.train                                  # the embedded demo (CPU, minutes)
    python -m sdar_agent.train alfworld_grpo_qwen2.5-3b         # a preset from sdar_agent/configs/
    python -m sdar_agent.train my.yaml rollout.group_size=4 algo.lr=2e-6
    python -m sdar_agent.train demo_searchqa env.kwargs.data_dir=my_qa/ env.kwargs.corpus=wiki.jsonl
    accelerate launch --num_processes 2 -m sdar_agent.train demo

The first argument without `=` is a preset name or YAML path (default `demo`); `key=value`
arguments override it (a key of a mapping field with a dot: `env.kwargs.data_dir=games/`).
Everything is checked before any model loads. With `sft.episodes` > 0 the run first fine-tunes on
the env expert's demonstrations (`runs/<name>/sft/`), then runs RL from that model
(`runs/<name>/`): metrics.jsonl, tensorboard/, curves.png, checkpoints/, final/."""

SFT = """The SFT warm start of a preset alone: expert demonstrations of the env, then supervised fine-tuning.

    python -m sdar_agent.sft demo                       # only the warm start of a preset (its `sft:` section)
    python -m sdar_agent.train demo                     # the warm start, then RL from it (when `sft.episodes` > 0)

Writes `runs/<name>/sft/` (metrics, checkpoints, `final/`: an HF model folder usable as `model.name=`)."""

EVALUATE = """Evaluate a policy on a fixed panel of a split's tasks: success with its 95 % interval, per task type.

    python -m sdar_agent.evaluate                                   # the demo's base model
    python -m sdar_agent.evaluate demo checkpoint=runs/demo/final split=valid_unseen tasks=64
    python -m sdar_agent.evaluate demo checkpoint=runs/demo/final compare=runs/demo/sft/final eval.samples=4

Takes a preset and `key=value` overrides like `sdar_agent.train`, plus keys of its own:
`checkpoint` (a `final/` folder or a training checkpoint), `split` (default: the first of the
preset's `env.val_splits`), `tasks` (the panel's size, default: the preset's `val_tasks`; the panel
is spread evenly over the split and listed in the report) and `compare` (another checkpoint, or
the `eval.json` of one, evaluated on the same panel: per-task outcomes side by side, the
difference with a paired bootstrap 95 % interval and an exact McNemar p-value). Episodes are
played at `val_temperature` (0: greedy), `eval.samples` per task (avg@k). Checks all of it before
anything loads; writes `eval.json` beside the checkpoint (or in the run folder; with `compare`
also `compare.json`) and prints a table."""

EVALUATE_KEYS = ("checkpoint", "split", "tasks", "compare")


def usage(doc: str) -> str:
    """A CLI's help: its text, the presets, and every config key with its default."""
    return f"{doc.strip()}\n\npresets: {', '.join(preset_names())}\n\nconfig keys (key=default):{describe_config()}"


def configure_logging() -> None:
    """The project's own messages on the console from INFO up, other libraries' from WARNING up.

    Libraries the envs import announce themselves at INFO (faiss, loaded by pyserini, logs which
    of its builds it fell back to); a run's console should carry only what it says itself.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("sdar_agent", "sdar_envs"):
        logging.getLogger(name).setLevel(logging.INFO)


def report(results: dict[str, Any]) -> str:
    """The lines a run ends with: validation success before training, after SFT, after RL.

    Each says how many held-out episodes it rests on ("12.5% (1 of 8 won)"): on a few games a
    figure moves by a whole game's share with sampling alone.
    """
    lines = []
    for stage, result in results.items():
        for step, success, episodes in result["validations"]:
            when = ("untouched model" if step == 0 else f"after {stage.upper()} (step {step})")
            count = f" ({round(success * episodes)} of {episodes} won)" if episodes else ""
            lines.append(f"validation success {when}: {success:.1%}{count}")
        lines.append(f"{stage}: {result['run_dir']} (step {result['step']})")
    return "\n".join(lines)


def run_cli(args: list[str], stages: Sequence[str], doc: str) -> int:
    """Parse, check, run `stages`, report; the exit status (2 for a bad command line or config)."""
    configure_logging()
    if any(a in ("-h", "--help") for a in args):
        print(usage(doc))
        return 0
    try:
        command = parse_command_line(args)
        cfg = load_config(command.preset, command.overrides)
        if "rl" not in stages and cfg.sft.episodes < 1:
            raise ConfigError(f"sft.episodes={cfg.sft.episodes}: the SFT stage needs expert episodes; set "
                              "sft.episodes=N (N > 0).")
        skills = ALGORITHMS[cfg.algo.name].uses_skills(cfg.algo) if "rl" in stages else False
        check_runnable(cfg, uses_skills=skills)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    first = int(os.environ.get("RANK", "0")) == 0  # says it once, whatever the number of processes
    try:
        results = run(cfg, stages)
    except ConfigError as err:  # what only the trainer can check (its processes, what they run under)
        if first:
            print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteTraining as err:
        if first:
            print(f"error: {err}", file=sys.stderr)
        return 1
    if first:
        print(report(results))
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """`python -m sdar_agent.train`: the SFT warm start (when configured), then RL."""
    return run_cli(list(sys.argv[1:] if argv is None else argv), STAGES, TRAIN)


def sft_main(argv: list[str] | None = None) -> int:
    """`python -m sdar_agent.sft`: the SFT stage of a preset alone."""
    return run_cli(list(sys.argv[1:] if argv is None else argv), ("sft",), SFT)


def _positive_int(value: object, key: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{key}={value!r}: expected a whole number >= 1.") from None
    if number < 1:
        raise ConfigError(f"{key}={number}: expected >= 1.")
    return number


def evaluate_main(argv: list[str] | None = None) -> int:
    """`python -m sdar_agent.evaluate`: a policy on a panel of a split, as a table and `eval.json`."""
    import json

    from sdar_agent.evaluate import evaluate_checkpoint
    from sdar_agent.stats import paired_comparison

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage(EVALUATE))
        return 0
    try:
        args = parse_command_line(argv, EVALUATE_KEYS)
        cfg = load_config(args.preset, args.overrides)
        tasks = _positive_int(args.own.get("tasks", cfg.val_tasks), "tasks")
        split = args.own.get("split", cfg.env.val_splits[0])
        check_runnable(cfg, splits=[split], checkpoint=args.own.get("checkpoint"))
        other = _comparison_source(args.own.get("compare"))
        if other is not None and other.suffix != ".json":
            check_runnable(cfg, splits=[split], checkpoint=str(other))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    checkpoint = Path(args.own["checkpoint"]) if "checkpoint" in args.own else None
    result = evaluate_checkpoint(copy.deepcopy(cfg), checkpoint, split, tasks)
    print_evaluation(result, tasks)
    if other is None:
        return 0
    if other.suffix == ".json":
        baseline = json.loads(other.read_text())
    else:
        baseline = evaluate_checkpoint(copy.deepcopy(cfg), other, split, tasks, out=other / "eval.json")
        print_evaluation(baseline, tasks)
    try:
        comparison = paired_comparison(baseline["outcomes"], result["outcomes"], seed=cfg.seed)
    except ValueError as err:
        print(f"error: compare={other}: {err}", file=sys.stderr)
        return 2
    out = Path(result["path"]).with_name("compare.json")
    out.write_text(json.dumps({"a": baseline.get("checkpoint") or baseline.get("model"),
                               "b": result["checkpoint"] or result["model"], **comparison.to_dict(),
                               "outcomes_a": baseline["outcomes"], "outcomes_b": result["outcomes"]}, indent=2))
    print(f"per task (A = {other}, B = {checkpoint}; wins of {comparison.samples}):")
    for task in result["panel"]:
        a, b = sum(baseline["outcomes"][task]), sum(result["outcomes"][task])
        print(f"  {task:60s} A {a}  B {b}{'  <' if b > a else '  >' if a > b else ''}")
    print(f"B - A: {comparison.difference:+.1%} (paired bootstrap 95 % interval {comparison.difference_low:+.1%} to "
          f"{comparison.difference_high:+.1%}); won by B alone {comparison.only_b}, by A alone {comparison.only_a}: "
          f"exact McNemar p = {comparison.mcnemar_p:.3g}  -> {out}")
    return 0


def _comparison_source(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"compare={value!r} does not exist: expected a checkpoint folder or an eval.json report.")
    return path


def print_evaluation(result: dict[str, Any], tasks: int) -> None:
    """An evaluation report as the console table: the panel, success per task type and overall with 95 % intervals."""
    if tasks > result["tasks_available"]:
        print(f"note: split {result['split']!r} of {result['env']} holds {result['tasks_available']} tasks; "
              f"evaluating all (tasks={tasks} asked for more)")
    mode = "greedy" if result["greedy"] else f"T={result['temperature']}"
    print(f"{result['env']} split={result['split']} model={result['model']} checkpoint={result['checkpoint']} "
          f"({mode}, {result['samples']} episode(s) per task)")
    print(f"  panel ({len(result['panel'])} tasks): {', '.join(result['panel'])}")
    for kind, row in result["per_task_type"].items():
        low, high = row["wilson_95"]
        print(f"  {kind:34s} {row['success_rate']:7.1%}  [{low:.1%}, {high:.1%}]  ({row['episodes']} episodes)")
    low, high = result["wilson_95"]
    print(f"  {'all':34s} {result['success_rate']:7.1%}  [{low:.1%}, {high:.1%}]  ({result['episodes']} episodes, "
          f"95 % Wilson)  -> {result['path']}")
    print(f"  {'mean task score':34s} {result['summary'].get('score', 0.0):7.3f}  (info['score']: WebShop's reward, "
          "Search-QA's F1)")
