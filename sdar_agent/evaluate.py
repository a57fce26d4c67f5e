"""Evaluate a policy on a split: success rate overall and per task type.

    python -m sdar_agent.evaluate                                   # the demo's base model
    python -m sdar_agent.evaluate demo checkpoint=runs/demo/final split=valid_unseen tasks=12

Takes a preset and `key=value` overrides like `sdar_agent.train`, plus three keys of its own:
`checkpoint` (a `final/` folder or a training checkpoint), `split` (default: the first of the
preset's `env.val_splits`) and `tasks` (default: the preset's `val_tasks`). Checks all of it before
anything loads; writes `eval.json` beside the checkpoint (or in the run folder) and prints a table.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from sdar_agent.config import ConfigError, TrainConfig, load_config, parse_command_line
from sdar_agent.generation import Generator, Sampling
from sdar_agent.prompts import PromptTemplate
from sdar_agent.rollout import Episode, SkillUse, collect
from sdar_agent.workers import EnvPool

OWN_KEYS = ("checkpoint", "split", "tasks")


def evaluation_tasks(task_ids: list[str], n: int) -> list[str]:
    """`n` tasks spread evenly over the split (all of them when n >= its size)."""
    if n >= len(task_ids):
        return list(task_ids)
    return [task_ids[i * len(task_ids) // n] for i in range(n)]


def evaluate_policy(generate: Generator, tokenizer: Any, pool: EnvPool, template: PromptTemplate, cfg: TrainConfig,
                    sampling: Sampling, rank: int = 0, world: int = 1, n_tasks: int | None = None,
                    skills: SkillUse | None = None) -> list[Episode]:
    """One rollout per task on the pool's split; every process plays its share; all episodes, gathered.

    `skills` (with `in_student=True`) evaluates with skills in the policy's prompt.
    """
    tasks = evaluation_tasks(list(pool.call("task_ids")), n_tasks or cfg.val_tasks)
    mine = tasks[rank::world]
    episodes: list[Episode] = []
    for start in range(0, len(mine), pool.n):
        batch = collect(generate, tokenizer, pool, template, mine[start : start + pool.n], 1, sampling,
                        max_turns=cfg.env.max_turns, history_length=cfg.rollout.history_length,
                        max_prompt_tokens=cfg.rollout.max_prompt_tokens, skills=skills)
        episodes += batch.episodes
    if world > 1:
        from accelerate.utils import gather_object

        episodes = gather_object(episodes)
    return episodes


def _positive_int(value: object, key: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{key}={value!r}: expected a whole number >= 1.") from None
    if number < 1:
        raise ConfigError(f"{key}={number}: expected >= 1.")
    return number


def _load_weights(model: Any, checkpoint: Path) -> None:
    """Weights from a training checkpoint into `model`.

    accelerate's model.safetensors, or an FSDP run's sharded `pytorch_model_fsdp_0/` (a torch
    distributed checkpoint, read here in one process).
    """
    from safetensors.torch import load_file

    from sdar_agent.models import load_trainable_state

    sharded = checkpoint / "pytorch_model_fsdp_0"
    if sharded.is_dir():
        import torch.distributed.checkpoint as dcp

        state = {"model": dict(model.state_dict())}  # filled in place, under the key FSDP saved it with
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(state, checkpoint_id=str(sharded), no_dist=True)
        load_trainable_state(model, state["model"])
        return
    files = sorted(checkpoint.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint={checkpoint}: no model*.safetensors (nor an FSDP run's "
                                f"pytorch_model_fsdp_0/) in it.")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    load_trainable_state(model, state)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    from sdar_agent.generation import make_generator
    from sdar_agent.models import compute_dtype, load_policy, load_tokenizer, pick_device
    from sdar_agent.preflight import check_runnable
    from sdar_agent.prompts import template_for
    from sdar_agent.tracking import episode_summary
    from sdar_agent.train import usage

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage(__doc__))
        return 0
    try:
        args = parse_command_line(argv, OWN_KEYS)
        cfg = load_config(args.preset, args.overrides)
        tasks = _positive_int(args.own.get("tasks", cfg.val_tasks), "tasks")
        split = args.own.get("split", cfg.env.val_splits[0])
        check_runnable(cfg, splits=[split], checkpoint=args.own.get("checkpoint"))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    checkpoint = Path(args.own["checkpoint"]) if "checkpoint" in args.own else None
    if checkpoint is not None and (checkpoint / "config.json").is_file():
        cfg.model.name, cfg.model.lora_rank = str(checkpoint), 0  # a saved HF model
    adapter = checkpoint is not None and (checkpoint / "adapter_config.json").is_file()
    tokenizer = load_tokenizer(cfg.model)
    device = pick_device(cfg.model)
    model, _ = load_policy(cfg.model, device, tokenizer)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(checkpoint))
    elif checkpoint is not None and not (checkpoint / "config.json").is_file():
        _load_weights(model, checkpoint)
    pool = EnvPool.from_config(cfg.env, split, min(tasks, 16))
    available = len(pool.call("task_ids"))
    if tasks > available:
        print(f"note: split {split!r} of {cfg.env.id} holds {available} tasks; evaluating all {available} "
              f"(tasks={tasks} asked for more)")
    try:
        generator = make_generator(cfg.rollout, model, tokenizer, compute_dtype(cfg.model, device), cfg.seed)
        template = template_for(cfg.env.id, cfg.rollout.template)
        episodes = evaluate_policy(generator, tokenizer, pool, template, cfg,
                                   Sampling.from_config(cfg.rollout, cfg.val_temperature, template.answer_ends),
                                   n_tasks=tasks)
    finally:
        pool.close()
    summary = episode_summary(episodes)
    result = {"episodes": len(episodes), "summary": summary, "split": split, "model": cfg.model.name,
              "checkpoint": str(checkpoint) if checkpoint else None}
    out = (checkpoint if checkpoint is not None and checkpoint.is_dir() else cfg.run_dir) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{cfg.env.id} split={split} model={cfg.model.name} checkpoint={checkpoint}")
    for key, value in summary.items():
        if key.startswith("success_rate/"):
            print(f"  {key.split('/', 1)[1]:34s} {value:7.1%}")
    print(f"  {'all':34s} {summary.get('success_rate', 0.0):7.1%}  ({len(episodes)} episodes)  -> {out}")
    print(f"  {'mean task score':34s} {summary.get('score', 0.0):7.3f}  (info['score']: WebShop's reward, "
          "Search-QA's F1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
