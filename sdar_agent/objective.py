"""The training objective: every algorithm is a list of weighted loss terms over one micro-batch record.

    loss = sum_i  w_i * term_i(micro-batch)

A term is a small function of a `MicroBatch` (the per-token tensors of a micro-batch, named) and
the algorithm settings; it returns its loss and its metrics. The pure losses it calls live in
`losses.py` (PPO-clip, KL, token mean) and `distill.py` (SDAR's gate and term, Skill-SD, RLSD).
An algorithm (`ALGORITHMS`) lists its terms, their weights (a number or the `AlgoConfig` field
that holds it) and what each needs the trainer to compute first:

| need          | what the trainer computes before the update                               |
|---------------|---------------------------------------------------------------------------|
| `teacher`     | teacher log-probs: the pre-update policy on prompts that carry the skills |
| `reference`   | reference log-probs (the initial policy; the LoRA base weights)           |
| `full_logits` | final hidden states of student and teacher (full-vocabulary divergences)  |
| `entropy_grad`| the policy's entropy with its gradient (the entropy bonus)                |

| algorithm    | terms                                                    | skills in the student prompt |
|--------------|----------------------------------------------------------|------------------------------|
| `grpo`       | policy_gradient                                          | no                           |
| `sdar`       | policy_gradient + sdar_lambda * gated_distillation       | no                           |
| `opsd`       | sdar_lambda * gated_distillation (SDAR without its RL term) | no                        |
| `grpo_opsd`  | policy_gradient + sdar_lambda * gated_distillation(beta = 0: g = 0.5) | no              |
| `skill_grpo` | policy_gradient                                          | yes (validated with and without) |
| `skill_sd`   | policy_gradient + skill_sd_lambda * skill_sd             | no                           |
| `rlsd`       | rlsd_policy_gradient (teacher-reweighted advantages)     | no                           |
| `sft`        | sft (negative log-likelihood of the response)            | as the RL stage              |

Every algorithm also gets `kl_coef * kl` when `algo.kl_coef > 0` and `entropy_coef * entropy_bonus`
when `algo.entropy_coef > 0` (`objective_terms`), as the reference adds both to every loss.

Adding an algorithm = its term function (if new) + one `ALGORITHMS` entry + a test.

Metrics: every term reports token means over the whole mini-batch, computed on its micro-batch
with the mini-batch's token count, so the trainer adds them up across micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from sdar_agent.config import AlgoConfig
from sdar_agent.distill import (
    GATES,
    divergence_loss,
    rlsd_advantages,
    rlsd_lambda_at,
    sdar_loss,
    skill_sd_loss,
    token_divergence_chunked,
)
from sdar_agent.losses import approx_kl, kl_loss, ppo_clip_loss, token_mean

Metrics = dict[str, torch.Tensor]


@dataclass
class MicroBatch:
    """One micro-batch, named. Per-token tensors are (B, T) over response tokens, right-aligned."""

    logp: torch.Tensor  # log pi_theta(y_t), with gradient
    old_logp: torch.Tensor  # log pi_old(y_t): the policy that sampled the rollouts (no gradient)
    adv: torch.Tensor  # (B,) each sample's advantage
    mask: torch.Tensor  # 1 on real response tokens
    n_tokens: float  # response tokens in the whole mini-batch: the token-mean denominator
    entropy: torch.Tensor  # the student's per-token entropy (with its gradient under `entropy_grad`)
    step: int = 1  # the training step this update belongs to, counted from 1 (schedules)
    temperature: float = 1.0  # the sampling temperature every distribution here is taken at
    teacher_logp: torch.Tensor | None = None  # `teacher`
    ref_logp: torch.Tensor | None = None  # `reference`
    hidden: torch.Tensor | None = None  # `full_logits`: (B, T, H) student states that predict y_t
    teacher_hidden: torch.Tensor | None = None  # `full_logits`: (B, T, H)
    head: torch.Tensor | None = None  # `full_logits`: (V, H) the LM head's weight

    def mean(self, x: torch.Tensor | float) -> torch.Tensor:
        """This micro-batch's share of the mini-batch token mean of `x` (a tensor or a constant)."""
        x = torch.as_tensor(x, dtype=self.mask.dtype, device=self.mask.device)
        return token_mean(x.expand_as(self.mask), self.mask, self.n_tokens).detach()


