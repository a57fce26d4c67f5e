"""From what the envs said to what the loss weighs: turn scores, then group-relative advantages.

`turn_scores` applies the reward settings (`win_reward`, `reward=env|won`, the invalid-action
penalty) to the raw per-turn outcomes that `rollout.collect` recorded; `grpo_advantages`
normalises the scores within each GRPO group (Shao et al., 2024, DeepSeekMath; verl-agent's
grouping). Both are pure functions of (N,) tensors, one entry per turn sample.
"""

from __future__ import annotations

from typing import Literal

import torch

REWARD_MODES = ("env", "won")


def turn_rewards(env_rewards: torch.Tensor, won: torch.Tensor, *, win_reward: float,
                 reward: Literal["env", "won"] = "env") -> torch.Tensor:
    """r_t, each turn's training reward: (N,) -> (N,) float64.

    `reward="env"`: r_t = win_reward * env_reward_t (ALFWorld: 10 on the winning turn);
    `reward="won"`: r_t = win_reward on the turn that wins the episode, 0 elsewhere (verl-agent's
    WebShop: 10 only for a purchase that scores 1.0, whatever the env's own reward).
    """
    if reward not in REWARD_MODES:
        raise ValueError(f"reward={reward!r}: expected one of {list(REWARD_MODES)}.")
    source = won.double() if reward == "won" else env_rewards.double()
    return win_reward * source


def trajectory_returns(rewards: torch.Tensor, trajs: torch.Tensor) -> torch.Tensor:
    """R for each sample: the sum of r_t over the sample's trajectory. (N,), (N,) -> (N,)."""
    ids, index = torch.unique(trajs, return_inverse=True)
    sums = torch.zeros(len(ids), dtype=rewards.dtype).index_add_(0, index, rewards)
    return sums[index]


def turn_scores(rewards: torch.Tensor, valid: torch.Tensor, trajs: torch.Tensor, *,
                invalid_penalty: float) -> torch.Tensor:
    """score_t = R - invalid_penalty * [turn t's response was malformed] (verl-agent's projection).

    Every turn is scored with its trajectory's return R; a turn whose response broke the answer
    format also pays the penalty (0.1 in the reference). (N,) x 3 -> (N,) float64.
    """
    return trajectory_returns(rewards, trajs) - invalid_penalty * (~valid.bool()).double()


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
    group of one score has mean 0 and std 1, so its advantage is its score (as the reference).
    Returns (N,) advantages.
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
        if ref.numel() > 1:
            mean, std = ref.mean(), ref.std()
        else:
            mean, std = torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)
        centred = scores64[in_group] - mean
        adv[in_group] = centred / (std + eps) if norm_by_std else centred
    return adv.float()
