"""A run folder's checkpoints and final model: save, prune, resume, `final/`, and what marks a run.

    runs/<name>/
        .sdar_run                  written when a stage claims the folder: what `overwrite=true` may replace
        checkpoints/step_000010/   accelerate's state (weights, AdamW, RNGs, loop state) + sdar_state.json
        final/                     an HF model folder (or a LoRA adapter) with the tokenizer

A checkpoint is written whole into `step_N.partial/`, its files flushed to disk, `sdar_state.json`
(the step, the config and every file's SHA-256) written last, then renamed to `step_N/`: a folder
without `sdar_state.json` is a save that never finished. Resume verifies the checksums and falls
back to the newest intact checkpoint; no file of one folder is ever reached through another
(no hard links). `Checkpoints` does this for one stage of a run; the trainer only says when.
"""

from __future__ import annotations

import hashlib
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
STATE = "sdar_state.json"  # what marks a finished checkpoint: the step, the run's config, the files' checksums
RUN_MARKER = ".sdar_run"  # what marks a folder a stage has claimed

#: What a stage writes into its run folder (an RL run folder also holds its warm start's `sft/`).
RUN_OUTPUTS = ("metrics.jsonl", "tensorboard", CHECKPOINTS, "final", "final.partial", "curves.png", "config.yaml",
               "validations", RUN_MARKER)


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file whose bytes are not the ones saved."""


def holds_run(run_dir: Path) -> bool:
    """Whether a stage has already written its metrics or checkpoints into `run_dir`."""
    return (run_dir / "metrics.jsonl").is_file() or (run_dir / CHECKPOINTS).is_dir()


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Make `run_dir` this stage's: continue it (resume), empty its outputs (overwrite), or refuse.

    `overwrite` removes only what a stage writes (`RUN_OUTPUTS`), and only in a folder a stage has
    claimed before (its `.sdar_run`, or its `config.yaml` naming this run): never a folder of
    other files.
    """
    if resume or not holds_run(run_dir):
        _mark(run_dir)
        return
    if not overwrite:
        run = run_dir.parent if run_dir.name == "sft" else run_dir  # a warm start is resumed with its run
        raise ConfigError(f"{run_dir} already holds a run: continue it with resume={run}, replace it with "
                          "overwrite=true, or choose another name=.")
    if not _is_run_folder(run_dir):
        raise ConfigError(f"overwrite=true: {run_dir} holds a metrics.jsonl or checkpoints/ but no {RUN_MARKER} or "
                          "config.yaml of a run: it is not a run folder sdar wrote, so nothing in it is removed. "
                          "Choose another name= or output_dir=.")
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    _mark(run_dir)
    logger.info("overwrite=true: replaced the earlier run's outputs in %s", run_dir)


def _mark(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_MARKER).write_text("written by sdar: this folder holds a run's outputs\n")


def _is_run_folder(run_dir: Path) -> bool:
    if (run_dir / RUN_MARKER).is_file():
        return True
    config = run_dir / "config.yaml"
    try:
        import yaml

        saved = yaml.safe_load(config.read_text()) if config.is_file() else None
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and saved.get("name") in (run_dir.name, run_dir.parent.name)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STATE)


