"""The training loop: rollouts, scores, group-relative advantages, the objective's terms, updates.

A `Trainer` runs one stage of a run: `rl` (the algorithm of `algo.name`, in `runs/<name>/`) or
`sft` (the warm start on expert demonstrations, `sdar_agent.sft`, in `runs/<name>/sft/`). Both
share everything below except where a step's samples come from.

One step reads like the algorithm:
    1. sample `tasks_per_step` tasks; play `group_size` rollouts of each (split across processes)
       (`rollout.collect`);
    2. score every turn with its trajectory's return minus its invalid-action penalty and normalise
       within its group (`advantages.turn_scores`, `advantages.grpo_advantages`);
    3. compute what the algorithm's terms need before any update (teacher log-probs with the
       skills in the prompt; old log-probs when the policy moves between mini-batches);
    4. for each mini-batch: forward the micro-batches, sum the terms (`objective.total_loss`),
       backward with gradient accumulation, clip the gradient norm, AdamW step;
    5. log metrics, validate every `val_every` steps, checkpoint every `save_every` steps.

Runs on one CPU, one GPU, or many processes through `accelerate launch` (rollouts split across
processes, gradients averaged by DDP, or weights, gradients and optimizer state sharded by FSDP2:
`sdar_agent.sharding`).
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import math
import os
import random
import shutil
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml

from sdar_agent.advantages import grpo_advantages, trajectory_returns, turn_rewards, turn_scores
from sdar_agent.config import ConfigError, TrainConfig
from sdar_agent.evaluate import evaluate_policy
from sdar_agent.generation import Sampling, make_generator
from sdar_agent.hardware import peak_flops
from sdar_agent.logprobs import (
    extend_cache,
    output_head,
    pack,
    plan_micro_batches,
    prefix_cache,
    response_logprobs,
    usable_prefix_length,
)
from sdar_agent.models import (
    autocast,
    compute_dtype,
    frozen_copy,
    linears_cast_once,
    load_policy,
    load_tokenizer,
    pick_device,
)
from sdar_agent.objective import ALGORITHMS, MicroBatch, objective_terms, total_loss
from sdar_agent.preflight import env_class
from sdar_agent.prompts import template_for
from sdar_agent.rollout import RolloutBatch, Sample, SkillUse, collect
from sdar_agent.sharding import (
    broadcast_weights,
    check_supported,
    full_state_dict,
    full_weights,
    idle_loss,
    is_sharded,
    local_share,
    make_accelerator,
)
from sdar_agent.tracking import Tracker, episode_summary
from sdar_agent.workers import EnvPool
from skillbank import SkillSelector

logger = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
WEIGHTS = "model.safetensors"  # the weights file of a checkpoint and of an HF model folder (same format)


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
    """Owns the model, optimizer, env pools and skill selector of one run; `train()` runs it."""

    def __init__(self, cfg: TrainConfig, stage: Literal["rl", "sft"] = "rl") -> None:
        self.cfg, self.stage = cfg, stage
        device = pick_device(cfg.model)
        self.acc = make_accelerator(cpu=device.type == "cpu")
        check_supported(self.acc, cfg.model.lora_rank, cfg.rollout.backend, ALGORITHMS[cfg.algo.name].needs(cfg.algo))
        self.compute_dtype = compute_dtype(cfg.model, device)  # autocast over the stored weights
        world = self.acc.num_processes
        if cfg.rollout.tasks_per_step % world:
            raise ConfigError(f"rollout.tasks_per_step={cfg.rollout.tasks_per_step} must be a multiple of the "
                              f"{world} processes.")
        seed_everything(cfg.seed + self.acc.process_index)
        self.run_dir = cfg.run_dir / "sft" if stage == "sft" else cfg.run_dir
        if self.acc.is_main_process:
            claim_run_dir(self.run_dir, resume=bool(cfg.resume), overwrite=cfg.overwrite)
        self.acc.wait_for_everyone()
        self.tracker = Tracker(self.run_dir, self.acc.is_main_process, cfg.log.tensorboard)
        if self.acc.is_main_process:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            logger.info("%s stage: resolved config in %s", stage, self.run_dir / "config.yaml")

        rl_algorithm = ALGORITHMS[cfg.algo.name]
        self.algorithm = ALGORITHMS["sft"] if stage == "sft" else rl_algorithm
        self.lr = cfg.sft.lr if stage == "sft" else cfg.algo.lr
        self.terms = objective_terms(self.algorithm, cfg.algo)
        self.needs = self.algorithm.needs(cfg.algo)
        self.template = template_for(cfg.env.id, cfg.rollout.template)
        self.tokenizer = load_tokenizer(cfg.model)
        model, _ = load_policy(cfg.model, self.acc.device, self.tokenizer)
        if is_sharded(self.acc):
            broadcast_weights(model)
        self.ref = None  # the KL's reference: the initial policy (with LoRA, the base weights)
        if "reference" in self.needs and cfg.model.lora_rank == 0:
            self.ref = frozen_copy(model, self.compute_dtype)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.lr,
                                      weight_decay=cfg.algo.weight_decay)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # FSDP replaces them with shards
        if world > 1 and self.acc.is_main_process:
            held, total = local_share(self.params)
            logger.info("%d processes, %s: this one holds %s of %s trained parameters", world,
                        "sharded (FSDP2)" if is_sharded(self.acc) else "data parallel (DDP)", f"{held:,}", f"{total:,}")
        self.acc.register_save_state_pre_hook(_drop_tied_copies)
        self.generator = make_generator(cfg.rollout, self.acc.unwrap_model(self.model), self.tokenizer,
                                        self.compute_dtype, cfg.seed + self.acc.process_index,
                                        weights_copy=False if is_sharded(self.acc) else None)

        self._val_pools: dict[str, EnvPool] = {}
        self.state = _LoopState(cfg.seed)
        self.acc.register_for_checkpointing(self.state)
        self.skills: SkillSelector | None = None
        # the SFT stage shows the student the skills exactly when its RL stage will (Skill-GRPO)
        if rl_algorithm.skills_in_student if stage == "sft" else self.algorithm.uses_skills(cfg.algo):
            s = cfg.skills
            self.skills = SkillSelector(s.bank or env_class(cfg.env.id).skill_bank, s.strategy, s.k or None,
                                        s.budget_tokens, self._count_tokens, cfg.seed, s.ucb_c)
            self.acc.register_for_checkpointing(self.skills)
        self.tasks_per_rank = cfg.rollout.tasks_per_step // world
        if stage == "sft":
            self._prepare_demonstrations()
        else:
            self.pool = EnvPool.from_config(cfg.env, cfg.env.split, self.tasks_per_rank * cfg.rollout.group_size)
            self.task_ids = list(self.pool.call("task_ids"))
            self.steps = cfg.steps
        self._stop = False
        if cfg.resume:
            self.resume(cfg.resume)

    def _prepare_demonstrations(self) -> None:
        """The SFT stage's data: expert turns, and the order of their mini-batches over all epochs."""
        from sdar_agent.sft import collect_demonstrations

        sft = self.cfg.sft
        eos = set(self.generator.eos_ids())
        skills = self.skills if self.skills is not None else None
        self.demos, self.demo_summary = collect_demonstrations(self.cfg, self.tokenizer, self.template, eos, skills)
        if self.acc.is_main_process:  # every process plays the same episodes; one says so
            summary = self.demo_summary
            logger.info("collected %d expert turns from %d won of %d episodes", len(self.demos),
                        round(summary["sft/expert_success_rate"] * summary["sft/episodes"]), summary["sft/episodes"])
        rng = np.random.default_rng(self.cfg.seed)
        self.demo_order = np.concatenate([rng.permutation(len(self.demos)) for _ in range(sft.epochs)])
        self.steps = math.ceil(len(self.demo_order) / sft.batch_size)

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _skill_use(self, in_student: bool, for_teacher: bool) -> SkillUse | None:
        if self.skills is None or not (in_student or for_teacher):
            return None
        return SkillUse(self.skills, in_student, for_teacher, self.cfg.skills.placement)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        previous = signal.signal(signal.SIGINT, self._request_stop)
        progress = None
        if acc.is_main_process and cfg.log.progress:
            from tqdm.auto import tqdm

            desc = f"{cfg.name} {self.stage}" if cfg.sft.episodes else cfg.name
            progress = tqdm(total=self.steps, initial=self.state.step, desc=desc, unit="step")
        last: dict[str, float] = {}
        try:
            if self.stage == "sft" and self.state.step == 0 and cfg.val_every:  # what SFT buys: before and after
                self.tracker.log(0, self.validate())
            while self.state.step < self.steps and not self._stop:
                last = self.train_step()
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(self._bar_figures(last))
                step = self.state.step
                if cfg.save_every and step % cfg.save_every == 0 and step < self.steps:
                    self.save_checkpoint()
            if self._stop:
                logger.warning("stopping at step %d on request; checkpointing", self.state.step)
            if self._stop or cfg.save_every:
                self.save_checkpoint()
            if not self._stop:
                self.save_final()
                self._share_final_weights()
        finally:
            signal.signal(signal.SIGINT, previous)
            if progress is not None:
                progress.close()
            if cfg.log.plot:
                self.tracker.plot()
        return last

    def _request_stop(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop = True
        logger.warning("Ctrl-C: finishing this step, then checkpointing (press again to abort)")

    def _bar_figures(self, metrics: dict[str, float]) -> dict[str, str]:
        """The few figures the progress bar shows after a step."""
        if self.stage == "sft":
            return {"loss": f"{metrics.get('sft/loss', 0):.3f}"}
        shown = {"success": f"{metrics.get('episode/success_rate', 0):.2f}",
                 "pg_loss": f"{metrics.get('actor/pg_loss', 0):.3f}"}
        if "sdar/loss" in metrics:
            shown.update(sdar_loss=f"{metrics['sdar/loss']:.3f}", gate=f"{metrics['sdar/gate_mean']:.2f}")
        return shown

    def train_step(self) -> dict[str, float]:
        """One step of the stage: its samples (rollouts or demonstrations), the update, metrics, validation."""
        metrics = self._sft_step() if self.stage == "sft" else self._rl_step()
        metrics = self._average_across_processes(metrics)
        step = self.state.step
        # RL validates every `val_every` steps; the SFT stage before (in `train`) and after its last step
        periodic = self.stage == "rl" and step % max(self.cfg.val_every, 1) == 0
        if self.cfg.val_every and (periodic or step == self.steps):
            metrics.update(self.validate())
        self.tracker.log(step, metrics)
        return metrics

    def _sft_step(self) -> dict[str, float]:
        size = self.cfg.sft.batch_size
        rank, world = self.acc.process_index, self.acc.num_processes
        chosen = self.demo_order[self.state.step * size : (self.state.step + 1) * size]
        samples = [self.demos[i] for i in chosen[rank::world]]
        start = time.perf_counter()
        update = self.update(samples, torch.zeros(len(samples), dtype=torch.float64))
        update_s = time.perf_counter() - start
        self.state.step += 1
        train_tokens = update.pop("_train_tokens", 0.0)
        first = self.demo_summary if self.state.step == 1 else {}
        return {**first, **update, "perf/update_s": update_s, **self._train_speed(train_tokens, update_s)}

    def _rl_step(self) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        rank = acc.process_index
        chosen = self.state.task_rng.choice(len(self.task_ids), size=cfg.rollout.tasks_per_step,
                                            replace=len(self.task_ids) < cfg.rollout.tasks_per_step)
        mine = chosen[rank * self.tasks_per_rank : (rank + 1) * self.tasks_per_rank]
        start = time.perf_counter()
        with full_weights(self.model, acc):
            batch = collect(
                self.generator, self.tokenizer, self.pool, self.template, [self.task_ids[i] for i in mine],
                cfg.rollout.group_size, Sampling.from_config(cfg.rollout, answer_ends=self.template.answer_ends),
                max_turns=cfg.env.max_turns, history_length=cfg.rollout.history_length,
                max_prompt_tokens=cfg.rollout.max_prompt_tokens,
                traj_offset=rank * self.pool.n, group_offset=rank * self.tasks_per_rank,
                skills=self._skill_use(self.algorithm.skills_in_student, "teacher" in self.needs),
            )
        rollout_s = time.perf_counter() - start
        if self.skills is not None:  # every process applies every episode's feedback: one shared UCB state
            from accelerate.utils import gather_object

            for shown, score in gather_object([(e.skills, e.score) for e in batch.episodes if e.skills is not None]):
                self.skills.feedback(shown, score)
        rewards, scores = self._scores(batch.samples)
        start = time.perf_counter()
        update = self.update(batch.samples, scores)
        update_s = time.perf_counter() - start
        self.state.step += 1
        train_tokens = update.pop("_train_tokens", 0.0)
        metrics = {**self._episode_metrics(batch, rewards), **update}
        metrics.update({"perf/rollout_s": rollout_s, "perf/update_s": update_s,
                        "perf/generation_s": batch.generation_s, "perf/env_s": batch.env_s,
                        "perf/generation_tokens_per_s": batch.generated_tokens / max(batch.generation_s, 1e-9),
                        **self._train_speed(train_tokens, update_s)})
        return metrics

    def _train_speed(self, tokens: float, seconds: float) -> dict[str, float]:
        """Tokens/s through the update, its model FLOP/s, and their share of the device's peak (where known).

        Model FLOPs per token: 2 x parameters forward + 4 x trained parameters backward (6N when every
        weight trains; with frozen blocks or LoRA the activation gradients through frozen weights are
        not counted, so it is a lower bound there). Teacher and reference passes are in the time,
        not in the FLOPs.
        """
        seconds = max(seconds, 1e-9)
        model = self.acc.unwrap_model(self.model)
        flops = tokens * (2 * sum(p.numel() for p in model.parameters()) + 4 * sum(p.numel() for p in self.params))
        out = {"perf/train_tokens_per_s": tokens / seconds, "perf/train_tflops": flops / seconds / 1e12}
        peak = peak_flops(self.acc.device, self.compute_dtype)
        if peak:
            out["perf/train_peak_share"] = flops / seconds / peak
        return out

    def _scores(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's training reward r_t and score (its trajectory's return minus its penalty)."""
        r = self.cfg.rollout
        trajs = torch.tensor([s.traj for s in samples], dtype=torch.long)
        rewards = turn_rewards(torch.tensor([s.env_reward for s in samples], dtype=torch.float64),
                               torch.tensor([s.won for s in samples]), win_reward=r.win_reward, reward=r.reward)
        scores = turn_scores(rewards, torch.tensor([s.valid for s in samples]), trajs,
                             invalid_penalty=r.invalid_action_penalty)
        return rewards, scores

    # ------------------------------------------------------------------ the update
    def update(self, samples: list[Sample], scores: torch.Tensor) -> dict[str, float]:
        """Optimizer steps on one rollout batch; returns the update's metrics."""
        cfg = self.cfg
        kept = [i for i, s in enumerate(samples) if s.response_ids]
        samples = [samples[i] for i in kept]
        adv = torch.zeros(0)
        if samples:
            adv = grpo_advantages(scores[kept], torch.tensor([s.group for s in samples]),
                                  torch.tensor([s.traj for s in samples]), mode=cfg.algo.advantage_norm,
                                  norm_by_std=cfg.algo.norm_by_std)
        minis = self._mini_batches(len(samples))
        # Before any update: old log-probs (when the policy will move between mini-batches) and the
        # teacher's view (the pre-update policy with skills in its prompt), each one batched pass.
        single_update = len(minis) == 1 and cfg.algo.epochs == 1
        with full_weights(self.model, self.acc), self._cast_once():
            old_logp = None if single_update else self._score_responses(samples, teacher=False)[0]
            start = time.perf_counter()
            teacher = self._score_responses(samples, teacher=True) if "teacher" in self.needs else None
            teacher_s = time.perf_counter() - start
        sums: dict[str, float] = defaultdict(float)
        train_tokens = 0
        with self._cast_once(frozen_only=True):
            for _ in range(cfg.algo.epochs):
                for mini in minis:
                    stats, tokens = self._optimizer_step(samples, mini, adv, old_logp, teacher)
                    train_tokens += tokens
                    for key, value in stats.items():
                        sums[key] += value / (cfg.algo.epochs * len(minis))
        return {**sums, "actor/lr": self.lr, "rollout/samples": float(len(samples)),
                "actor/optimizer_steps": float(cfg.algo.epochs * len(minis)), "perf/teacher_s": teacher_s,
                "_train_tokens": train_tokens}

    def _cast_once(self, frozen_only: bool = False) -> Any:
        """`linears_cast_once` on a CPU, unsharded: GPUs (unmeasured there) keep autocast's casts and their memory."""
        return linears_cast_once(self.model, self.compute_dtype, frozen_only=frozen_only,
                                 enabled=self.acc.device.type == "cpu" and not is_sharded(self.acc))

    def _mini_batches(self, n: int) -> list[list[int]]:
        """This process's sample indices per optimizer step; every process takes the same number of steps.

        With `algo.mini_batch_size` (samples over all processes) the batch is cut in order into
        chunks of that size, as the reference does (a process with fewer samples gets empty
        chunks: zero-gradient passes); else into `algo.mini_batches` interleaved parts.
        """
        algo, world = self.cfg.algo, self.acc.num_processes
        if not algo.mini_batch_size:
            return [list(range(k, n, algo.mini_batches)) for k in range(algo.mini_batches)]
        size = math.ceil(algo.mini_batch_size / world)
        most = int(self.acc.gather(torch.tensor([n], device=self.acc.device)).max())
        steps = max(1, math.ceil(most / size))
        return [list(range(k * size, min((k + 1) * size, n))) for k in range(steps)]

    def _optimizer_step(self, samples, mini, adv, old_logp, teacher) -> tuple[dict[str, float], int]:
        """One mini-batch: micro-batches with gradient accumulation, then one clipped AdamW step."""
        cfg, acc = self.cfg, self.acc
        micro = cfg.algo.micro_batch_size
        # similar lengths share a micro-batch: less padding (the accumulated gradient is the same sum)
        mini = sorted(mini, key=lambda i: len(samples[i].prompt_ids) + len(samples[i].response_ids))
        chunks = [mini[k : k + micro] for k in range(0, len(mini), micro)]
        # Every process must run as many backward passes as the busiest one (DDP syncs on each).
        n_chunks = int(acc.gather(torch.tensor([len(chunks)], device=acc.device)).max())
        n_tokens = sum(len(samples[i].response_ids) for i in mini)
        stats: dict[str, float] = defaultdict(float)
        tokens_seen = 0
        for k in range(n_chunks):
            ctx = acc.no_sync(self.model) if k < n_chunks - 1 else contextlib.nullcontext()
            with ctx:
                if k >= len(chunks):  # this process has run out: a zero-loss pass keeps DDP / FSDP in step
                    acc.backward(idle_loss(self.model, self.tokenizer.pad_token_id, acc.device))
                    continue
                mb, tokens = self._micro_batch(samples, chunks[k], adv, old_logp, teacher, n_tokens)
                loss, metrics = total_loss(self.terms, mb, cfg.algo)
                acc.backward(loss)
            tokens_seen += tokens
            for key, value in metrics.items():
                stats[key] += float(value)
        grad_norm = acc.clip_grad_norm_(self.params, cfg.algo.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.generator.sync_weights()
        stats["actor/grad_norm"] = float(grad_norm)
        return dict(stats), tokens_seen

    def _micro_batch(self, samples, idx, adv, old_logp, teacher, n_tokens) -> tuple[MicroBatch, int]:
        """The named record the objective's terms read, from one forward of the policy."""
        device = self.acc.device
        batch = pack([samples[i].prompt_ids for i in idx], [samples[i].response_ids for i in idx],
                     self.tokenizer.pad_token_id)
        mask = batch["response_mask"].to(device)
        full_logits = "full_logits" in self.needs
        with autocast(device, self.compute_dtype):
            out = response_logprobs(self.model, batch, with_entropy=True, entropy_grad="entropy_grad" in self.needs,
                                    with_hidden=full_logits)
        mb = MicroBatch(
            logp=out.logp, old_logp=out.logp.detach() if old_logp is None else _stack(old_logp, idx, mask).to(device),
            adv=adv[idx].to(device), mask=mask, n_tokens=n_tokens, entropy=out.entropy, step=self.state.step + 1)
        if teacher is not None:
            mb.teacher_logp = _stack(teacher[0], idx, mask).to(device)
        if full_logits:
            mb.hidden, mb.head = out.hidden, output_head(self.model)
            mb.teacher_hidden = _stack_hidden(teacher[1], idx, mask).to(device)
        if "reference" in self.needs:
            mb.ref_logp = self._reference_logp(batch)
        return mb, int(batch["attention_mask"].sum())

    @torch.no_grad()
    def _reference_logp(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with autocast(self.acc.device, self.compute_dtype):
            if self.ref is not None:
                return response_logprobs(self.ref, batch).logp
            with self.acc.unwrap_model(self.model).disable_adapter():  # LoRA: the base weights are the reference
                return response_logprobs(self.model, batch).logp

    @torch.no_grad()
    def _score_responses(self, samples: list[Sample], teacher: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-sample response log-probs (and hidden states for the full-vocabulary ablations), no gradient.

        With `teacher`, on the teacher's prompts (skills included); always with the current weights.
        """
        want_hidden = teacher and "full_logits" in self.needs
        prompts = [(s.teacher_prompt_ids or s.prompt_ids) if teacher else s.prompt_ids for s in samples]
        logps: list[torch.Tensor] = [torch.zeros(0)] * len(samples)
        hiddens: list[torch.Tensor] = [torch.zeros(0)] * len(samples) if want_hidden else []
        # Micro-batches of one task's samples (one skills text, one task), planned to run the fewest
        # tokens: the leading tokens all the task's samples share run once for all its micro-batches
        # (their KV cache repeated across each micro-batch's rows), and rows that share more (the
        # same turn of a group's rollouts) go together and run that once too.
        groups: dict[int, list[int]] = {}
        for i in range(len(samples)):
            groups.setdefault(samples[i].group, []).append(i)
        for members in groups.values():
            n_prefix = usable_prefix_length([prompts[i] for i in members])
            plan = plan_micro_batches([prompts[i] for i in members], [len(samples[i].response_ids) for i in members],
                                      self.cfg.algo.micro_batch_size, cached=n_prefix)
            prefix_kv = None
            if n_prefix and len(plan) > 1:
                with autocast(self.acc.device, self.compute_dtype):
                    prefix_kv = prefix_cache(self.model, torch.tensor(prompts[members[0]][:n_prefix]), 1)
            for run in plan:
                chunk = [members[k] for k in run]
                kv, n = prefix_kv, n_prefix
                with autocast(self.acc.device, self.compute_dtype):
                    n_chunk = usable_prefix_length([prompts[i] for i in chunk])
                    if kv is not None and n_chunk > n:
                        kv, n = extend_cache(self.model, kv, torch.tensor(prompts[chunk[0]][n:n_chunk])), n_chunk
                    batch = pack([prompts[i] for i in chunk], [samples[i].response_ids for i in chunk],
                                 self.tokenizer.pad_token_id, share_prefix=True,
                                 prefix_length=n if kv is not None else None)
                    out = response_logprobs(self.model, batch, with_hidden=want_hidden, prefix_kv=kv)
                logp, hidden = out.logp, out.hidden
                for row, i in enumerate(chunk):
                    n = len(samples[i].response_ids)
                    logps[i] = logp[row, logp.shape[1] - n :].cpu()
                    if hidden is not None:
                        hiddens[i] = hidden[row, hidden.shape[1] - n :].cpu()
        return logps, hiddens

    # ------------------------------------------------------------------ metrics
    def _episode_metrics(self, batch: RolloutBatch, rewards: torch.Tensor) -> dict[str, float]:
        from accelerate.utils import gather_object

        trajs = torch.tensor([s.traj for s in batch.samples], dtype=torch.long)
        returns = dict(zip(trajs.tolist(), trajectory_returns(rewards, trajs).tolist(), strict=True))
        episodes = gather_object(batch.episodes)
        episode_returns = gather_object([returns[e.traj] for e in batch.episodes])
        metrics: dict[str, float] = {"episode/dropped": float(sum(gather_object([batch.dropped])))}
        metrics.update({f"episode/{k}": v for k, v in episode_summary(episodes).items()})
        if episode_returns:
            metrics["episode/return"] = float(np.mean(episode_returns))
        if batch.samples:
            metrics["rollout/response_tokens"] = float(np.mean([len(s.response_ids) for s in batch.samples]))
            metrics["rollout/prompt_tokens"] = float(np.mean([len(s.prompt_ids) for s in batch.samples]))
        return metrics

    def _average_across_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Per-process update, loss and perf figures averaged over processes (episode figures are global)."""
        if self.acc.num_processes == 1:
            return metrics
        per_process = ("actor/", "perf/", "rollout/", "sdar/", "skill_sd/", "rlsd/", "sft/")
        keys = sorted(k for k in metrics if k.startswith(per_process))
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        mean = self.acc.reduce(values, reduction="mean")
        return {**metrics, **{k: float(v) for k, v in zip(keys, mean.tolist(), strict=True)}}

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Success, the rest of the episode summary and the number of episodes on each of `env.val_splits`.

        The first split's figures are `val/<key>`; with several splits each is also `val/<split>/<key>`.
        """
        cfg, acc = self.cfg, self.acc
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        for i, split in enumerate(cfg.env.val_splits):
            if split not in self._val_pools:
                per_rank = math.ceil(cfg.val_tasks / acc.num_processes)
                self._val_pools[split] = EnvPool.from_config(cfg.env, split, per_rank)
            with full_weights(self.model, acc):
                summary = self._validate_split(self._val_pools[split])
            if i == 0:
                metrics.update({f"val/{k}": v for k, v in summary.items()})
            if len(cfg.env.val_splits) > 1:
                metrics.update({f"val/{split}/{k}": v for k, v in summary.items()})
        metrics["perf/val_s"] = time.perf_counter() - start
        return metrics

    def _validate_split(self, pool: EnvPool) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc

        def run(skills: SkillUse | None) -> dict[str, float]:
            episodes = evaluate_policy(self.generator, self.tokenizer, pool, self.template, cfg,
                                       Sampling.from_config(cfg.rollout, cfg.val_temperature,
                                                            self.template.answer_ends),
                                       rank=acc.process_index, world=acc.num_processes, skills=skills)
            return {**episode_summary(episodes), "episodes": float(len(episodes))}

        student_skills = self.algorithm.skills_in_student
        summary = run(self._skill_use(student_skills, False))
        if student_skills:  # Skill-GRPO is evaluated with and without its skills
            summary["success_rate_no_skills"] = run(None).get("success_rate", 0.0)
        return summary

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dir(self, step: int) -> Path:
        return self.run_dir / CHECKPOINTS / f"step_{step:06d}"

    def save_checkpoint(self) -> Path:
        path = self.checkpoint_dir(self.state.step)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(path))
        if self.acc.is_main_process:
            (path / "sdar_state.json").write_text(json.dumps({"step": self.state.step, "config": self.cfg.to_dict()}))
            kept = sorted((self.run_dir / CHECKPOINTS).glob("step_*"))
            for old in kept[: -self.cfg.save_total_limit]:
                shutil.rmtree(old)
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
        self.generator.sync_weights()  # a generation copy of the weights (bf16 on a CPU) must take the loaded ones
        self.tracker.truncate_after(self.state.step)
        if self.acc.is_main_process:
            logger.info("resumed from %s at step %d", path, self.state.step)

    def save_final(self) -> Path:
        """Write the HF model folder `final/`: into a fresh folder swapped in whole, never over old files.

        A swap (not a rewrite in place) keeps a half-written `final/` from ever being seen, and keeps a
        checkpoint whose weights are a hard link to the previous `final/` intact.
        """
        path = self.run_dir / "final"
        self.acc.wait_for_everyone()
        state = full_state_dict(self.acc, self.model) if is_sharded(self.acc) else None  # all processes gather
        if self.acc.is_main_process:
            partial = path.with_name("final.partial")
            shutil.rmtree(partial, ignore_errors=True)
            self.acc.unwrap_model(self.model).save_pretrained(partial, state_dict=state)
            self.tokenizer.save_pretrained(partial)
            shutil.rmtree(path, ignore_errors=True)
            partial.rename(path)
        self.acc.wait_for_everyone()
        return path

    def _share_final_weights(self) -> None:
        """Store the weights once when the last checkpoint and `final/` hold the same step.

        Both files are written the same way (tied copies dropped, same key order), so when their
        bytes are equal the checkpoint's becomes a hard link to `final/`'s; otherwise (or on a file
        system without hard links) both stay.
        """
        checkpoint = self.checkpoint_dir(self.state.step) / WEIGHTS
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

    def close(self) -> None:
        if self.stage == "rl":
            self.pool.close()
        for pool in self._val_pools.values():
            pool.close()
        self.tracker.close()


#: What a stage writes into its run folder (an RL run folder also holds its warm start's `sft/`).
RUN_OUTPUTS = ("metrics.jsonl", "tensorboard", CHECKPOINTS, "final", "final.partial", "curves.png", "config.yaml")


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


def _drop_tied_copies(models: list[Any], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
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
