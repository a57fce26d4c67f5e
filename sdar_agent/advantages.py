"""Group-relative advantages (GRPO; Shao et al., 2024, DeepSeekMath; verl-agent's grouping)."""

from __future__ import annotations

from typing import Literal

import torch


def grpo_advantages(
    scores: torch.Tensor,
    groups: torch.Tensor,
    trajs: torch.Tensor,
    *,
    mode: Literal["step", "trajectory"] = "step",
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """A_i = (s_i - mean_g) / (std_g + eps) for sample i in group g.

    scores: (N,) each sample's score (its trajectory's return, minus its invalid-action penalty);
    groups: (N,) group id (the rollouts of one task); trajs: (N,) trajectory id.

    `mode="step"` takes mean and std over all step samples of the group (verl-agent's default:
    long trajectories weigh more); `mode="trajectory"` over the group's trajectories, one return
    each (the trajectory's first sample stands for it). std is the unbiased standard deviation; a
    group of one has mean = its score and std = 1. Returns (N,) advantages.
    """
    if not (scores.shape == groups.shape == trajs.shape) or scores.dim() != 1:
        raise ValueError(f"scores, groups, trajs must be 1-D of one length; got {scores.shape}, "
                         f"{groups.shape}, {trajs.shape}.")
    # float64: with equal scores, float32 rounding in the mean (~1e-8) divided by std + eps (~1e-6)
    # would be a fake advantage of ~1e-2.
    scores64 = scores.double()
    adv = torch.empty_like(scores64)
    for g in torch.unique(groups):
        in_group = groups == g
        if mode == "trajectory":
            firsts: dict[int, int] = {}
            for i in torch.nonzero(in_group).flatten().tolist():
                firsts.setdefault(int(trajs[i]), i)
            ref = scores64[list(firsts.values())]
        else:
            ref = scores64[in_group]
        mean = ref.mean()
        std = ref.std() if ref.numel() > 1 else torch.tensor(1.0, dtype=torch.float64)
        centred = scores64[in_group] - mean
        adv[in_group] = centred / (std + eps) if norm_by_std else centred
    return adv.float()