class Checkpoints:
    """The checkpoints and `final/` of one stage's run folder, written through `acc` (every process calls)."""

    def __init__(self, acc: Any, run_dir: Path, keep: int) -> None:
        self.acc, self.run_dir, self.keep = acc, run_dir, keep
        acc.register_save_state_pre_hook(drop_tied_copies)

    def folder(self, step: int) -> Path:
        return self.run_dir / CHECKPOINTS / f"step_{step:06d}"

    def save(self, step: int, config: dict[str, Any]) -> Path:
        """Checkpoint step `step` (with the run's `config`) atomically, keeping the newest `keep` checkpoints."""
        path = self.folder(step)
        partial = path.with_name(path.name + ".partial")
        if self.acc.is_main_process:  # a save that never finished (a kill) is not kept
            for stale in (self.run_dir / CHECKPOINTS).glob("step_*.partial"):
                shutil.rmtree(stale, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(partial))
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            files = _files(partial)
            for f in files:  # on disk before the marker says the checkpoint is whole
                with open(f, "rb") as handle:
                    os.fsync(handle.fileno())
            checksums = {str(f.relative_to(partial)): sha256(f) for f in files}
            marker = partial / STATE
            marker.write_text(json.dumps({"step": step, "config": config, "sha256": checksums}))
            with open(marker, "rb") as handle:
                os.fsync(handle.fileno())
            if path.exists():  # the same step saved again (a resumed run): replace it whole
                shutil.rmtree(path)
            partial.rename(path)
            kept = sorted(p for p in (self.run_dir / CHECKPOINTS).glob("step_*") if not p.name.endswith(".partial"))
            for old in kept[: -self.keep]:
                shutil.rmtree(old)
        self.acc.wait_for_everyone()
        return path

    @staticmethod
    def candidates(source: str) -> list[Path]:
        """The checkpoints `resume=source` may continue from, newest first: one checkpoint, or a run's."""
        path = Path(source)
        if (path / CHECKPOINTS).is_dir():
            found = sorted((p for p in (path / CHECKPOINTS).glob("step_*") if p.is_dir()), reverse=True)
            if not found:
                raise FileNotFoundError(f"resume={source!r}: {path / CHECKPOINTS} holds no checkpoint.")
            return found
        if not (path / STATE).is_file():
            raise FileNotFoundError(f"resume={source!r}: not a checkpoint folder (no {STATE}).")
        return [path]

    @staticmethod
    def verify(path: Path) -> None:
        """Raise `CorruptCheckpoint` naming the first file of `path` that is missing or not as saved."""
        if not (path / STATE).is_file():
            raise CorruptCheckpoint(f"{path}: no {STATE}: its save never finished")
        try:
            saved = json.loads((path / STATE).read_text()).get("sha256")
        except ValueError:
            raise CorruptCheckpoint(f"{path / STATE}: not valid JSON") from None
        for name, digest in (saved or {}).items():  # older checkpoints recorded no checksums
            file = path / name
            if not file.is_file():
                raise CorruptCheckpoint(f"{file}: missing")
            if sha256(file) != digest:
                raise CorruptCheckpoint(f"{file}: its bytes are not the ones saved (SHA-256 differs)")

    def resume_from(self, source: str) -> Path:
        """Load the newest intact checkpoint of `source`; a corrupt or unfinished newer one is skipped with a note."""
        candidates = self.candidates(source)
        for path in candidates:
            try:
                self.verify(path)
            except CorruptCheckpoint as err:
                if len(candidates) == 1:
                    raise ConfigError(f"resume={source}: {err}.") from None
                logger.warning("resume: skipping %s (%s)", path.name, err)
                continue
            self.acc.load_state(str(path))
            return path
        raise ConfigError(f"resume={source}: no intact checkpoint in {Path(source) / CHECKPOINTS} (every one was "
                          "unfinished or corrupt; see the notes above).")

    def save_final(self, model: Any, tokenizer: Any) -> Path:
        """Write the HF model folder `final/`: into a fresh folder swapped in whole, never over old files.

        A swap (not a rewrite in place) keeps a half-written `final/` from ever being seen.
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


def run_folder_of(resume: str) -> Path:
    """The run folder a `resume=` path belongs to: the folder itself, or the run of a checkpoint inside it.

    `runs/X`, `runs/X/checkpoints/step_N`, `runs/X/sft` and `runs/X/sft/checkpoints/step_N` all
    belong to `runs/X` (a warm start is resumed with its run).
    """
    path = Path(resume)
    if path.parent.name == CHECKPOINTS:
        path = path.parent.parent
    if path.name == "sft" and ((path.parent / RUN_MARKER).exists() or (path.parent / "config.yaml").exists()):
        path = path.parent
    return path


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
