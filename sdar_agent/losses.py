"""Policy-gradient losses as pure functions of per-token tensors.

Shapes: every tensor is (B, T) over response tokens, `mask` is 1 on real response tokens and 0
on padding. `token_mean` divides by `n_tokens`, the number of response tokens in the whole
mini-batch, so that micro-batches accumulate to the mini-batch's token mean (verl's
"token-mean" aggregation).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def token_mean(x: torch.Tensor, mask: torch.Tensor, n_tokens: float | None = None) -> torch.Tensor:
    """sum(x * mask) / n_tokens, with n_tokens = sum(mask) by default."""
    denominator = mask.sum() if n_tokens is None else torch.tensor(float(n_tokens))
    return (x * mask).sum() / denominator.clamp(min=1.0)


MAX_LOG_RATIO = 20.0
"""|log pi_theta - log pi_old| is clamped to this before `exp` (verl's bound): a ratio of e^20 is already
far outside any clip range, and the clamp keeps an extreme log-ratio from overflowing to inf."""


class PPOClip(NamedTuple):
    """`ppo_clip_loss`'s result: the loss and which tokens each clip acted on (no gradient)."""

    loss: torch.Tensor  # () token mean
    clipped: torch.Tensor  # (B, T) bool: PPO's clip was the larger term (verl's pg_clipfrac)
    dual_clipped: torch.Tensor  # (B, T) bool: the dual clip capped the loss (A < 0; verl's pg_clipfrac_lower)


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    clip_ratio_c: float = 0.0,
    n_tokens: float | None = None,
) -> PPOClip:
    """PPO's clipped surrogate (Schulman et al., 2017), token-mean aggregated, with optional dual clip.

    ratio_t = exp(clamp(logp_t - old_logp_t, -20, 20))
    l_t = max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - eps, 1 + eps_high))
    dual clip (Ye et al., 2020, `clip_ratio_c` = c > 1): l_t = min(l_t, -A_t * c) where A_t < 0,
    so a very unlikely token with a negative advantage cannot dominate the batch
    L = token_mean(l_t)

    `adv` is (B, T) (a sequence advantage broadcast over its tokens) or (B,). Returns the loss and
    the (B, T) masks of tokens where each clip acted (their shares are `clipfrac`, `dual_clipfrac`).
    """
    if adv.dim() == 1:
        adv = adv[:, None].expand_as(logp)  # (B,) -> (B, T)
    high = clip_eps if not clip_eps_high else clip_eps_high
    ratio = torch.exp(torch.clamp(logp - old_logp, -MAX_LOG_RATIO, MAX_LOG_RATIO))
    pg_loss1 = -adv * ratio
    pg_loss2 = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high)
    clipped = torch.maximum(pg_loss1, pg_loss2)
    dual = torch.zeros_like(clipped, dtype=torch.bool)
    if clip_ratio_c:
        cap = -adv * clip_ratio_c
        dual = (adv < 0) & (clipped > cap)
        clipped = torch.where(dual, cap, clipped)
    return PPOClip(token_mean(clipped, mask, n_tokens), (pg_loss2 > pg_loss1).detach(), dual.detach())


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate of KL(pi_old || pi_theta) = old_logp - logp (verl's `ppo_kl`), no gradient. (B, T)."""
    return (old_logp - logp).detach()


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate k3 = exp(r) - r - 1 with r = ref_logp - logp (Schulman, 2020).

    Unbiased, always >= 0, lower variance than log-ratio; clamped to [-10, 10] as verl does. (B, T).
    """
    r = ref_logp - logp
    return torch.clamp(torch.exp(r) - r - 1.0, min=-10.0, max=10.0)


def kl_loss(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, n_tokens: float | None = None
) -> torch.Tensor:
    """token_mean(k3(logp, ref_logp)): the KL-to-reference loss term (weighted by kl_coef outside)."""
    return token_mean(low_var_kl(logp, ref_logp), mask, n_tokens)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy of softmax(logits): (B, T, V) -> (B, T)."""
    logz = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return logz - (probs * logits).sum(dim=-1)
