"""Evaluate a policy on a split: success rate overall and per task type.

    python -m sdar_agent.evaluate                                   # the demo's base model
    python -m sdar_agent.evaluate demo checkpoint=runs/demo/final split=valid_unseen tasks=12

Takes a preset and `key=value` overrides like `sdar_agent.train`, plus three keys of its own:
`checkpoint` (a `final/` folder or a training checkpoint), `split` (default: the preset's
`env.val_split`) and `tasks` (default: the preset's `val_tasks`). Writes `eval.json` beside the
checkpoint (or in the run folder) and prints a table.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sdar_agent.config import ConfigError, TrainConfig, load_config
from sdar_agent.prompts import PromptTemplate
from sdar_agent.rollout import Sampling, collect
from sdar_agent.workers import EnvPool


def evaluation_tasks(task_ids: list[str], n: int) -> list[str]:
    """`n` tasks spread evenly over the split (all of them when n >= its size)."""
    if n >= len(task_ids):
        return list(task_ids)
    return [task_ids[i * len(task_ids) // n] for i in range(n)]


def evaluate_policy(generate, tokenizer: Any, pool: EnvPool, template: PromptTemplate, cfg: TrainConfig,
                    sampling: Sampling, rank: int = 0, world: int = 1, n_tasks: int | None = None,
                    skills: Any = None) -> dict[str, Any]:
    """One rollout per task on the pool's split; every process plays its share, results are gathered.

    `skills` (a `SkillUse` with `in_student=True`) evaluates with skills in the policy's prompt.
    """
    from accelerate.utils import gather_object

    tasks = evaluation_tasks(list(pool.call("task_ids")), n_tasks or cfg.val_tasks)
    mine = tasks[rank::world]
    episodes = []
    for start in range(0, len(mine), pool.n):
        batch = collect(generate, tokenizer, pool, template, mine[start : start + pool.n], 1, sampling,
                        max_turns=cfg.env.max_turns, history_length=cfg.rollout.history_length,
                        max_prompt_tokens=cfg.rollout.max_prompt_tokens, win_reward=1.0, invalid_penalty=0.0,
                        skills=skills)
        episodes += [(e.task_type, e.won, e.length, e.score) for e in batch.episodes]
    if world > 1:
        episodes = gather_object(episodes)
    by_type: dict[str, list[bool]] = defaultdict(list)
    for task_type, won, *_ in episodes:
        by_type[task_type].append(won)
    return {
        "episodes": len(episodes),
        "overall": float(np.mean([e[1] for e in episodes])) if episodes else 0.0,
        "success_rate": {f"success_rate/{t}": float(np.mean(v)) for t, v in sorted(by_type.items())},
        "mean_length": float(np.mean([e[2] for e in episodes])) if episodes else 0.0,
        "mean_score": float(np.mean([e[3] for e in episodes])) if episodes else 0.0,
    }


def _load_weights(model: Any, checkpoint: Path) -> None:
    """Weights from a training checkpoint (accelerate's model.safetensors) into `model`."""
    from safetensors.torch import load_file

    from sdar_agent.models import load_trainable_state

    files = sorted(checkpoint.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint={checkpoint}: no model*.safetensors in it.")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    load_trainable_state(model, state)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    import torch

    from sdar_agent.models import load_policy, load_tokenizer
    from sdar_agent.prompts import template_for
    from sdar_agent.rollout import HFGenerator
    from sdar_agent.train import split_args

    args = list(sys.argv[1:] if argv is None else argv)
    own = {k: v for k, v in (a.split("=", 1) for a in args if a.split("=", 1)[0] in ("checkpoint", "split", "tasks"))}
    rest = [a for a in args if a.split("=", 1)[0] not in own]
    try:
        preset, overrides = split_args(rest)
        cfg = load_config(preset, overrides)
        tasks = int(own.get("tasks", cfg.val_tasks))
        if tasks < 1:
            raise ConfigError(f"tasks={tasks}: expected >= 1.")
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    checkpoint = Path(own["checkpoint"]) if "checkpoint" in own else None
    if checkpoint is not None and (checkpoint / "config.json").is_file():
        cfg.model.name, cfg.model.lora_rank = str(checkpoint), 0  # a saved HF model
    adapter = checkpoint is not None and (checkpoint / "adapter_config.json").is_file()
    split = own.get("split", cfg.env.val_split)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.model.device != "cpu" else "cpu")
    tokenizer = load_tokenizer(cfg.model)
    model, _ = load_policy(cfg.model, device, tokenizer)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(checkpoint))
    elif checkpoint is not None and not (checkpoint / "config.json").is_file():
        _load_weights(model, checkpoint)
    pool = EnvPool(cfg.env.id, {**cfg.env.kwargs, "split": split}, min(tasks, 16), cfg.env.max_turns,
                   use_workers=cfg.env.num_workers != 0, timeout_s=cfg.env.step_timeout_s)
    try:
        t = cfg.val_temperature
        sampling = Sampling(cfg.rollout.max_response_tokens, temperature=max(t, 1e-5), greedy=t == 0)
        result = evaluate_policy(HFGenerator(model, tokenizer, cfg.rollout.generation_batch_size), tokenizer, pool,
                                 template_for(cfg.env.id, cfg.rollout.template), cfg, sampling, n_tasks=tasks)
    finally:
        pool.close()
    result.update(split=split, model=cfg.model.name, checkpoint=str(checkpoint) if checkpoint else None)
    out = (checkpoint if checkpoint is not None and checkpoint.is_dir() else cfg.run_dir) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{cfg.env.id} split={split} model={cfg.model.name} checkpoint={checkpoint}")
    for key, value in result["success_rate"].items():
        print(f"  {key.split('/', 1)[1]:34s} {value:7.1%}")
    print(f"  {'all':34s} {result['overall']:7.1%}  ({result['episodes']} episodes)  -> {out}")
    print(f"  {'mean task score':34s} {result['mean_score']:7.3f}  (info['score']: WebShop's reward, Search-QA's F1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
