"""Metrics: one JSON line per step, TensorBoard scalars, and a PNG of the curves at the end.

Every key is `namespace/quantity`; the full list is in `METRICS` (and the README).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRICS = {
    "episode/success_rate": "share of training episodes won",
    "episode/success_rate/<task_type>": "the same per task type",
    "episode/return": "mean episode return (env reward x rollout.win_reward)",
    "episode/score": "mean final task score (info['score']: WebShop's purchase reward, Search-QA's F1)",
    "episode/length": "mean turns per episode",
    "episode/valid_action_ratio": "share of turns whose response followed the <think>/<action> format",
    "episode/admissible_action_ratio": "share of turns the env accepted (info['action_valid'])",
    "episode/dropped": "trajectories dropped because their env failed",
    "actor/pg_loss": "PPO-clip policy loss (token mean)",
    "actor/kl": "low-variance KL to the reference (when algo.kl_coef > 0)",
    "actor/clipfrac": "share of tokens where the clip was active",
    "actor/entropy": "mean per-token entropy of the policy on its responses",
    "actor/grad_norm": "gradient norm before clipping",
    "actor/lr": "learning rate",
    "rollout/response_tokens": "mean tokens per response",
    "rollout/prompt_tokens": "mean tokens per prompt",
    "rollout/samples": "turn samples trained on",
    "perf/rollout_s": "seconds spent in rollouts (generation + env)",
    "perf/generation_s": "seconds in generation",
    "perf/env_s": "seconds waiting for envs",
    "perf/update_s": "seconds in the policy update",
    "perf/generation_tokens_per_s": "generated tokens per second",
    "perf/train_tokens_per_s": "prompt+response tokens per second through forward+backward",
    "perf/train_tflops": "model TFLOP/s of the update (2 x parameters + 4 x trained parameters per token)",
    "perf/train_peak_share": "perf/train_tflops over the device's peak (GPU: dense bf16 by name; CPU: fp32 matmul)",
    "perf/teacher_s": "seconds in the teacher pass (SDAR family)",
    "perf/val_s": "seconds the validation took (every split in env.val_splits)",
    "sdar/loss": "the distillation term token_mean(g * (log pi_T - log pi_theta)) (sdar, opsd, grpo_opsd)",
    "sdar/gate_mean": "mean gate g over response tokens",
    "sdar/gate_active_ratio": "share of tokens with g > 0.5",
    "sdar/teacher_gap_mean": "mean delta = log pi_T(y_t) - log pi_theta(y_t)",
    "skill_sd/loss": "Skill-SD's k3 x clipped-ratio term",
    "rlsd/lambda": "RLSD's current mixing weight",
    "val/success_rate": "share of validation episodes won (held-out split)",
    "val/success_rate/<task_type>": "the same per task type",
    "val/success_rate_no_skills": "Skill-GRPO only: validation without skills in the prompt",
    "val/score": "mean final task score of validation episodes",
    "val/length": "mean turns per validation episode",
    "val/valid_action_ratio": "share of validation turns whose response followed the answer format",
    "val/admissible_action_ratio": "share of validation turns the env accepted",
}


def episode_summary(episodes: Sequence[Any]) -> dict[str, float]:
    """Success (overall and per task type), score, length and action validity of finished episodes.

    `episodes` are `rollout.Episode`s; training logs this under `episode/`, validation under `val/`,
    and `python -m sdar_agent.evaluate` prints it.
    """
    if not episodes:
        return {}
    turns = max(sum(e.length for e in episodes), 1)
    summary = {
        "success_rate": float(np.mean([e.won for e in episodes])),
        "score": float(np.mean([e.score for e in episodes])),
        "length": float(np.mean([e.length for e in episodes])),
        "valid_action_ratio": sum(e.valid_turns for e in episodes) / turns,
        "admissible_action_ratio": sum(e.admissible_turns for e in episodes) / turns,
    }
    by_type: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        by_type[e.task_type].append(e.won)
    summary.update({f"success_rate/{t}": float(np.mean(v)) for t, v in sorted(by_type.items())})
    return summary
PLOTTED = ["episode/success_rate", "episode/return", "episode/valid_action_ratio", "actor/pg_loss",
           "actor/kl", "actor/entropy", "val/success_rate", "sdar/gate_mean", "sdar/gate_active_ratio",
           "sdar/teacher_gap_mean", "sdar/loss"]


class Tracker:
    """Writes metrics from the main process; other processes hold a disabled tracker."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.path = self.run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
                except ImportError:  # tensorboard is optional
                    self.writer = None

    def truncate_after(self, step: int) -> None:
        """Forget metrics past `step` (a resumed run writes them again)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(f"{line}\n" for line in kept))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.writer is not None:
            for key, value in clean.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def history(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def validations(self) -> list[tuple[int, float, int]]:
        """(step, val/success_rate, val/episodes) of every validation logged so far (0 episodes: not logged)."""
        return [(r["step"], r["val/success_rate"], int(r.get("val/episodes", 0))) for r in self.history()
                if "val/success_rate" in r]

    def plot(self) -> Path | None:
        """Training curves to `curves.png` (needs matplotlib)."""
        if not self.enabled:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        rows = self.history()
        keys = [k for k in PLOTTED if any(k in r for r in rows)]
        keys += sorted({k for r in rows for k in r if k.startswith("sdar/") and k not in keys})
        if not keys:
            return None
        cols, rows_n = 3, math.ceil(len(keys) / 3)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3 * rows_n), squeeze=False)
        for ax, key in zip(axes.flat, keys, strict=False):
            points = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
            ax.set_title(key, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys) :]:
            ax.axis("off")
        fig.tight_layout()
        out = self.run_dir / "curves.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
