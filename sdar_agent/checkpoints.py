"""A run folder's checkpoints and final model: save, prune, resume, `final/`, and what marks a run.

    runs/<name>/
        checkpoints/step_000010/   accelerate's state (weights, AdamW, RNGs, loop state) + sdar_state.json
        final/                     an HF model folder (or a LoRA adapter) with the tokenizer

`Checkpoints` does this for one stage of a run; the trainer only says when.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from sdar_agent.config import ConfigError
from sdar_agent.sharding import full_state_dict, is_sharded

logger = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
WEIGHTS = "model.safetensors"  # the weights file of a checkpoint and of an HF model folder (same format)
STATE = "sdar_state.json"  # what marks a checkpoint folder: the step and the run's config

#: What a stage writes into its run folder (an RL run folder also holds its warm start's `sft/`).
RUN_OUTPUTS = ("metrics.jsonl", "tensorboard", CHECKPOINTS, "final", "final.partial", "curves.png", "config.yaml",
               "validations")


def holds_run(run_dir: Path) -> bool:
    """Whether a stage has already written its metrics or checkpoints into `run_dir`."""
    return (run_dir / "metrics.jsonl").is_file() or (run_dir / CHECKPOINTS).is_dir()


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Make `run_dir` this stage's: continue it (resume), empty its outputs (overwrite), or refuse."""
    if resume or not holds_run(run_dir):
        return
    if not overwrite:
        run = run_dir.parent if run_dir.name == "sft" else run_dir  # a warm start is resumed with its run
        raise ConfigError(f"{run_dir} already holds a run: continue it with resume={run}, replace it with "
                          "overwrite=true, or choose another name=.")
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    logger.info("overwrite=true: replaced the earlier run's outputs in %s", run_dir)


class Checkpoints:
    """The checkpoints and `final/` of one stage's run folder, written through `acc` (every process calls)."""

    def __init__(self, acc: Any, run_dir: Path, keep: int) -> None:
        self.acc, self.run_dir, self.keep = acc, run_dir, keep
        acc.register_save_state_pre_hook(drop_tied_copies)

    def folder(self, step: int) -> Path:
        return self.run_dir / CHECKPOINTS / f"step_{step:06d}"

    def save(self, step: int, config: dict[str, Any]) -> Path:
        """Checkpoint step `step` (with the run's `config`), keeping the newest `keep` checkpoints."""
        path = self.folder(step)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(path))
        if self.acc.is_main_process:
            (path / STATE).write_text(json.dumps({"step": step, "config": config}))
            kept = sorted((self.run_dir / CHECKPOINTS).glob("step_*"))
            for old in kept[: -self.keep]:
                shutil.rmtree(old)
        self.acc.wait_for_everyone()
        return path

    @staticmethod
    def find(source: str) -> Path:
        """The checkpoint folder `resume=source` names: a checkpoint, or a run folder's newest one."""
        path = Path(source)
        if (path / CHECKPOINTS).is_dir():
            candidates = sorted((path / CHECKPOINTS).glob("step_*"))
            if not candidates:
                raise FileNotFoundError(f"resume={source!r}: {path / CHECKPOINTS} holds no checkpoint.")
            path = candidates[-1]
        if not (path / STATE).is_file():
            raise FileNotFoundError(f"resume={source!r}: not a checkpoint folder (no {STATE}).")
        return path

    def load(self, path: Path) -> None:
        """Every registered state (model, optimizer, RNGs, loop state) from the checkpoint at `path`."""
        self.acc.load_state(str(path))

    def save_final(self, model: Any, tokenizer: Any) -> Path:
        """Write the HF model folder `final/`: into a fresh folder swapped in whole, never over old files.

        A swap (not a rewrite in place) keeps a half-written `final/` from ever being seen, and keeps a
        checkpoint whose weights are a hard link to the previous `final/` intact.
        """
        path = self.run_dir / "final"
        self.acc.wait_for_everyone()
        state = full_state_dict(self.acc, model) if is_sharded(self.acc) else None  # all processes gather
        if self.acc.is_main_process:
            partial = path.with_name("final.partial")
            shutil.rmtree(partial, ignore_errors=True)
            self.acc.unwrap_model(model).save_pretrained(partial, state_dict=state)
            tokenizer.save_pretrained(partial)
            shutil.rmtree(path, ignore_errors=True)
            partial.rename(path)
        self.acc.wait_for_everyone()
        return path

    def share_final_weights(self, step: int) -> None:
        """Store the weights once when the checkpoint of `step` and `final/` hold the same weights.

        Both files are written the same way (tied copies dropped, same key order), so when their
        bytes are equal the checkpoint's becomes a hard link to `final/`'s; otherwise (or on a file
        system without hard links) both stay.
        """
        checkpoint = self.folder(step) / WEIGHTS
        final = self.run_dir / "final" / WEIGHTS
        if not (self.acc.is_main_process and checkpoint.is_file() and final.is_file()):
            return
        if checkpoint.samefile(final) or not filecmp.cmp(checkpoint, final, shallow=False):
            return
        link = checkpoint.with_name(WEIGHTS + ".link")
        try:
            os.link(final, link)
        except OSError:
            return
        os.replace(link, checkpoint)


def drop_tied_copies(models: list[Any], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
    """Checkpoints store a tied tensor once, under its first name, as `save_pretrained` does.

    (The tied output embedding is re-tied on load; left in, accelerate drops it with a warning.)
    """
    for state in weights:
        seen: set[tuple[Any, int]] = set()
        for name in list(state):
            tensor = state[name]
            if not isinstance(tensor, torch.Tensor):
                continue
            key = (tensor.device, tensor.untyped_storage().data_ptr())
            if key in seen:
                del state[name]
            seen.add(key)
