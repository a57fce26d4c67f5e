"""A run of a config: the SFT warm start (when the config has one), then RL from its model.

`run(cfg)` is what `python -m sdar_agent.train` does after its checks (the command line itself is
`sdar_agent.cli`); experiments call it directly. With `sft.episodes` > 0 the run first fine-tunes on
the env expert's demonstrations (`runs/<name>/sft/`), then runs RL from that model (`runs/<name>/`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

from sdar_agent.checkpoints import holds_run, run_folder_of
from sdar_agent.config import TrainConfig
from sdar_agent.stages import RL, SFT
from sdar_agent.trainer import NonFiniteTraining, Trainer

__all__ = ["STAGES", "NonFiniteTraining", "fresh_run_name", "run"]
STAGES = ("sft", "rl")


def run(cfg: TrainConfig, stages: Sequence[str] = STAGES) -> dict[str, Any]:
    """Run the stages of `cfg` in order; each stage's last metrics and validation results.

    The SFT stage runs when `sft.episodes` > 0 and its `final/` is not there yet (a resumed run
    skips a finished warm start); the RL stage starts from the SFT stage's model.
    """
    cfg = fresh_run_name(continue_in_resumed_folder(cfg))
    results: dict[str, Any] = {}
    sft_final = SFT.run_dir(cfg) / "final"
    if "sft" in stages and cfg.sft.episodes > 0:
        if not (cfg.resume and (sft_final / "config.json").is_file()):
            sft_cfg = copy.deepcopy(cfg)
            sft_cfg.resume = str(SFT.run_dir(cfg)) if cfg.resume else ""
            results["sft"] = _run_stage(Trainer(sft_cfg, SFT))
        if "rl" in stages:
            cfg = copy.deepcopy(cfg)
            cfg.model.name = str(sft_final)  # the RL stage starts from the warm-started model
    if "rl" in stages:
        results["rl"] = _run_stage(Trainer(cfg, RL))
    return results


def continue_in_resumed_folder(cfg: TrainConfig) -> TrainConfig:
    """With `resume=`, `cfg` moved to the folder of the run it resumes (whatever `name=` says): never another run."""
    if not cfg.resume:
        return cfg
    folder = run_folder_of(cfg.resume)
    if folder.resolve() == cfg.run_dir.resolve():
        return cfg
    moved = copy.deepcopy(cfg)
    moved.output_dir, moved.name = str(folder.parent), folder.name
    logging.getLogger(__name__).info("resume=%s: continuing the run in %s", cfg.resume, moved.run_dir)
    return moved


def fresh_run_name(cfg: TrainConfig) -> TrainConfig:
    """`cfg`, or a copy named `<name>-2`, `<name>-3`, ... when its folder already holds a run.

    A run with `resume=` continues its folder and `overwrite=true` replaces it; otherwise an
    existing run is never mixed with a new one.
    """
    def taken(name: str) -> bool:
        folder = cfg.run_dir.parent / name
        return holds_run(folder) or holds_run(folder / SFT.folder)

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


def _run_stage(trainer: Trainer) -> dict[str, Any]:
    try:
        last = trainer.train()
    finally:
        trainer.close()
    return {"last": last, "validations": trainer.tracker.validations(), "step": trainer.state.step,
            "run_dir": str(trainer.run_dir)}


if __name__ == "__main__":
    from sdar_agent.cli import train_main

    raise SystemExit(train_main())
