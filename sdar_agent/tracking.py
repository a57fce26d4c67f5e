"""Metrics: one JSON line per step, TensorBoard scalars, and a PNG of the curves at the end.

Every key is `namespace/quantity`; the full list is `METRICS` (rendered into docs/metrics.md).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Metric:
    """One logged quantity: what it means, its unit, and when a run writes it."""

    meaning: str
    unit: str
    when: str


EVERY_RL_STEP = "every RL step"
EVERY_UPDATE = "every step (RL and SFT)"
VALIDATION = "each validation (RL: every `val_every` steps and the last; SFT: before and after)"

#: Every key a run writes to `metrics.jsonl` (`<task_type>` and `<split>` stand for names), rendered
#: into docs/metrics.md by `metrics_markdown()`. A value that is not finite is written as null.
METRICS: dict[str, Metric] = {
    "episode/success_rate": Metric("share of the step's training episodes won", "fraction", EVERY_RL_STEP),
    "episode/success_rate/<task_type>": Metric("the same, per task type", "fraction", EVERY_RL_STEP),
    "episode/return": Metric("mean episode return (env reward, or `rollout.win_reward` on a win)", "reward",
                             EVERY_RL_STEP),
    "episode/score": Metric("mean final task score (`info['score']`: WebShop's purchase reward, Search-QA's F1)",
                            "score in [0, 1]", EVERY_RL_STEP),
    "episode/length": Metric("mean turns per episode", "turns", EVERY_RL_STEP),
    "episode/valid_action_ratio": Metric("share of turns whose answer followed the env's answer format",
                                         "fraction", EVERY_RL_STEP),
    "episode/admissible_action_ratio": Metric("share of turns the env accepted (`info['action_valid']`)",
                                              "fraction", EVERY_RL_STEP),
    "episode/dropped": Metric("trajectories dropped because their env failed (restarted)", "count", EVERY_RL_STEP),
    "actor/pg_loss": Metric("PPO-clip policy loss, token mean over the update", "loss", "RL steps with a PG term"),
    "actor/kl": Metric("low-variance (k3) KL to the reference policy", "nats per token", "when `algo.kl_coef` > 0"),
    "actor/ppo_kl": Metric("approximate KL to the sampling policy, token mean of log pi_old - log pi_theta (k1)",
                           "nats per token", "RL steps with a PG term"),
    "actor/clipfrac": Metric("share of response tokens where PPO's clip was active", "fraction",
                             "RL steps with a PG term"),
    "actor/dual_clipfrac": Metric("share of response tokens the dual clip capped (A < 0, `algo.clip_ratio_c`)",
                                  "fraction", "RL steps with a PG term"),
    "actor/entropy": Metric("mean per-token entropy of the policy on its responses, at the rollout temperature",
                            "nats per token", EVERY_UPDATE),
    "actor/grad_norm": Metric("gradient norm before clipping, mean over the step's optimizer steps", "L2 norm",
                              EVERY_UPDATE),
    "actor/lr": Metric("learning rate", "per step", EVERY_UPDATE),
    "actor/optimizer_steps": Metric("AdamW steps in the update (mini-batches x epochs)", "count", EVERY_UPDATE),
    "actor/nonfinite_steps": Metric("optimizer steps skipped because the loss or gradient norm was not finite",
                                    "count", EVERY_UPDATE),
    "rollout/response_tokens": Metric("mean tokens per response", "tokens", EVERY_RL_STEP),
    "rollout/prompt_tokens": Metric("mean tokens per prompt", "tokens", EVERY_RL_STEP),
    "rollout/samples": Metric("turn samples trained on", "count", EVERY_UPDATE),
    "perf/rollout_s": Metric("wall time of the rollouts (generation + env)", "s", EVERY_RL_STEP),
    "perf/generation_s": Metric("wall time in generation", "s", EVERY_RL_STEP),
    "perf/env_s": Metric("wall time waiting for envs", "s", EVERY_RL_STEP),
    "perf/update_s": Metric("wall time of the update (teacher and reference passes included)", "s", EVERY_UPDATE),
    "perf/generation_tokens_per_s": Metric("generated tokens per second of generation", "tokens/s", EVERY_RL_STEP),
    "perf/train_tokens_per_s": Metric("prompt + response tokens per second through the update", "tokens/s",
                                      EVERY_UPDATE),
    "perf/train_tflops": Metric("model FLOP/s of the update (2 x parameters + 4 x trained parameters per token)",
                                "TFLOP/s", EVERY_UPDATE),
    "perf/train_peak_share": Metric("`perf/train_tflops` over the device's peak (GPU: dense bf16 by name; CPU: "
                                    "measured matmul)", "fraction", "every step, where the peak is known"),
    "perf/teacher_s": Metric("wall time of the teacher pass (0 without a teacher)", "s", EVERY_UPDATE),
    "perf/val_s": Metric("wall time of the validation (every split in `env.val_splits`)", "s", VALIDATION),
    "sdar/loss": Metric("the distillation term token_mean(g * (log pi_T - log pi_theta))", "loss",
                        "sdar, opsd, grpo_opsd"),
    "sdar/gate_mean": Metric("mean gate g over response tokens", "in [0, 1]", "sdar, opsd, grpo_opsd"),
    "sdar/gate_active_ratio": Metric("share of response tokens with g > 0.5", "fraction", "sdar, opsd, grpo_opsd"),
    "sdar/teacher_gap_mean": Metric("mean delta = log pi_T(y_t) - log pi_theta(y_t)", "nats per token",
                                    "sdar, opsd, grpo_opsd"),
    "skill_sd/loss": Metric("Skill-SD's k3 x clipped-ratio term", "loss", "skill_sd"),
    "rlsd/lambda": Metric("RLSD's current mixing weight", "in [0, 1]", "rlsd"),
    "sft/loss": Metric("negative log-likelihood of the demonstrations' response tokens (token mean)",
                       "nats per token", "every SFT step"),
    "sft/episodes": Metric("expert episodes played for the demonstrations", "count", "the first SFT step"),
    "sft/expert_success_rate": Metric("share of those episodes the expert won (only won ones are kept)", "fraction",
                                      "the first SFT step"),
    "sft/skipped_episodes": Metric("expert episodes skipped: the expert had no grounded demonstration of their "
                                   "task (Search-QA: no passage within its searches holds a gold answer)", "count",
                                   "the first SFT step"),
    "sft/samples": Metric("demonstration turns kept", "count", "the first SFT step"),
    "val/success_rate": Metric("share of validation episodes won (the first of `env.val_splits`; its fixed panel "
                               "of `val_tasks` tasks x `eval.samples`, report in `validations/`)", "fraction",
                               VALIDATION),
    "val/success_low": Metric("lower end of the 95 % Wilson interval of `val/success_rate`", "fraction",
                              VALIDATION),
    "val/success_high": Metric("upper end of that interval", "fraction", VALIDATION),
    "val/success_rate/<task_type>": Metric("the same, per task type", "fraction", VALIDATION),
    "val/success_rate_no_skills": Metric("validation success without skills in the prompt", "fraction",
                                         "skill_grpo validations"),
    "val/score": Metric("mean final task score of validation episodes", "score in [0, 1]", VALIDATION),
    "val/length": Metric("mean turns per validation episode", "turns", VALIDATION),
    "val/valid_action_ratio": Metric("share of validation turns whose answer followed the answer format", "fraction",
                                     VALIDATION),
    "val/admissible_action_ratio": Metric("share of validation turns the env accepted", "fraction", VALIDATION),
    "val/episodes": Metric("validation episodes played", "count", VALIDATION),
    "val/<split>/<key>": Metric("each `val/<key>` above for one split, when `env.val_splits` names several",
                                "as `val/<key>`", VALIDATION),
}


def metric_for(key: str) -> Metric | None:
    """The `METRICS` entry that describes `key` (placeholders match one path component; `<key>` the rest)."""
    if key in METRICS:
        return METRICS[key]
    for pattern, metric in METRICS.items():
        regex = re.escape(pattern).replace(re.escape("<key>"), ".+")
        regex = re.sub(re.escape(re.escape("<")) + r"\w+" + re.escape(re.escape(">")), "[^/]+", regex)
        if re.fullmatch(regex, key):
            return metric
    return None


def metrics_markdown() -> str:
    """docs/metrics.md: every logged key with its meaning, unit and when it is written."""
    lines = ["# Logged metrics", "",
             "Every key a run writes to `runs/<name>/metrics.jsonl` (one JSON line per step, with `step`) and to",
             "TensorBoard. Figures are averaged over the step's update and across processes; episode figures",
             "cover every process's episodes. A value that is not finite (a diverged loss) is written as `null`",
             "(NaN in TensorBoard) with a warning, never left out. Generated from `sdar_agent.tracking.METRICS`",
             "(`python -m sdar_agent.tracking > docs/metrics.md`).", "",
             "| key | meaning | unit | written |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {m.meaning} | {m.unit} | {m.when} |" for key, m in METRICS.items()]
    return "\n".join(lines) + "\n"


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
        self._warned: set[str] = set()
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

    def log(self, step: int, metrics: dict[str, float | None]) -> None:
        """One row of `metrics.jsonl` and TensorBoard scalars for `step`.

        A value that is not finite (NaN, inf, None) is written, never left out: as null in the JSON
        line (JSON has no NaN) and as NaN in TensorBoard, with one warning per key.
        """
        if not self.enabled:
            return
        values = {k: None if v is None else float(v) for k, v in metrics.items()}
        bad = sorted(k for k, v in values.items() if v is None or not math.isfinite(v))
        for key in bad:
            if key not in self._warned:
                logger.warning("step %d: %s is %s (written as null in %s)", step, key, values[key], self.path.name)
                self._warned.add(key)
        row = {k: (None if k in bad else v) for k, v in values.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, math.nan if value is None else value, step)
            self.writer.flush()

    def history(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def validations(self) -> list[tuple[int, float, int]]:
        """(step, val/success_rate, val/episodes) of every validation logged so far (0 episodes: not logged)."""
        return [(r["step"], r["val/success_rate"], int(r.get("val/episodes") or 0)) for r in self.history()
                if r.get("val/success_rate") is not None]

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
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
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


if __name__ == "__main__":
    print(metrics_markdown(), end="")
