"""Helpers shared by several test modules (tests import these, never each other)."""

from __future__ import annotations

LENIENT = "test-lenient"


def lenient_parse(text: str):
    """A random model never writes <think>/<action>: call even-length answers valid, so scores differ."""
    from sdar_envs.answers import ParsedAction

    return ParsedAction(text.strip()[:60].lower(), len(text) % 2 == 0, "" if len(text) % 2 == 0 else "odd")


def train_and_compare(cfg):
    """Train `cfg`; its metrics rows, and whether any weight changed."""
    import json

    import torch

    from sdar_agent.trainer import Trainer

    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.acc.unwrap_model(trainer.model).state_dict().items()}
    try:
        trainer.train()
    finally:
        trainer.close()
    after = trainer.acc.unwrap_model(trainer.model).state_dict()
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, changed


def run_train(tmp_path, games, name, *extra, steps=2):
    """`steps` steps of the demo preset shrunk to the tiny model (in fp32) and 2 x 2 two-turn episodes.

    Needs the `lenient_template` fixture (answers are scored by length, so GRPO has a signal).
    """
    from sdar_agent.config import load_config

    return train_and_compare(load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", "algo.name=grpo", f"name={name}", f"output_dir={tmp_path}",
        f"steps={steps}", "save_every=2",
        "val_every=0", "env.num_workers=0", "rollout.tasks_per_step=2", "rollout.group_size=2",
        "rollout.max_response_tokens=8", "env.max_turns=2", "log.progress=false", "log.tensorboard=false",
        "algo.lr=1e-3", "algo.micro_batch_size=3", f"env.kwargs={{data_dir: {games}}}",
        f"rollout.template={LENIENT}", *extra,
    ]))


def run_preset(tmp_path, preset, name, *extra):
    """Two steps of a paper preset, shrunk to the tiny model and a 2 x 2 batch of 2-turn episodes.

    The teacher's skills come from the env's own bank (the presets name SDAR's folder, which a test
    machine may not have).
    """
    from sdar_agent.config import load_config

    return train_and_compare(load_config(preset, [
        "model.name=tiny", "model.compute_dtype=float32", "model.gradient_checkpointing=false", "skills.bank=",
        f"output_dir={tmp_path}", f"name={name}", "steps=2", "save_every=2", "val_every=2", "val_tasks=2",
        "rollout.tasks_per_step=2", "rollout.group_size=2", "rollout.max_response_tokens=8",
        "rollout.max_prompt_tokens=1024", "env.max_turns=2",
        "log.progress=false", "log.tensorboard=false", "algo.lr=1e-3", "algo.micro_batch_size=4",
        "skills.budget_tokens=128", *extra,
    ]))


def finite(row: dict, key: str) -> bool:
    """Whether `row` (a metrics.jsonl line) holds a finite number under `key` (a non-finite one is written as null)."""
    import math

    value = row.get(key)
    return isinstance(value, int | float) and math.isfinite(value)


def undocumented(rows: list[dict]) -> list[str]:
    """Keys of metrics rows that `sdar_agent.tracking.METRICS` does not describe."""
    from sdar_agent.tracking import metric_for

    return sorted({k for row in rows for k in row if k != "step" and metric_for(k) is None})