TermFn = Callable[..., tuple[torch.Tensor, Metrics]]


def _no_needs(cfg: AlgoConfig) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class Term:
    """One weighted part of an algorithm's loss."""

    name: str
    fn: TermFn
    weight: str | float = 1.0
    """A number, or the name of the `AlgoConfig` field that holds it (e.g. "sdar_lambda")."""
    needs: Callable[[AlgoConfig], frozenset[str]] = _no_needs
    """What the trainer must compute for this term, given the settings."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Fixed keyword arguments of `fn` (e.g. grpo_opsd's beta = 0)."""

    def weight_in(self, cfg: AlgoConfig) -> float:
        return float(getattr(cfg, self.weight) if isinstance(self.weight, str) else self.weight)


# ------------------------------------------------------------------------------ terms
def policy_gradient(mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """PPO-clip on the sequence advantages (GRPO's actor loss)."""
    return _clipped_pg(mb, mb.adv, cfg)


def rlsd_policy_gradient(mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """PPO-clip on RLSD's teacher-reweighted token advantages (lambda decays with the step)."""
    lam = rlsd_lambda_at(mb.step, cfg.rlsd_lambda, cfg.rlsd_decay_steps)  # step counted from 1
    adv = rlsd_advantages(mb.adv, mb.old_logp, _need(mb.teacher_logp, "teacher"), lam=lam, clip=cfg.rlsd_clip)
    loss, metrics = _clipped_pg(mb, adv, cfg)
    return loss, {**metrics, "rlsd/lambda": mb.mean(lam)}


def _clipped_pg(mb: MicroBatch, adv: torch.Tensor, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    pg = ppo_clip_loss(mb.logp, mb.old_logp, adv, mb.mask, clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high,
                       clip_ratio_c=cfg.clip_ratio_c, n_tokens=mb.n_tokens)
    return pg.loss, {"actor/pg_loss": pg.loss.detach(), "actor/clipfrac": mb.mean(pg.clipped.float()),
                     "actor/dual_clipfrac": mb.mean(pg.dual_clipped.float()),
                     "actor/ppo_kl": mb.mean(approx_kl(mb.logp, mb.old_logp))}


def gated_distillation(mb: MicroBatch, cfg: AlgoConfig, beta: float | None = None) -> tuple[torch.Tensor, Metrics]:
    """SDAR's term token_mean(g_t (log pi_T - log pi_theta)) with its gate and divergence ablations.

    `beta` overrides `cfg.sdar_beta` (grpo_opsd: 0, a constant gate of 0.5).
    """
    teacher_logp = _need(mb.teacher_logp, "teacher")
    delta = (teacher_logp - mb.logp).detach()
    beta = cfg.sdar_beta if beta is None else beta
    gate = GATES[cfg.gate](delta, mb.entropy.detach(), beta)
    if cfg.divergence == "reverse_kl":
        loss = sdar_loss(mb.logp, teacher_logp, gate, mb.mask, mb.n_tokens)
    else:
        divergence = token_divergence_chunked(_need(mb.hidden, "full_logits"), _need(mb.teacher_hidden, "full_logits"),
                                              _need(mb.head, "full_logits"), cfg.divergence, cfg.divergence_chunk,
                                              mb.temperature)
        loss = divergence_loss(divergence, gate, mb.mask, mb.n_tokens)
    return loss, {
        "sdar/loss": loss.detach(),
        "sdar/gate_mean": mb.mean(gate),
        "sdar/gate_active_ratio": mb.mean((gate > 0.5).float()),
        "sdar/teacher_gap_mean": mb.mean(delta),
    }


def skill_sd(mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """Skill-SD's k3 KL to the teacher, weighted by the (differentiable) importance ratio."""
    loss = skill_sd_loss(mb.logp, _need(mb.teacher_logp, "teacher"), mb.old_logp, mb.mask, n_tokens=mb.n_tokens)
    return loss, {"skill_sd/loss": loss.detach()}


def kl(mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """The low-variance KL to the reference policy."""
    loss = kl_loss(mb.logp, _need(mb.ref_logp, "reference"), mb.mask, mb.n_tokens)
    return loss, {"actor/kl": loss.detach()}


def entropy_bonus(mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """-token_mean(entropy): weighted by entropy_coef, it rewards a spread-out policy."""
    assert mb.entropy.requires_grad or not mb.logp.requires_grad, "entropy_bonus needs 'entropy_grad'"
    return -token_mean(mb.entropy, mb.mask, mb.n_tokens), {}


def sft(mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """Supervised fine-tuning: token_mean(-log pi_theta(y_t)) over the response tokens only."""
    loss = token_mean(-mb.logp, mb.mask, mb.n_tokens)
    return loss, {"sft/loss": loss.detach()}


def _need(x: torch.Tensor | None, what: str) -> torch.Tensor:
    assert x is not None, f"this term needs {what!r}; its Term entry must list it"
    return x


# ------------------------------------------------------------------------------ the table
def _teacher(cfg: AlgoConfig) -> frozenset[str]:
    return frozenset({"teacher"})


def _distillation_needs(cfg: AlgoConfig) -> frozenset[str]:
    return frozenset({"teacher", "full_logits"} if cfg.divergence != "reverse_kl" else {"teacher"})


def _reference(cfg: AlgoConfig) -> frozenset[str]:
    return frozenset({"reference"})


PG = Term("policy_gradient", policy_gradient)
DISTILL = Term("gated_distillation", gated_distillation, "sdar_lambda", _distillation_needs)


@dataclass(frozen=True)
class Algorithm:
    """An algorithm: its loss terms, and whether the student's own prompt carries the skills."""

    terms: tuple[Term, ...]
    skills_in_student: bool = False

    def needs(self, cfg: AlgoConfig) -> frozenset[str]:
        return frozenset().union(*(t.needs(cfg) for t in objective_terms(self, cfg)))

    def uses_skills(self, cfg: AlgoConfig) -> bool:
        """Whether rollouts retrieve skills (for the teacher's prompt or the student's)."""
        return self.skills_in_student or "teacher" in self.needs(cfg)


ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm((PG,)),
    "sdar": Algorithm((PG, DISTILL)),
    "opsd": Algorithm((DISTILL,)),
    "grpo_opsd": Algorithm((PG, Term("gated_distillation", gated_distillation, "sdar_lambda", _distillation_needs,
                                     {"beta": 0.0}))),
    "skill_grpo": Algorithm((PG,), skills_in_student=True),
    "skill_sd": Algorithm((PG, Term("skill_sd", skill_sd, "skill_sd_lambda", _teacher))),
    "rlsd": Algorithm((Term("rlsd_policy_gradient", rlsd_policy_gradient, needs=_teacher),)),
    "sft": Algorithm((Term("sft", sft),)),
}
KL = Term("kl", kl, "kl_coef", _reference)
ENTROPY = Term("entropy_bonus", entropy_bonus, "entropy_coef", lambda cfg: frozenset({"entropy_grad"}))


def objective_terms(algorithm: Algorithm, cfg: AlgoConfig) -> tuple[Term, ...]:
    """The algorithm's terms plus the ones every algorithm gets from the settings (KL, entropy bonus)."""
    return algorithm.terms + ((KL,) if cfg.kl_coef > 0 else ()) + ((ENTROPY,) if cfg.entropy_coef > 0 else ())


def total_loss(terms: tuple[Term, ...], mb: MicroBatch, cfg: AlgoConfig) -> tuple[torch.Tensor, Metrics]:
    """sum_i w_i * term_i(mb), and every term's metrics (plus the policy's entropy)."""
    loss = torch.zeros((), device=mb.logp.device)
    metrics: Metrics = {}
    for term in terms:
        value, parts = term.fn(mb, cfg, **term.options)
        loss = loss + term.weight_in(cfg) * value
        metrics.update(parts)
    metrics["actor/entropy"] = mb.mean(mb.entropy.detach())
    return loss, metrics
