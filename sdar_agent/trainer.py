"""The training loop: a stage's samples, group-relative advantages, the objective's terms, updates.

A `Trainer` runs one `stages.Stage` of a run: RL (rollouts of the policy, the algorithm of
`algo.name`, in `runs/<name>/`) or SFT (the env expert's demonstrations, in `runs/<name>/sft/`).
The stage's `SampleSource` gives each step's samples; everything after is the same.

One step reads like the algorithm:
    1. the step's samples and their scores (`source.next_batch`): for RL, `tasks_per_step` tasks x
       `group_size` rollouts (split across processes), each turn scored with its trajectory's
       return minus its invalid-action penalty;
    2. advantages normalised within each task's group (`advantages.grpo_advantages`);
    3. what the algorithm's terms need before any update (teacher log-probs with the skills in the
       prompt; old log-probs when the policy moves between mini-batches);
    4. for each mini-batch: forward the micro-batches, sum the terms (`objective.total_loss`),
       backward with gradient accumulation, clip the gradient norm, AdamW step (skipped, with a
       warning, when the loss or the gradient norm is not finite);
    5. log metrics, validate, checkpoint (`checkpoints.Checkpoints`).

Every forward pass runs through one `logprobs.Passes`: the device, the compute dtype and the
temperature its log-probs are taken at, resolved once. Runs on one CPU, one GPU, or many processes
through `accelerate launch` (rollouts split across processes, gradients averaged by DDP, or weights,
gradients and optimizer state sharded by FSDP2: `sdar_agent.sharding`).
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
from typing import Any

import numpy as np
import torch
import yaml

from sdar_agent.advantages import grpo_advantages
from sdar_agent.checkpoints import Checkpoints, claim_run_dir, holds_run, run_folder_of
from sdar_agent.config import ConfigError, TrainConfig
from sdar_agent.evaluate import evaluate_policy, evaluation_report, evaluation_tasks
from sdar_agent.generation import make_generator
from sdar_agent.hardware import peak_flops
from sdar_agent.logprobs import (
    Passes,
    extend_cache,
    output_head,
    pack,
    plan_micro_batches,
    prefix_cache,
    usable_prefix_length,
)
from sdar_agent.models import compute_dtype, frozen_copy, load_policy, load_tokenizer, pick_device
from sdar_agent.objective import MicroBatch, objective_terms, total_loss
from sdar_agent.prompts import template_for
from sdar_agent.rollout import Agent, Episode, RolloutSettings, Sample, SkillUse, skill_selector
from sdar_agent.sharding import (
    broadcast_weights,
    check_supported,
    full_weights,
    idle_loss,
    is_sharded,
    local_share,
    make_accelerator,
)
from sdar_agent.stages import RL, Stage
from sdar_agent.tracking import Tracker, episode_summary
from sdar_agent.workers import EnvPool
from skillbank import SkillSelector

logger = logging.getLogger(__name__)


class NonFiniteTraining(RuntimeError):
    """The loss or gradient norm was not finite for `algo.max_nonfinite_steps` optimizer steps in a row."""


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
    """Owns the model, optimizer, sample source and skill selector of one stage of a run; `train()` runs it."""

    def __init__(self, cfg: TrainConfig, stage: Stage = RL) -> None:
        self.cfg, self.stage = cfg, stage
        device = pick_device(cfg.model)
        self.acc = make_accelerator(cpu=device.type == "cpu")
        self.algorithm = stage.algorithm(cfg)
        self.terms = objective_terms(self.algorithm, cfg.algo)
        self.needs = self.algorithm.needs(cfg.algo)
        check_supported(self.acc, cfg.model.lora_rank, cfg.rollout.backend, self.needs)
        self.passes = Passes(device, compute_dtype(cfg.model, device), stage.temperature(cfg))
        if cfg.rollout.tasks_per_step % self.acc.num_processes:
            raise ConfigError(f"rollout.tasks_per_step={cfg.rollout.tasks_per_step} must be a multiple of the "
                              f"{self.acc.num_processes} processes.")
        seed_everything(cfg.seed + self.acc.process_index)
        self.run_dir = stage.run_dir(cfg)
        resumed = run_folder_of(cfg.resume) if cfg.resume else None
        if resumed is not None and resumed.resolve() != run_folder_of(str(self.run_dir)).resolve() \
                and holds_run(self.run_dir):  # continuing into a fresh folder is a fork; into another run, never
            raise ConfigError(f"resume={cfg.resume} is a checkpoint of {resumed}, but {self.run_dir} holds another "
                              f"run: leave name= and output_dir= out to continue {resumed}, or name a new folder.")
        self.tracker = self._claim_run_dir()
        self.lr = stage.lr(cfg)
        self.template = template_for(cfg.env.id, cfg.rollout.template)
        self.tokenizer = load_tokenizer(cfg.model)
        self._load_model()
        self.checkpoints = Checkpoints(self.acc, self.run_dir, cfg.save_total_limit)
        self.generator = make_generator(cfg.rollout, self.acc.unwrap_model(self.model), self.tokenizer,
                                        self.passes.dtype, cfg.seed + self.acc.process_index,
                                        weights_copy=False if is_sharded(self.acc) else None)
        self.agent = Agent(self.generator, self.tokenizer, self.template)
        self._val_pools: dict[str, EnvPool] = {}
        self.state = _LoopState(cfg.seed)
        self.acc.register_for_checkpointing(self.state)
        self.skills = self._skill_selector() if stage.uses_skills(cfg) else None
        self.source = stage.source(self)
        self.steps = self.source.steps
        self._stop = False
        self._nonfinite_in_row = 0
        if cfg.resume:
            self.resume(cfg.resume)

    def _claim_run_dir(self) -> Tracker:
        """Make the stage's folder this run's, open its metrics, write the resolved config."""
        acc = self.acc
        if acc.is_main_process:
            claim_run_dir(self.run_dir, resume=bool(self.cfg.resume), overwrite=self.cfg.overwrite)
        acc.wait_for_everyone()
        tracker = Tracker(self.run_dir, acc.is_main_process, self.cfg.log.tensorboard)
        if acc.is_main_process:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
            logger.info("%s stage: resolved config in %s", self.stage.name, self.run_dir / "config.yaml")
        return tracker

    def _load_model(self) -> None:
        """The policy (and the KL's reference), its optimizer, prepared for this run's processes."""
        cfg, acc = self.cfg, self.acc
        model, _ = load_policy(cfg.model, acc.device, self.tokenizer)
        if is_sharded(acc):
            broadcast_weights(model)
        self.ref = None  # the KL's reference: the initial policy (with LoRA, the base weights)
        if "reference" in self.needs and cfg.model.lora_rank == 0:
            self.ref = frozen_copy(model, self.passes.dtype)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.lr,
                                      weight_decay=cfg.algo.weight_decay)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # FSDP replaces them with shards
        if acc.num_processes > 1 and acc.is_main_process:
            held, total = local_share(self.params)
            logger.info("%d processes, %s: this one holds %s of %s trained parameters", acc.num_processes,
                        "sharded (FSDP2)" if is_sharded(acc) else "data parallel (DDP)", f"{held:,}", f"{total:,}")

    def _skill_selector(self) -> SkillSelector:
        selector = skill_selector(self.cfg, self.tokenizer)
        self.acc.register_for_checkpointing(selector)
        return selector

    def skill_use(self, in_student: bool, for_teacher: bool) -> SkillUse | None:
        """How this stage's episodes use skills: in the student's prompt, for the teacher's, or not at all."""
        if self.skills is None or not (in_student or for_teacher):
            return None
        return SkillUse(self.skills, in_student, for_teacher, self.cfg.skills.placement)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        previous = signal.signal(signal.SIGINT, self._request_stop)
        shown = acc.is_main_process and cfg.log.progress
        progress = None
        console = contextlib.ExitStack()
        if shown:  # log lines print above the progress bars instead of through them
            from tqdm.contrib.logging import logging_redirect_tqdm

            console.enter_context(logging_redirect_tqdm())
        last: dict[str, float] = {}
        try:
            if self.stage.validate_first and self.state.step == 0 and cfg.val_every:
                self.tracker.log(0, self.validate())
            if shown:
                from tqdm.auto import tqdm

                desc = f"{cfg.name} {self.stage.name}" if cfg.sft.episodes else cfg.name
                progress = tqdm(total=self.steps, initial=self.state.step, desc=desc, unit="step")
            while self.state.step < self.steps and not self._stop:
                last = self.train_step()
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(self.source.bar_figures(last))
                step = self.state.step
                if cfg.save_every and step % cfg.save_every == 0 and step < self.steps:
                    self.save_checkpoint()
            if self._stop:
                logger.warning("stopping at step %d on request; checkpointing", self.state.step)
            if self._stop or cfg.save_every:
                self.save_checkpoint()
            if not self._stop:
                self.checkpoints.save_final(self.model, self.tokenizer)
        finally:
            signal.signal(signal.SIGINT, previous)
            if progress is not None:
                progress.close()
            console.close()
            if cfg.log.plot:
                self.tracker.plot()
        return last

    def _request_stop(self, signum, frame) -> None:
        if self._stop:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop = True
        logger.warning("Ctrl-C: finishing this step, then checkpointing (press again to abort)")

    def train_step(self) -> dict[str, float]:
        """One step of the stage: its samples (rollouts or demonstrations), the update, metrics, validation."""
        batch = self.source.next_batch(self)
        start = time.perf_counter()
        update = self.update(batch.samples, batch.scores)
        update_s = time.perf_counter() - start
        self.state.step += 1
        train_tokens = update.pop("_train_tokens", 0.0)
        metrics = {**batch.metrics, **update, "perf/update_s": update_s, **self._train_speed(train_tokens, update_s)}
        metrics = self._average_across_processes(metrics)
        step, val_every = self.state.step, self.cfg.val_every
        if val_every and (step == self.steps or (self.stage.validate_periodically and step % val_every == 0)):
            metrics.update(self.validate())
        self.tracker.log(step, metrics)
        if self._nonfinite_in_row >= self.cfg.algo.max_nonfinite_steps:
            raise NonFiniteTraining(
                f"step {step}: the loss or gradient norm was not finite in {self._nonfinite_in_row} optimizer steps "
                f"in a row (algo.max_nonfinite_steps={self.cfg.algo.max_nonfinite_steps}); every one was skipped. "
                f"Lower algo.lr or raise algo.max_grad_norm's clip, or resume from a checkpoint in {self.run_dir}.")
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
        peak = peak_flops(self.acc.device, self.passes.dtype)
        if peak:
            out["perf/train_peak_share"] = flops / seconds / peak
        return out

    # ------------------------------------------------------------------ the update
    def update(self, samples: list[Sample], scores: torch.Tensor) -> dict[str, float]:
        """Optimizer steps on one batch of samples; returns the update's metrics."""
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
        with full_weights(self.model, self.acc):
            old_logp = None if single_update else self._score_responses(samples, teacher=False)[0]
            teacher, teacher_s = None, 0.0
            if "teacher" in self.needs:
                start = time.perf_counter()
                teacher = self._score_responses(samples, teacher=True)
                teacher_s = time.perf_counter() - start
        sums: dict[str, float] = defaultdict(float)
        train_tokens, skipped = 0, 0
        for _ in range(cfg.algo.epochs):
            for mini in minis:
                stats, tokens = self._optimizer_step(samples, mini, adv, old_logp, teacher)
                train_tokens += tokens
                skipped += int(stats.pop("_skipped"))
                for key, value in stats.items():
                    sums[key] += value / (cfg.algo.epochs * len(minis))
        return {**sums, "actor/lr": self.lr, "rollout/samples": float(len(samples)),
                "actor/optimizer_steps": float(cfg.algo.epochs * len(minis)), "actor/nonfinite_steps": float(skipped),
                "perf/teacher_s": teacher_s, "_train_tokens": train_tokens}

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
        """One mini-batch: micro-batches with gradient accumulation, then one clipped AdamW step.

        A loss or gradient norm that is not finite (on any process) skips the step: the gradient is
        dropped, the weights stay, a warning says so and `_skipped` counts it.
        """
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
        loss_sum = torch.zeros((), device=acc.device)
        for k in range(n_chunks):
            ctx = acc.no_sync(self.model) if k < n_chunks - 1 else contextlib.nullcontext()
            with ctx:
                if k >= len(chunks):  # this process has run out: a zero-loss pass keeps DDP / FSDP in step
                    acc.backward(idle_loss(self.model, self.tokenizer.pad_token_id, acc.device))
                    continue
                mb, tokens = self._micro_batch(samples, chunks[k], adv, old_logp, teacher, n_tokens)
                loss, metrics = total_loss(self.terms, mb, cfg.algo)
                acc.backward(loss)
            loss_sum += loss.detach()
            tokens_seen += tokens
            for key, value in metrics.items():
                stats[key] += float(value)
        grad_norm = float(acc.clip_grad_norm_(self.params, cfg.algo.max_grad_norm))
        finite = torch.tensor(float(math.isfinite(grad_norm) and math.isfinite(float(loss_sum))), device=acc.device)
        finite = bool(acc.reduce(finite, reduction="mean") == 1.0)  # every process agrees to step, or none does
        if finite:
            self.optimizer.step()
            self.generator.sync_weights()
            self._nonfinite_in_row = 0
        else:
            self._nonfinite_in_row += 1
            logger.warning("step %d: loss %s, gradient norm %s: skipping this optimizer step (%d in a row)",
                           self.state.step + 1, float(loss_sum), grad_norm, self._nonfinite_in_row)
        self.optimizer.zero_grad(set_to_none=True)
        stats["actor/grad_norm"] = grad_norm
        stats["_skipped"] = float(not finite)
        return dict(stats), tokens_seen

    def _micro_batch(self, samples, idx, adv, old_logp, teacher, n_tokens) -> tuple[MicroBatch, int]:
        """The named record the objective's terms read, from one forward of the policy."""
        device = self.acc.device
        batch = pack([samples[i].prompt_ids for i in idx], [samples[i].response_ids for i in idx],
                     self.tokenizer.pad_token_id)
        mask = batch["response_mask"].to(device)
        full_logits = "full_logits" in self.needs
        out = self.passes.logprobs(self.model, batch, with_entropy=True, entropy_grad="entropy_grad" in self.needs,
                                   with_hidden=full_logits)
        mb = MicroBatch(
            logp=out.logp, old_logp=out.logp.detach() if old_logp is None else _stack(old_logp, idx, mask).to(device),
            adv=adv[idx].to(device), mask=mask, n_tokens=n_tokens, entropy=out.entropy, step=self.state.step + 1,
            temperature=self.passes.temperature)
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
        if self.ref is not None:
            return self.passes.logprobs(self.ref, batch).logp
        with self.acc.unwrap_model(self.model).disable_adapter():  # LoRA: the base weights are the reference
            return self.passes.logprobs(self.model, batch).logp

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
                with self.passes.forward(self.model):
                    prefix_kv = prefix_cache(self.model, torch.tensor(prompts[members[0]][:n_prefix]), 1)
            for run in plan:
                chunk = [members[k] for k in run]
                kv, n = prefix_kv, n_prefix
                n_chunk = usable_prefix_length([prompts[i] for i in chunk])
                if kv is not None and n_chunk > n:
                    with self.passes.forward(self.model):
                        kv = extend_cache(self.model, kv, torch.tensor(prompts[chunk[0]][n:n_chunk]))
                    n = n_chunk
                batch = pack([prompts[i] for i in chunk], [samples[i].response_ids for i in chunk],
                             self.tokenizer.pad_token_id, share_prefix=True,
                             prefix_length=n if kv is not None else None)
                out = self.passes.logprobs(self.model, batch, with_hidden=want_hidden, prefix_kv=kv)
                logp, hidden = out.logp, out.hidden
                for row, i in enumerate(chunk):
                    n = len(samples[i].response_ids)
                    logps[i] = logp[row, logp.shape[1] - n :].cpu()
                    if hidden is not None:
                        hiddens[i] = hidden[row, hidden.shape[1] - n :].cpu()
        return logps, hiddens

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
                per_rank = max(math.ceil(cfg.val_tasks / acc.num_processes), cfg.eval.samples)
                self._val_pools[split] = EnvPool.from_config(cfg.env, split, per_rank)
            with full_weights(self.model, acc):
                summary = self._validate_split(self._val_pools[split], split)
            if i == 0:
                metrics.update({f"val/{k}": v for k, v in summary.items()})
            if len(cfg.env.val_splits) > 1:
                metrics.update({f"val/{split}/{k}": v for k, v in summary.items()})
        metrics["perf/val_s"] = time.perf_counter() - start
        return metrics

    def _validate_split(self, pool: EnvPool, split: str) -> dict[str, float]:
        """One split's validation figures; its report (panel, per-task outcomes) goes to `validations/`."""
        cfg, acc = self.cfg, self.acc
        settings = RolloutSettings.from_config(cfg, self.template, cfg.val_temperature)

        shown = acc.is_main_process and cfg.log.progress
        label = f"{self.stage.name} validation, step {self.state.step}, {split}"

        def run(skills: SkillUse | None) -> list[Episode]:
            return evaluate_policy(self.agent, pool, settings, cfg.val_tasks, rank=acc.process_index,
                                   world=acc.num_processes, skills=skills, samples=cfg.eval.samples,
                                   progress=label if shown else None)

        student_skills = self.algorithm.skills_in_student
        panel = evaluation_tasks(list(pool.call("task_ids")), cfg.val_tasks)
        start = time.perf_counter()
        if acc.is_main_process:
            logger.info("%s: %d tasks x %d episode%s", label, len(panel), cfg.eval.samples,
                        "s" if cfg.eval.samples > 1 else "")
        episodes = run(self.skill_use(student_skills, False))
        report = evaluation_report(episodes, panel, cfg.eval.samples)
        summary = {**report["summary"], "episodes": float(len(episodes)), "success_low": report["wilson_95"][0],
                   "success_high": report["wilson_95"][1]}
        if student_skills:  # Skill-GRPO is evaluated with and without its skills
            summary["success_rate_no_skills"] = episode_summary(run(None)).get("success_rate", 0.0)
        if acc.is_main_process:
            logger.info("%s: %.1f%% (%d of %d won), %.0f s", label, 100 * summary.get("success_rate", 0.0),
                        sum(e.won for e in episodes), len(episodes), time.perf_counter() - start)
            folder = self.run_dir / "validations"
            folder.mkdir(exist_ok=True)
            report.update(split=split, step=self.state.step, temperature=cfg.val_temperature)
            (folder / f"step_{self.state.step:06d}_{split}.json").write_text(json.dumps(report, indent=1))
        return summary

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        self.checkpoints.save(self.state.step, self.cfg.to_dict())

    def resume(self, source: str) -> None:
        path = self.checkpoints.resume_from(source)
        self.generator.sync_weights()  # a generation copy of the weights (bf16 on a CPU) must take the loaded ones
        self.tracker.truncate_after(self.state.step)
        if self.acc.is_main_process:
            logger.info("resumed from %s at step %d", path, self.state.step)

    def close(self) -> None:
        self.source.close()
        for pool in self._val_pools.values():
            pool.close()
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
