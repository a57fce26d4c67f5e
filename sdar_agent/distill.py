"""Self-distillation losses: SDAR's gated term, its ablations, and the Skill-SD and RLSD baselines.

References: SDAR (arXiv 2605.15155) and its official code (`verl/trainer/ppo/sdar_utils.py`);
Skill-SD and RLSD as re-implemented in the SDAR code release. The teacher is the current policy
with privileged skills in its prompt, scoring the student's own sampled tokens; nothing flows back
through it.

Shapes: per-token tensors are (B, T) over response tokens with `mask` 1 on real tokens; hidden
states are (B, T, H); the LM head weight is (V, H).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from sdar_agent.losses import token_mean


# ------------------------------------------------------------------------------ gates
def gate_gap(delta: torch.Tensor, entropy: torch.Tensor, beta: float) -> torch.Tensor:
    """g_t = sg(sigmoid(beta * delta_t)), delta_t = log pi_T(y_t) - log pi_theta(y_t) (the default gate).

    Tokens the teacher likes more than the student (delta > 0) pass; beta = 0 is a constant 0.5.
    """
    return torch.sigmoid(beta * delta).detach()


def gate_entropy(delta: torch.Tensor, entropy: torch.Tensor, beta: float) -> torch.Tensor:
    """g_t = sg(sigmoid(beta * h_t)), h_t the student's entropy at t (ablation)."""
    return torch.sigmoid(beta * entropy).detach()


def gate_soft_or(delta: torch.Tensor, entropy: torch.Tensor, beta: float) -> torch.Tensor:
    """g_t = sg(sigmoid(beta * [1 - (1 - h_t)(1 - delta_t)])): high entropy or a teacher gap (ablation)."""
    return torch.sigmoid(beta * (1.0 - (1.0 - entropy) * (1.0 - delta))).detach()


GATES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "gap": gate_gap,
    "entropy": gate_entropy,
    "soft_or": gate_soft_or,
}


# ------------------------------------------------------------------------------ SDAR / OPSD
def sdar_loss(
    logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    gate: torch.Tensor,
    mask: torch.Tensor,
    n_tokens: float | None = None,
) -> torch.Tensor:
    """L_SDAR = token_mean( g_t * (sg(log pi_T(y_t)) - log pi_theta(y_t)) ), g_t detached.

    Its gradient is -g_t * grad log pi_theta(y_t): a gate-weighted log-likelihood of the student's
    own sampled tokens (the sampled-token form of the reverse KL). With g = 1 this is OPSD's term.
    """
    return token_mean(gate.detach() * (teacher_logp.detach() - logp), mask, n_tokens)


def token_divergence_dense(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token divergence over the whole vocabulary, (B, T, V) x 2 -> (B, T).

    forward_kl: KL(pi_T || pi_theta) = sum_v pi_T (log pi_T - log pi_theta)
    jsd: 0.5 KL(pi_T || M) + 0.5 KL(pi_theta || M), M = (pi_T + pi_theta) / 2
    reverse_kl: KL(pi_theta || pi_T) (the full-vocabulary form of SDAR's sampled-token term)
    The teacher side carries no gradient.
    """
    log_s = torch.log_softmax(student_logits.float(), dim=-1)
    log_t = torch.log_softmax(teacher_logits.float(), dim=-1).detach()
    if kind == "forward_kl":
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    if kind == "reverse_kl":
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    if kind == "jsd":
        log_m = torch.logsumexp(torch.stack([log_s, log_t]), dim=0) - torch.log(torch.tensor(2.0))
        return 0.5 * (log_t.exp() * (log_t - log_m)).sum(-1) + 0.5 * (log_s.exp() * (log_s - log_m)).sum(-1)
    raise ValueError(f"divergence {kind!r}: expected forward_kl, reverse_kl or jsd.")


def token_divergence_chunked(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    head_weight: torch.Tensor,
    kind: str,
    chunk: int = 64,
    temperature: float = 1.0,
) -> torch.Tensor:
    """`token_divergence_dense` from hidden states, `chunk` positions at a time: (B, T, H) x 2 -> (B, T).

    Both distributions are softmax(logits / `temperature`), the rollouts' sampling temperature.

    Each chunk's logits (B, chunk, V) are built, reduced and freed; in the backward pass they are
    recomputed (activation checkpointing), so memory is bounded by one chunk, not the sequence.
    """
    def piece(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return token_divergence_dense((s @ head_weight.T) / temperature, (t @ head_weight.T.detach()) / temperature,
                                      kind)

    out = []
    for start in range(0, student_hidden.shape[1], chunk):
        s = student_hidden[:, start : start + chunk]
        t = teacher_hidden[:, start : start + chunk].detach()
        if torch.is_grad_enabled() and s.requires_grad:
            out.append(checkpoint(piece, s, t, use_reentrant=False))
        else:
            out.append(piece(s, t))
    return torch.cat(out, dim=1)


def divergence_loss(divergence: torch.Tensor, gate: torch.Tensor, mask: torch.Tensor,
                    n_tokens: float | None = None) -> torch.Tensor:
    """token_mean(g_t * D_t) for a full-vocabulary per-token divergence D (the ablations' SDAR term)."""
    return token_mean(gate.detach() * divergence, mask, n_tokens)


# ------------------------------------------------------------------------------ baselines
def skill_sd_loss(
    logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    n_tokens: float | None = None,
) -> torch.Tensor:
    """Skill-SD (as the SDAR code release runs it): token_mean( rho_t * k3(l_t) ).

    l_t = log pi_theta(y_t) - sg(log pi_T(y_t)); k3(l) = exp(-l) - 1 + l (>= 0, the low-variance
    KL(pi_theta || pi_T) estimate; -l is capped at 20 inside the exp);
    rho_t = exp(min(log pi_theta - log pi_old, 10)): the on-policy importance ratio, unclipped and
    differentiable. Weighted by lambda = 0.001 outside.
    """
    ell = logp - teacher_logp.detach()
    k3 = torch.exp((-ell).clamp(max=20.0)) - 1.0 + ell
    rho = torch.exp((logp - old_logp.detach()).clamp(max=10.0))
    return token_mean(rho * k3, mask, n_tokens)


def rlsd_advantages(
    adv: torch.Tensor, old_logp: torch.Tensor, teacher_logp: torch.Tensor, *, lam: float, clip: float = 0.2
) -> torch.Tensor:
    """RLSD's token advantages: A_t = A * ((1 - lam) + lam * w_t), all detached.

    w_t = clip( exp(sign(A) * (log pi_T(y_t) - log pi_old(y_t))), 1 - clip, 1 + clip ): tokens
    the teacher favours get more credit when A > 0 and more blame when A < 0. The gap is taken
    against the rollout policy's (pre-update) log-probs, as the reference does. adv (B,) or (B, T);
    lam decays linearly from 0.5 to 0 over 100 steps (`rlsd_lambda_at`). Returns (B, T).
    """
    if adv.dim() == 1:
        adv = adv[:, None].expand_as(old_logp)  # (B,) -> (B, T)
    w = torch.exp(torch.sign(adv) * (teacher_logp - old_logp)).clamp(1.0 - clip, 1.0 + clip)
    return (adv * ((1.0 - lam) + lam * w)).detach()


def rlsd_lambda_at(step: int, start: float = 0.5, decay_steps: int = 100) -> float:
    """RLSD's lambda at training step `step`, counted from 1 as the reference does.

    lambda = start * (1 - step / decay_steps), and 0 from `decay_steps` on.
    """
    if decay_steps <= 0 or step >= decay_steps:
        return 0.0
    return start * (1.0 - step / decay_steps)
