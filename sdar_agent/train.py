"""Train a Hugging Face causal LM on a registered env.

    python -m sdar_agent.train                                  # the embedded demo (CPU, minutes)
    python -m sdar_agent.train alfworld_grpo_qwen2.5-3b         # a preset from sdar_agent/configs/
    python -m sdar_agent.train my.yaml rollout.group_size=4 algo.lr=2e-6
    accelerate launch --num_processes 2 -m sdar_agent.train demo

The first argument without `=` is a preset name or YAML path (default `demo`); `key=value`
arguments override it. The config is checked before any model loads. Outputs go to
`<output_dir>/<name>/`: metrics.jsonl, tensorboard/, curves.png, checkpoints/, final/.
"""

from __future__ import annotations

import logging
import sys

from sdar_agent.config import ConfigError, describe_config, load_config, parse_command_line, preset_names
from sdar_agent.objective import ALGORITHMS
from sdar_agent.preflight import check_runnable


def usage(doc: str) -> str:
    """A CLI's help: its docstring, the presets, and every config key with its default."""
    return f"{doc.strip()}\n\npresets: {', '.join(preset_names())}\n\nconfig keys (key=default):{describe_config()}"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for a bad config)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(usage(__doc__))
        return 0
    try:
        command = parse_command_line(args)
        cfg = load_config(command.preset, command.overrides)
        check_runnable(cfg, uses_skills=ALGORITHMS[cfg.algo.name].uses_skills(cfg.algo))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from sdar_agent.trainer import Trainer

    trainer = Trainer(cfg)
    try:
        metrics = trainer.train()
    finally:
        trainer.close()
    if trainer.acc.is_main_process:
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("episode/success_rate", "val/success"))}
        print(f"done: {cfg.run_dir} (step {trainer.state.step}); last metrics: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
