"""Train a Hugging Face causal LM on a registered env: the SFT warm start (when the preset has one), then RL.

    python -m sdar_agent.train                                  # the embedded demo (CPU, minutes)
    python -m sdar_agent.train alfworld_grpo_qwen2.5-3b         # a preset from sdar_agent/configs/
    python -m sdar_agent.train my.yaml rollout.group_size=4 algo.lr=2e-6
    accelerate launch --num_processes 2 -m sdar_agent.train demo

The first argument without `=` is a preset name or YAML path (default `demo`); `key=value`
arguments override it. Everything is checked before any model loads. With `sft.episodes` > 0 the
run first fine-tunes on the env expert's demonstrations (`runs/<name>/sft/`), then runs RL from
that model (`runs/<name>/`): metrics.jsonl, tensorboard/, curves.png, checkpoints/, final/.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from sdar_agent.config import ConfigError, TrainConfig, describe_config, load_config, parse_command_line, preset_names
from sdar_agent.objective import ALGORITHMS
from sdar_agent.preflight import check_runnable

STAGES = ("sft", "rl")


def usage(doc: str) -> str:
    """A CLI's help: its docstring, the presets, and every config key with its default."""
    return f"{doc.strip()}\n\npresets: {', '.join(preset_names())}\n\nconfig keys (key=default):{describe_config()}"


def run(cfg: TrainConfig, stages: Sequence[str] = STAGES) -> dict[str, Any]:
    """Run the stages of `cfg` in order; each stage's last metrics and validation results.

    The SFT stage runs when `sft.episodes` > 0 and its `final/` is not there yet (a resumed run
    skips a finished warm start); the RL stage starts from the SFT stage's model.
    """
    from sdar_agent.trainer import Trainer

    cfg = fresh_run_name(cfg)
    results: dict[str, Any] = {}
    sft_final = cfg.run_dir / "sft" / "final"
    if "sft" in stages and cfg.sft.episodes > 0:
        if not (cfg.resume and (sft_final / "config.json").is_file()):
            sft_cfg = copy.deepcopy(cfg)
            sft_cfg.resume = str(cfg.run_dir / "sft") if cfg.resume else ""
            results["sft"] = _run_stage(Trainer(sft_cfg, stage="sft"))
        if "rl" in stages:
            cfg = copy.deepcopy(cfg)
            cfg.model.name = str(sft_final)  # the RL stage starts from the warm-started model
    if "rl" in stages:
        results["rl"] = _run_stage(Trainer(cfg, stage="rl"))
    return results


def fresh_run_name(cfg: TrainConfig) -> TrainConfig:
    """`cfg`, or a copy named `<name>-2`, `<name>-3`, ... when its folder already holds a run.

    A run with `resume=` continues its folder and `overwrite=true` replaces it; otherwise an
    existing run is never mixed with a new one.
    """
    from sdar_agent.trainer import holds_run

    def taken(name: str) -> bool:
        folder = cfg.run_dir.parent / name
        return holds_run(folder) or holds_run(folder / "sft")

    if cfg.resume or cfg.overwrite or not taken(cfg.name):
        return cfg
    n = 2
    while taken(f"{cfg.name}-{n}"):
        n += 1
    fresh = copy.deepcopy(cfg)
    fresh.name = f"{cfg.name}-{n}"
    logging.getLogger(__name__).warning(
        "%s already holds a run: this one goes to %s (resume=%s continues that one, overwrite=true replaces it)",
        cfg.run_dir, fresh.run_dir, cfg.run_dir)
    return fresh


def _run_stage(trainer: Any) -> dict[str, Any]:
    try:
        last = trainer.train()
    finally:
        trainer.close()
    return {"last": last, "validations": trainer.tracker.validations(), "step": trainer.state.step,
            "run_dir": str(trainer.run_dir)}


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


def configure_logging() -> None:
    """The project's own messages on the console from INFO up, other libraries' from WARNING up.

    Libraries the envs import announce themselves at INFO (faiss, loaded by pyserini, logs which
    of its builds it fell back to); a run's console should carry only what it says itself.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("sdar_agent", "sdar_envs"):
        logging.getLogger(name).setLevel(logging.INFO)


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
    if first:
        print(report(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for a bad config)."""
    return run_cli(list(sys.argv[1:] if argv is None else argv), STAGES, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
