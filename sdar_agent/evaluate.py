"""Evaluation on a fixed panel of tasks: success with its 95 % interval, per task type, per task.

`evaluation_tasks` picks the panel (spread evenly over the split, the same for every evaluation of
that split and size); `evaluate_policy` plays `samples` episodes of each panel task (avg@k;
validation during training uses it); `evaluation_report` turns the episodes into the report a
result can be re-checked from (panel, per-task outcomes, success with its Wilson interval, per
task type); `evaluate_checkpoint` loads a saved model or a training checkpoint and evaluates it
(the command line `python -m sdar_agent.evaluate`, in `sdar_agent.cli`); two reports of the same
panel compare with `sdar_agent.stats.paired_comparison`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from sdar_agent.config import TrainConfig
from sdar_agent.rollout import Agent, Episode, RolloutSettings, SkillUse, collect
from sdar_agent.workers import EnvPool


def evaluation_tasks(task_ids: list[str], n: int) -> list[str]:
    """`n` tasks spread evenly over the split (all of them when n >= its size)."""
    if n >= len(task_ids):
        return list(task_ids)
    return [task_ids[i * len(task_ids) // n] for i in range(n)]


def evaluate_policy(agent: Agent, pool: EnvPool, settings: RolloutSettings, n_tasks: int, rank: int = 0,
                    world: int = 1, skills: SkillUse | None = None, samples: int = 1,
                    progress: str | None = None) -> list[Episode]:
    """`samples` episodes of each of the panel's `n_tasks` tasks; every process plays its share; all episodes, gathered.

    `skills` (with `in_student=True`) evaluates with skills in the policy's prompt. The pool needs
    at least `samples` envs (a task's samples play side by side). With `progress` (its label) a
    progress line counts this process's finished episodes; it is gone when they are all done.
    """
    if pool.n < samples:
        raise ValueError(f"eval.samples={samples} needs as many envs; the pool has {pool.n}")
    tasks = evaluation_tasks(list(pool.call("task_ids")), n_tasks)
    mine = tasks[rank::world]
    per_call = pool.n // samples
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine) * samples, desc=progress, unit="episode", leave=False)
    episodes: list[Episode] = []
    try:
        for start in range(0, len(mine), per_call):
            episodes += collect(agent, pool, mine[start : start + per_call], samples, settings, skills=skills,
                                on_finished=bar.update if bar is not None else None).episodes
    finally:
        if bar is not None:
            bar.close()
    if world > 1:
        from accelerate.utils import gather_object

        episodes = gather_object(episodes)
    return episodes


def outcomes_by_task(episodes: list[Episode]) -> dict[str, list[bool]]:
    """Each task's wins in episode order (its k samples)."""
    outcomes: dict[str, list[bool]] = {}
    for e in episodes:
        outcomes.setdefault(e.task_id, []).append(bool(e.won))
    return outcomes


def evaluation_report(episodes: list[Episode], panel: list[str], samples: int) -> dict[str, Any]:
    """What an evaluation showed, re-checkable: the panel, each task's outcomes, success with its Wilson interval.

    `wilson_95` treats the panel's tasks x k episodes as independent trials (with k > 1 a
    task-level interval is wider); per task type the same over that type's episodes.
    """
    from sdar_agent.stats import wilson_interval
    from sdar_agent.tracking import episode_summary

    def rate(group: list[Episode]) -> dict[str, Any]:
        wins = sum(e.won for e in group)
        return {"success_rate": wins / max(len(group), 1), "wilson_95": list(wilson_interval(wins, len(group))),
                "episodes": len(group), "tasks": len({e.task_id for e in group})}

    by_type: dict[str, list[Episode]] = {}
    for e in episodes:
        by_type.setdefault(e.task_type, []).append(e)
    return {"panel": list(panel), "samples": samples, **rate(episodes),
            "per_task_type": {t: rate(group) for t, group in sorted(by_type.items())},
            "outcomes": outcomes_by_task(episodes), "task_types": {e.task_id: e.task_type for e in episodes},
            "summary": episode_summary(episodes)}


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


def load_for_evaluation(cfg: TrainConfig, checkpoint: Path | None) -> tuple[Agent, Any]:
    """The agent and model of `cfg`'s model, or of the one saved at `checkpoint` (HF folder, adapter, checkpoint)."""
    from sdar_agent.generation import make_generator
    from sdar_agent.models import compute_dtype, load_policy, load_tokenizer, pick_device
    from sdar_agent.prompts import template_for

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
    generator = make_generator(cfg.rollout, model, tokenizer, compute_dtype(cfg.model, device), cfg.seed)
    return Agent(generator, tokenizer, template_for(cfg.env.id, cfg.rollout.template)), model


def evaluate_checkpoint(cfg: TrainConfig, checkpoint: Path | None, split: str, tasks: int,
                        out: Path | None = None) -> dict[str, Any]:
    """Evaluate `cfg`'s model, or the one saved at `checkpoint`, on a panel of `tasks` tasks of `split`.

    Plays `eval.samples` episodes per task at `val_temperature` and writes the report (also
    returned, with its `path`) to `out`, by default `eval.json` beside the checkpoint, else in the
    run folder.
    """
    import datetime

    from sdar_agent.hardware import commit_id

    _seed(cfg.seed)
    agent, _ = load_for_evaluation(cfg, checkpoint)
    samples = cfg.eval.samples
    pool = EnvPool.from_config(cfg.env, split, max(min(tasks, 16), samples))
    try:
        panel = evaluation_tasks(list(pool.call("task_ids")), tasks)
        available = len(pool.call("task_ids"))
        settings = RolloutSettings.from_config(cfg, agent.template, cfg.val_temperature)
        episodes = evaluate_policy(agent, pool, settings, n_tasks=tasks, samples=samples,
                                   progress=f"evaluation, {split}" if cfg.log.progress else None)
    finally:
        pool.close()
    result = {"env": cfg.env.id, "env_kwargs": cfg.env.kwargs, "split": split, "tasks_available": available,
              "model": cfg.model.name, "checkpoint": str(checkpoint) if checkpoint else None,
              "temperature": cfg.val_temperature, "greedy": cfg.val_temperature == 0, "seed": cfg.seed,
              "max_turns": cfg.env.max_turns, "commit": commit_id(), "date": datetime.date.today().isoformat(),
              **evaluation_report(episodes, panel, samples)}
    if out is None:
        out = (checkpoint if checkpoint is not None and checkpoint.is_dir() else cfg.run_dir) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    result["path"] = str(out)
    return result


def _seed(seed: int) -> None:
    """Seed torch's sampling for an evaluation (the same seed, the same episodes)."""
    import torch

    torch.manual_seed(seed)

if __name__ == "__main__":
    from sdar_agent.cli import evaluate_main

    raise SystemExit(evaluate_main())
