"""The training loop: rollouts, group-relative advantages, PPO-clip updates, checkpoints.

One step reads like the algorithm:
    1. sample `tasks_per_step` tasks; play `group_size` rollouts of each (split across processes);
    2. score every turn sample with its trajectory's return (minus the invalid-action penalty) and
       normalise within its group (`advantages.grpo_advantages`);
    3. for each mini-batch: forward the micro-batches, PPO-clip loss (+ KL to the reference),
       backward with gradient accumulation, clip the gradient norm, AdamW step;
    4. log metrics, validate every `val_every` steps, checkpoint every `save_every` steps.

Runs on one CPU, one GPU, or many processes through `accelerate launch` (rollouts split across
processes, gradients averaged by DDP).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sdar_agent.advantages import grpo_advantages
from sdar_agent.algorithms import ALGORITHMS
from sdar_agent.config import ConfigError, TrainConfig
from sdar_agent.distill import (
    GATES,
    divergence_loss,
    rlsd_advantages,
    rlsd_lambda_at,
    sdar_loss,
    skill_sd_loss,
    token_divergence_chunked,
)
from sdar_agent.logprobs import output_head, pack, response_logprobs
from sdar_agent.losses import kl_loss, ppo_clip_loss, token_mean
from sdar_agent.models import load_policy, load_reference, load_tokenizer
from sdar_agent.prompts import template_for
from sdar_agent.rollout import HFGenerator, RolloutBatch, Sample, Sampling, collect
from sdar_agent.skills import SkillContext, SkillUse
from sdar_agent.tracking import Tracker
from sdar_agent.workers import EnvPool

logger = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _LoopState:
    """What accelerate's checkpoint keeps besides model, optimizer and RNGs."""

    def __init__(self, seed: int) -> None:
        self.step = 0
        self.task_rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "task_rng": self.task_rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.task_rng.bit_generator.state = state["task_rng"]


