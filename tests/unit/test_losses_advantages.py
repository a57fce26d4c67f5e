"""GRPO's pieces against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the trainer's losses need torch (pip install 'sdar[train]')")

from sdar_agent.advantages import grpo_advantages, trajectory_returns, turn_rewards, turn_scores  # noqa: E402
from sdar_agent.losses import MAX_LOG_RATIO, approx_kl, kl_loss, low_var_kl, ppo_clip_loss, token_mean  # noqa: E402


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_ppo_clip_loss_by_hand():
    # token 1: ratio 1.5, A=+1 -> max(-1.5, -1.2) = -1.2 (clipped); token 2: ratio 0.5, A=+1 -> max(-0.5, -0.8) = -0.5
    logp, old = t([math.log(1.5), math.log(0.5)]), t([0.0, 0.0])
    loss, clipped, _ = ppo_clip_loss(logp, old, torch.tensor([1.0]), t([1.0, 1.0]), clip_eps=0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert clipped.tolist() == [[True, False]]  # clipfrac 0.5
    # negative advantage, ratio 1.5: max(1.5, 1.2) = 1.5 (no clip on that side)
    loss, *_ = ppo_clip_loss(t([math.log(1.5)]), t([0.0]), torch.tensor([-1.0]), t([1.0]), clip_eps=0.2)
    assert loss.item() == pytest.approx(1.5)
    # clip-higher: upper bound 1 + 0.28
    one = t([1.0])
    loss, *_ = ppo_clip_loss(t([math.log(1.5)]), t([0.0]), torch.tensor([1.0]), one, clip_eps=0.2, clip_eps_high=0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_ppo_clip_loss_masks_and_token_mean_over_the_minibatch():
    logp, old = t([0.0, 5.0], [0.0, 0.0]), t([0.0, 0.0], [0.0, 0.0])
    mask = t([1.0, 0.0], [1.0, 1.0])  # the masked token's huge ratio must not count
    adv = torch.tensor([2.0, -1.0])
    loss, *_ = ppo_clip_loss(logp, old, adv, mask)
    assert loss.item() == pytest.approx((-2.0 + 1.0 + 1.0) / 3)
    half, *_ = ppo_clip_loss(logp, old, adv, mask, n_tokens=6)  # micro-batch of a 6-token mini-batch
    assert half.item() == pytest.approx((-2.0 + 1.0 + 1.0) / 6)


def test_gradient_of_the_unclipped_loss_is_minus_advantage():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, *_ = ppo_clip_loss(logp, torch.zeros(1, 2), torch.tensor([3.0]), torch.ones(1, 2))
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1.5, -1.5]]))  # d/dlogp of -A*ratio / 2 tokens


def test_the_log_ratio_is_clamped_before_exp():
    # log-ratio 1000: exp would overflow to inf (and inf * 0 = nan in the gradient); clamped at 20 it stays finite
    logp = torch.tensor([[1000.0, -1000.0]], requires_grad=True)
    pg = ppo_clip_loss(logp, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2))
    assert pg.loss.item() == pytest.approx((math.exp(MAX_LOG_RATIO) + 0.8) / 2)  # token 2: max(e^-20, 0.8)
    pg.loss.backward()
    assert torch.isfinite(logp.grad).all()
    # the dual clip caps the first token at -A * c and says so
    pg = ppo_clip_loss(logp, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2), clip_ratio_c=3.0)
    assert pg.loss.item() == pytest.approx((3.0 + 0.8) / 2)
    assert pg.dual_clipped.tolist() == [[True, False]] and pg.clipped.tolist() == [[False, True]]


def test_approx_kl_is_old_minus_new_log_prob():
    assert approx_kl(t([-1.0, -2.0]), t([-1.5, -1.0])).tolist() == [[-0.5, 1.0]]


def test_low_var_kl_by_hand():
    # r = log 0.25 - log 0.5 = -log 2: exp(r) - r - 1 = 0.5 + log 2 - 1
    k3 = low_var_kl(t([math.log(0.5)]), t([math.log(0.25)]))
    assert k3.item() == pytest.approx(0.5 + math.log(2) - 1)
    assert low_var_kl(t([-1.0]), t([-1.0])).item() == 0.0
    assert kl_loss(t([0.0, -1.0]), t([0.0, -2.0]), t([1.0, 0.0])).item() == 0.0
    assert low_var_kl(t([0.0]), t([50.0])).item() == 10.0  # clamped


def test_token_mean():
    assert token_mean(t([1.0, 2.0, 3.0]), t([1.0, 1.0, 0.0])).item() == pytest.approx(1.5)
    assert token_mean(t([1.0]), t([0.0])).item() == 0.0


def test_grpo_step_and_trajectory_normalisation_by_hand():
    # one group; trajectory 0 has three turns scoring 2, trajectory 1 one turn scoring 0
    scores, trajs = torch.tensor([2.0, 2.0, 2.0, 0.0]), torch.tensor([0, 0, 0, 1])
    groups = torch.zeros(4, dtype=torch.long)
    step = grpo_advantages(scores, groups, trajs, mode="step", eps=0.0)
    # mean 1.5; unbiased std sqrt((3 * 0.25 + 2.25) / 3) = 1
    assert torch.allclose(step, torch.tensor([0.5, 0.5, 0.5, -1.5]))
    traj = grpo_advantages(scores, groups, trajs, mode="trajectory", eps=0.0)
    # trajectory returns [2, 0]: mean 1, std sqrt(2)
    assert torch.allclose(traj, torch.tensor([1, 1, 1, -1]) / math.sqrt(2))
    no_std = grpo_advantages(scores, groups, trajs, mode="trajectory", norm_by_std=False)
    assert torch.allclose(no_std, torch.tensor([1.0, 1.0, 1.0, -1.0]))


def test_grpo_groups_are_independent_and_penalties_count():
    scores = torch.tensor([10.0, 10.0 - 0.1, 0.0, 5.0, 5.0])
    groups, trajs = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 0, 1, 2, 3])
    adv = grpo_advantages(scores, groups, trajs)
    assert adv[0] > adv[1] > 0 > adv[2]  # the invalid turn gets less than its valid sibling
    assert torch.allclose(adv[3:], torch.zeros(2))  # equal returns: no signal
    single = grpo_advantages(torch.tensor([4.0]), torch.tensor([0]), torch.tensor([0]))
    assert single.item() == pytest.approx(4.0 / (1 + 1e-6))  # a group of one: mean 0, std 1 (the reference)


def test_grpo_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="1-D of one length"):
        grpo_advantages(torch.zeros(3), torch.zeros(2), torch.zeros(3))


def test_equal_scores_give_exactly_zero_advantage():
    scores = torch.full((12,), -0.1)  # every turn invalid: no learning signal, not float noise
    adv = grpo_advantages(scores, torch.zeros(12, dtype=torch.long), torch.arange(12) // 3)
    assert torch.count_nonzero(adv) == 0


@pytest.mark.parametrize("mode, expected", [("env", [0.0, 7.5, 10.0]), ("won", [0.0, 0.0, 10.0])])
def test_reward_modes_env_reward_or_win_only(mode, expected):
    # a WebShop-like trajectory: a 0.75 purchase; then a second trajectory whose purchase wins (score 1.0)
    env_rewards, won = torch.tensor([0.0, 0.75, 1.0]), torch.tensor([False, False, True])
    rewards = turn_rewards(env_rewards, won, win_reward=10.0, reward=mode)
    assert rewards.tolist() == expected
    with pytest.raises(ValueError, match="reward='bogus'"):
        turn_rewards(env_rewards, won, win_reward=10.0, reward="bogus")


def test_turn_scores_are_the_trajectory_return_minus_each_turns_penalty():
    rewards = torch.tensor([0.0, 10.0, 0.0, 0.0], dtype=torch.float64)
    trajs, valid = torch.tensor([0, 0, 1, 1]), torch.tensor([True, False, True, False])
    assert trajectory_returns(rewards, trajs).tolist() == [10.0, 10.0, 0.0, 0.0]
    scores = turn_scores(rewards, valid, trajs, invalid_penalty=0.1)
    assert torch.allclose(scores, torch.tensor([10.0, 9.9, 0.0, -0.1], dtype=torch.float64))