class Trainer:
    """Owns the model, optimizer, env pools and skill bank of one run; `train()` runs it."""

    def __init__(self, cfg: TrainConfig) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        use_cpu = cfg.model.device == "cpu" or not torch.cuda.is_available()
        self.acc = Accelerator(cpu=use_cpu)
        world = self.acc.num_processes
        if cfg.rollout.tasks_per_step % world:
            raise ConfigError(f"rollout.tasks_per_step={cfg.rollout.tasks_per_step} must be a multiple of the "
                              f"{world} processes.")
        seed_everything(cfg.seed + self.acc.process_index)
        self.run_dir = cfg.run_dir
        self.tracker = Tracker(self.run_dir, self.acc.is_main_process, cfg.log.tensorboard)
        if self.acc.is_main_process:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            logger.info("resolved config:\n%s", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

        self.spec = ALGORITHMS[cfg.algo.name]
        self.template = template_for(cfg.env.id, cfg.rollout.template)
        self.tokenizer = load_tokenizer(cfg.model)
        model, _ = load_policy(cfg.model, self.acc.device, self.tokenizer)
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=cfg.algo.lr, weight_decay=cfg.algo.weight_decay)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.ref = None
        if cfg.algo.kl_coef > 0 and cfg.model.lora_rank == 0:
            self.ref = load_reference(cfg.model, self.acc.device, self.tokenizer)
        self.generator = HFGenerator(self.acc.unwrap_model(self.model), self.tokenizer,
                                     cfg.rollout.generation_batch_size)

        self.tasks_per_rank = cfg.rollout.tasks_per_step // world
        self.pool = self._pool(cfg.env.split, self.tasks_per_rank * cfg.rollout.group_size)
        self.task_ids = list(self.pool.call("task_ids"))
        self._val_pool: EnvPool | None = None
        self.state = _LoopState(cfg.seed)
        self.acc.register_for_checkpointing(self.state)
        self.skills: SkillContext | None = None
        if self.spec.needs_skills:
            self.skills = SkillContext(cfg.skills, self.pool.call("skill_bank"), self.tokenizer, cfg.seed)
            self.acc.register_for_checkpointing(self.skills)
        self._stop = False
        if cfg.resume:
            self.resume(cfg.resume)

    # ------------------------------------------------------------------ setup helpers
    def _pool(self, split: str, n: int) -> EnvPool:
        env = self.cfg.env
        return EnvPool(env.id, {**env.kwargs, "split": split}, n, env.max_turns,
                       use_workers=env.num_workers != 0, timeout_s=env.step_timeout_s)

    def _skill_use(self) -> SkillUse | None:
        """How this algorithm's rollouts use skills (None when it uses none)."""
        if self.skills is None:
            return None
        return SkillUse(self.skills, in_student=self.spec.skills_in_student, for_teacher=self.spec.teacher,
                        placement=self.cfg.skills.placement)

    def _sampling(self, temperature: float | None = None) -> Sampling:
        r = self.cfg.rollout
        t = r.temperature if temperature is None else temperature
        return Sampling(r.max_response_tokens, temperature=max(t, 1e-5), top_p=r.top_p, top_k=r.top_k, greedy=t == 0)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        previous = signal.signal(signal.SIGINT, self._request_stop)
        progress = None
        if acc.is_main_process and cfg.log.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=cfg.steps, initial=self.state.step, desc=cfg.name, unit="step")
        last: dict[str, float] = {}
        try:
            while self.state.step < cfg.steps and not self._stop:
                last = self.train_step()
                if progress is not None:
                    progress.update(1)
                    shown = {"success": f"{last.get('episode/success_rate', 0):.2f}",
                             "pg_loss": f"{last.get('actor/pg_loss', 0):.3f}"}
                    if "sdar/loss" in last:
                        shown.update(sdar_loss=f"{last['sdar/loss']:.3f}", gate=f"{last['sdar/gate_mean']:.2f}")
                    progress.set_postfix(shown)
                step = self.state.step
                if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                    self.save_checkpoint()
            if self._stop:
                logger.warning("stopping at step %d on request; checkpointing", self.state.step)
            self.save_checkpoint()
            if not self._stop:
                self.save_final()
        finally:
            signal.signal(signal.SIGINT, previous)
            if progress is not None:
                progress.close()
            self.tracker.plot()
        return last

    def _request_stop(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop = True
        logger.warning("Ctrl-C: finishing this step, then checkpointing (press again to abort)")

    def train_step(self) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        rank = acc.process_index
        chosen = self.state.task_rng.choice(len(self.task_ids), size=cfg.rollout.tasks_per_step,
                                            replace=len(self.task_ids) < cfg.rollout.tasks_per_step)
        mine = chosen[rank * self.tasks_per_rank : (rank + 1) * self.tasks_per_rank]
        start = time.perf_counter()
        batch = collect(
            self.generator, self.tokenizer, self.pool, self.template, [self.task_ids[i] for i in mine],
            cfg.rollout.group_size, self._sampling(),
            max_turns=cfg.env.max_turns, history_length=cfg.rollout.history_length,
            max_prompt_tokens=cfg.rollout.max_prompt_tokens, win_reward=cfg.rollout.win_reward,
            invalid_penalty=cfg.rollout.invalid_action_penalty, reward=cfg.rollout.reward,
            traj_offset=rank * self.pool.n, group_offset=rank * self.tasks_per_rank,
            skills=self._skill_use(),
        )
        rollout_s = time.perf_counter() - start
        if self.skills is not None:  # every process applies every episode's feedback: one shared UCB state
            from accelerate.utils import gather_object

            self.skills.feedback(gather_object([(list(e.skill_ids), e.ret, e.skill_type) for e in batch.episodes]))
        start = time.perf_counter()
        update = self.update(batch.samples)
        update_s = time.perf_counter() - start
        self.state.step += 1
        metrics = {**self._episode_metrics(batch), **update}
        metrics.update({"perf/rollout_s": rollout_s, "perf/update_s": update_s,
                        "perf/generation_s": batch.generation_s, "perf/env_s": batch.env_s,
                        "perf/generation_tokens_per_s": batch.generated_tokens / max(batch.generation_s, 1e-9),
                        "perf/train_tokens_per_s": update.get("_train_tokens", 0.0) / max(update_s, 1e-9)})
        metrics.pop("_train_tokens", None)
        metrics = self._average_across_processes(metrics)
        step = self.state.step
        if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
            metrics.update(self.validate())
        self.tracker.log(step, metrics)
        return metrics

    # ------------------------------------------------------------------ the update
    def update(self, samples: list[Sample]) -> dict[str, float]:
        cfg = self.cfg
        samples = [s for s in samples if s.response_ids]
        if samples:
            adv = grpo_advantages(
                torch.tensor([s.score for s in samples]), torch.tensor([s.group for s in samples]),
                torch.tensor([s.traj for s in samples]), mode=cfg.algo.advantage_norm, norm_by_std=cfg.algo.norm_by_std,
            )
        else:
            adv = torch.zeros(0)
        single_update = cfg.algo.mini_batches == 1 and cfg.algo.epochs == 1
        # Before any update: old log-probs (when the policy will move between mini-batches) and the
        # teacher's view (the pre-update policy with skills in its prompt), each one batched pass.
        old_logp = None if single_update else self._forward_no_grad(samples)[0]
        start = time.perf_counter()
        teacher = self._forward_no_grad(samples, teacher=True) if self.spec.teacher else None
        teacher_s = time.perf_counter() - start
        sums: dict[str, float] = defaultdict(float)
        order = torch.arange(len(samples))
        minis = [order[k :: cfg.algo.mini_batches].tolist() for k in range(cfg.algo.mini_batches)]
        train_tokens = 0
        for _ in range(cfg.algo.epochs):
            for mini in minis:
                stats, tokens = self._update_minibatch(samples, mini, adv, old_logp, teacher)
                train_tokens += tokens
                for key, value in stats.items():
                    sums[key] += value / (cfg.algo.epochs * len(minis))
        return {**sums, "actor/lr": cfg.algo.lr, "rollout/samples": float(len(samples)),
                "perf/teacher_s": teacher_s, "_train_tokens": train_tokens}

    def _update_minibatch(self, samples, mini, adv, old_logp, teacher) -> tuple[dict[str, float], int]:
        cfg, acc = self.cfg, self.acc
        micro = cfg.algo.micro_batch_size
        chunks = [mini[k : k + micro] for k in range(0, len(mini), micro)]
        # Every process must run as many backward passes as the busiest one (DDP syncs on each).
        n_chunks = int(acc.gather(torch.tensor([len(chunks)], device=acc.device)).max())
        n_tokens = sum(len(samples[i].response_ids) for i in mini)
        stats: dict[str, float] = defaultdict(float)
        tokens_seen = 0
        for k in range(n_chunks):
            idx = chunks[k] if k < len(chunks) else (chunks[0] if chunks else [])
            weight = 1.0 if k < len(chunks) else 0.0  # padding passes contribute no gradient
            ctx = acc.no_sync(self.model) if k < n_chunks - 1 else contextlib.nullcontext()
            with ctx:
                if not idx:  # this process has no samples at all: a zero-gradient pass
                    acc.backward(sum(p.sum() for p in self.params) * 0.0)
                    continue
                loss, parts, share, tokens = self._micro_loss(samples, idx, adv, old_logp, teacher, n_tokens)
                acc.backward(loss * weight)
            if weight:
                tokens_seen += tokens
                for key, value in parts.items():  # token-weighted over the mini-batch
                    stats[key] += value if key.endswith("loss") or key == "actor/kl" else value * share
        grad_norm = acc.clip_grad_norm_(self.params, cfg.algo.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats["actor/grad_norm"] = float(grad_norm)
        return dict(stats), tokens_seen

    def _micro_loss(self, samples, idx, adv, old_logp, teacher, n_tokens):
        """The algorithm's loss on one micro-batch, its logged parts, its token share, its tokens."""
        cfg, acc, spec = self.cfg, self.acc, self.spec
        batch = pack([samples[i].prompt_ids for i in idx], [samples[i].response_ids for i in idx],
                     self.tokenizer.pad_token_id)
        mask = batch["response_mask"].to(acc.device)
        full_vocab = spec.distill == "gated" and cfg.algo.divergence != "reverse_kl"
        outputs = response_logprobs(self.model, batch, with_entropy=True, with_hidden=full_vocab)
        logp, entropy = outputs[0], outputs[1]
        old = logp.detach() if old_logp is None else _stack(old_logp, idx, mask).to(acc.device)
        t_logp = _stack(teacher[0], idx, mask).to(acc.device) if teacher is not None else None
        parts: dict[str, float] = {}
        loss = torch.zeros((), device=acc.device)
        if spec.rl:
            token_adv = adv[idx].to(acc.device)
            if spec.rlsd:
                lam = rlsd_lambda_at(self.state.step, cfg.algo.rlsd_lambda, cfg.algo.rlsd_decay_steps)
                token_adv = rlsd_advantages(token_adv, logp.detach(), t_logp, lam=lam, clip=cfg.algo.rlsd_clip)
                parts["rlsd/lambda"] = lam
            pg_loss, pg_stats = ppo_clip_loss(logp, old, token_adv, mask, clip_eps=cfg.algo.clip_eps,
                                              clip_eps_high=cfg.algo.clip_eps_high, n_tokens=n_tokens)
            loss = loss + pg_loss
            parts["actor/pg_loss"] = float(pg_loss.detach())
            parts["actor/clipfrac"] = float(pg_stats["clipfrac"])
        if spec.distill == "gated":
            d_loss, d_parts = self._gated_distillation(logp, t_logp, entropy, mask, n_tokens, outputs, teacher, idx)
            loss = loss + (cfg.algo.sdar_lambda if spec.rl else 1.0) * d_loss
            parts.update(d_parts)
        elif spec.distill == "skill_sd":
            sd_loss = skill_sd_loss(logp, t_logp, old, mask, clip=cfg.algo.skill_sd_clip, n_tokens=n_tokens)
            loss = loss + cfg.algo.skill_sd_lambda * sd_loss
            parts["skill_sd/loss"] = float(sd_loss.detach())
        if cfg.algo.kl_coef > 0:
            kl = kl_loss(logp, self._reference_logp(batch), mask, n_tokens)
            loss = loss + cfg.algo.kl_coef * kl
            parts["actor/kl"] = float(kl.detach())
        parts["actor/entropy"] = float(token_mean(entropy, mask))
        share = float(mask.sum()) / max(n_tokens, 1)
        return loss, parts, share, int(batch["attention_mask"].sum())

    def _gated_distillation(self, logp, t_logp, entropy, mask, n_tokens, outputs, teacher, idx):
        """SDAR's term (and OPSD / GRPO+OPSD / the gate and divergence ablations) with its metrics."""
        cfg, spec = self.cfg, self.spec
        delta = (t_logp - logp).detach()
        beta = spec.fixed_beta if spec.fixed_beta is not None else cfg.algo.sdar_beta
        gate = torch.ones_like(delta) if spec.ungated else GATES[cfg.algo.gate](delta, entropy, beta)
        if cfg.algo.divergence == "reverse_kl":
            d_loss = sdar_loss(logp, t_logp, gate, mask, n_tokens)
        else:
            t_hidden = _stack_hidden(teacher[1], idx, mask).to(logp.device)
            divergence = token_divergence_chunked(outputs[2], t_hidden, output_head(self.model),
                                                  cfg.algo.divergence, cfg.algo.divergence_chunk)
            d_loss = divergence_loss(divergence, gate, mask, n_tokens)
        return d_loss, {
            "sdar/loss": float(d_loss.detach()),
            "sdar/gate_mean": float(token_mean(gate, mask)),
            "sdar/gate_active_ratio": float(token_mean((gate > 0.5).float(), mask)),
            "sdar/teacher_gap_mean": float(token_mean(delta, mask)),
        }

    @torch.no_grad()
    def _reference_logp(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.ref is not None:
            return response_logprobs(self.ref, batch)
        model = self.acc.unwrap_model(self.model)
        with model.disable_adapter():  # LoRA: the base weights are the reference
            return response_logprobs(model, batch)

    @torch.no_grad()
    def _forward_no_grad(self, samples: list[Sample], teacher: bool = False):
        """Per-sample response log-probs (and hidden states for the full-vocabulary ablations), no gradient.

        With `teacher`, on the teacher's prompts (skills included); always with pre-update weights.
        """
        want_hidden = teacher and self.spec.distill == "gated" and self.cfg.algo.divergence != "reverse_kl"
        logps, hiddens = [], []
        micro = self.cfg.algo.micro_batch_size
        for k in range(0, len(samples), micro):
            chunk = samples[k : k + micro]
            prompts = [(s.teacher_prompt_ids or s.prompt_ids) if teacher else s.prompt_ids for s in chunk]
            batch = pack(prompts, [s.response_ids for s in chunk], self.tokenizer.pad_token_id)
            out = response_logprobs(self.model, batch, with_hidden=want_hidden)
            logp, hidden = (out[0], out[1]) if want_hidden else (out, None)
            for row, s in enumerate(chunk):
                n = len(s.response_ids)
                logps.append(logp[row, logp.shape[1] - n :].cpu())
                if hidden is not None:
                    hiddens.append(hidden[row, hidden.shape[1] - n :].cpu())
        return logps, hiddens

    # ------------------------------------------------------------------ metrics
    def _episode_metrics(self, batch: RolloutBatch) -> dict[str, float]:
        from accelerate.utils import gather_object

        episodes = gather_object([(e.task_type, e.won, e.ret, e.length, e.valid_turns, e.admissible_turns, e.score)
                                  for e in batch.episodes])
        dropped = sum(gather_object([batch.dropped]))
        metrics: dict[str, float] = {"episode/dropped": float(dropped)}
        if episodes:
            turns = sum(e[3] for e in episodes)
            metrics.update({
                "episode/success_rate": float(np.mean([e[1] for e in episodes])),
                "episode/return": float(np.mean([e[2] for e in episodes])),
                "episode/score": float(np.mean([e[6] for e in episodes])),
                "episode/length": float(np.mean([e[3] for e in episodes])),
                "episode/valid_action_ratio": sum(e[4] for e in episodes) / max(turns, 1),
                "episode/admissible_action_ratio": sum(e[5] for e in episodes) / max(turns, 1),
            })
            by_type = defaultdict(list)
            for e in episodes:
                by_type[e[0]].append(e[1])
            metrics.update({f"episode/success_rate/{t}": float(np.mean(v)) for t, v in sorted(by_type.items())})
        samples = batch.samples
        if samples:
            metrics["rollout/response_tokens"] = float(np.mean([len(s.response_ids) for s in samples]))
            metrics["rollout/prompt_tokens"] = float(np.mean([len(s.prompt_ids) for s in samples]))
        return metrics

    def _average_across_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Per-process update, loss and perf figures averaged over processes (episode figures are global)."""
        if self.acc.num_processes == 1:
            return metrics
        per_process = ("actor/", "perf/", "rollout/", "sdar/", "skill_sd/", "rlsd/")
        keys = sorted(k for k in metrics if k.startswith(per_process))
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        mean = self.acc.reduce(values, reduction="mean")
        return {**metrics, **{k: float(v) for k, v in zip(keys, mean.tolist(), strict=True)}}

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        from sdar_agent.evaluate import evaluate_policy

        cfg, acc = self.cfg, self.acc
        if self._val_pool is None:
            per_rank = math.ceil(cfg.val_tasks / acc.num_processes)
            self._val_pool = self._pool(cfg.env.val_split, per_rank)
        def run(skills: SkillUse | None) -> dict[str, Any]:
            return evaluate_policy(self.generator, self.tokenizer, self._val_pool, self.template, cfg,
                                   self._sampling(cfg.val_temperature), rank=acc.process_index,
                                   world=acc.num_processes, skills=skills)

        student_skills = self.spec.skills_in_student
        result = run(SkillUse(self.skills, True, False, cfg.skills.placement) if student_skills else None)
        metrics = {f"val/{k}": v for k, v in result["success_rate"].items()} | {"val/success_rate": result["overall"],
                                                                                 "val/score": result["mean_score"]}
        if student_skills:  # Skill-GRPO is evaluated with and without its skills
            metrics["val/success_rate_no_skills"] = run(None)["overall"]
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dir(self, step: int) -> Path:
        return self.run_dir / CHECKPOINTS / f"step_{step:06d}"

    def save_checkpoint(self) -> Path:
        path = self.checkpoint_dir(self.state.step)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(path))
        if self.acc.is_main_process:
            (path / "sdar_state.json").write_text(json.dumps({"step": self.state.step, "config": self.cfg.to_dict()}))
        self.acc.wait_for_everyone()
        return path

    def resume(self, source: str) -> None:
        path = Path(source)
        if (path / CHECKPOINTS).is_dir():  # a run folder: its latest checkpoint
            candidates = sorted((path / CHECKPOINTS).glob("step_*"))
            if not candidates:
                raise FileNotFoundError(f"resume={source!r}: {path / CHECKPOINTS} holds no checkpoint.")
            path = candidates[-1]
        if not (path / "sdar_state.json").is_file():
            raise FileNotFoundError(f"resume={source!r}: not a checkpoint folder (no sdar_state.json).")
        self.acc.load_state(str(path))
        self.tracker.truncate_after(self.state.step)
        logger.info("resumed from %s at step %d", path, self.state.step)

    def save_final(self) -> Path:
        path = self.run_dir / "final"
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            self.acc.unwrap_model(self.model).save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        self.acc.wait_for_everyone()
        return path

    def close(self) -> None:
        self.pool.close()
        if self._val_pool is not None:
            self._val_pool.close()
        self.tracker.close()


def _stack(rows: list[torch.Tensor], idx: list[int], mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(mask, device="cpu")  # (B, T): right-aligned like the response mask
    for r, i in enumerate(idx):
        out[r, out.shape[1] - len(rows[i]) :] = rows[i]
    return out


def _stack_hidden(rows: list[torch.Tensor], idx: list[int], mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros((*mask.shape, rows[idx[0]].shape[-1]), dtype=rows[idx[0]].dtype)  # (B, T, H)
    for r, i in enumerate(idx):
        out[r, out.shape[1] - len(rows[i]) :] = rows[i]
    return out
