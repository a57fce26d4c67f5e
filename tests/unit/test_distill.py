"""SDAR's self-distillation family against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the trainer's losses need torch (pip install 'sdar[train]')")

from sdar_agent.distill import (  # noqa: E402
    GATES,
    divergence_loss,
    rlsd_advantages,
    rlsd_lambda_at,
    sdar_loss,
    skill_sd_loss,
    token_divergence_chunked,
    token_divergence_dense,
)


def test_gap_gate_by_hand_and_beta_zero_is_one_half():
    delta = torch.tensor([[0.0, 0.2, -0.4]])
    gate = GATES["gap"](delta, torch.zeros_like(delta), 5.0)
    assert torch.allclose(gate, torch.sigmoid(torch.tensor([[0.0, 1.0, -2.0]])))
    assert torch.all(GATES["gap"](torch.randn(4, 7), torch.rand(4, 7), 0.0) == 0.5)


def test_ablation_gates_by_hand():
    delta, h = torch.tensor([0.5]), torch.tensor([2.0])
    assert GATES["entropy"](delta, h, 1.0).item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    # soft OR: sigmoid(beta * [1 - (1 - h)(1 - delta)]) = sigmoid(2 * [1 - (-1)(0.5)]) = sigmoid(3)
    assert GATES["soft_or"](delta, h, 2.0).item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_gate_is_detached_and_the_update_is_a_gate_weighted_log_likelihood():
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]])).requires_grad_(True)
    teacher = torch.log(torch.tensor([[0.4, 0.5, 0.3]]))
    delta = (teacher - logp).detach()
    gate = GATES["gap"](teacher - logp, torch.zeros(1, 3), 5.0)  # built from a graph: must still be cut
    assert not gate.requires_grad
    mask = torch.ones(1, 3)
    loss = sdar_loss(logp, teacher, gate, mask)
    assert loss.item() == pytest.approx((gate * delta).mean().item())
    loss.backward()
    assert torch.allclose(logp.grad, -gate / 3)  # d/dlogp of mean(g * (t - logp)) with g, t constant
    # the same gradient as minimising -mean(g * logp): a gate-weighted log-likelihood
    logp2 = logp.detach().clone().requires_grad_(True)
    (-(gate * logp2).mean()).backward()
    assert torch.allclose(logp.grad, logp2.grad)


def test_sdar_loss_respects_the_mask_and_token_budget():
    logp, teacher = torch.zeros(1, 2), torch.tensor([[1.0, 100.0]])
    gate, mask = torch.ones(1, 2), torch.tensor([[1.0, 0.0]])
    assert sdar_loss(logp, teacher, gate, mask).item() == pytest.approx(1.0)
    assert sdar_loss(logp, teacher, gate, mask, n_tokens=4).item() == pytest.approx(0.25)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_chunked_divergences_equal_the_dense_computation(kind):
    torch.manual_seed(0)
    b, t, h, v = 2, 7, 5, 11
    head = torch.randn(v, h, requires_grad=True)
    s_hidden = torch.randn(b, t, h, requires_grad=True)
    t_hidden = torch.randn(b, t, h)
    dense = token_divergence_dense(s_hidden @ head.T, t_hidden @ head.T, kind)
    chunked = token_divergence_chunked(s_hidden, t_hidden, head, kind, chunk=3)
    assert torch.allclose(dense, chunked, atol=1e-6)
    assert torch.all(dense >= -1e-6)
    g_dense = torch.autograd.grad(dense.sum(), [s_hidden, head])
    g_chunk = torch.autograd.grad(chunked.sum(), [s_hidden, head])
    for a, c in zip(g_dense, g_chunk, strict=True):
        assert torch.allclose(a, c, atol=1e-5)


def test_divergences_by_hand():
    p = torch.tensor([[[math.log(0.5), math.log(0.5)]]])  # student
    q = torch.tensor([[[math.log(0.25), math.log(0.75)]]])  # teacher
    fkl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    rkl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    m = [0.375, 0.625]
    jsd = 0.5 * (0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])) + 0.5 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    for kind, value in (("forward_kl", fkl), ("reverse_kl", rkl), ("jsd", jsd)):
        assert token_divergence_dense(p, q, kind).item() == pytest.approx(value, abs=1e-6)
    d = token_divergence_dense(p, q, "forward_kl")[0]
    assert divergence_loss(d, torch.tensor([0.5]), torch.tensor([1.0])).item() == pytest.approx(0.5 * fkl, abs=1e-6)
    with pytest.raises(ValueError, match="divergence 'tv'"):
        token_divergence_dense(p, q, "tv")


def test_skill_sd_by_hand():
    logp = torch.tensor([[math.log(0.5)]])
    teacher = torch.tensor([[math.log(0.25)]])
    # l = log 2; k3 = exp(-l) - 1 + l = 0.5 - 1 + log 2; ratio exp(0) = 1
    loss = skill_sd_loss(logp, teacher, logp, torch.ones(1, 1))
    assert loss.item() == pytest.approx(0.5 - 1 + math.log(2))
    # ratio exp(1), not clipped (the reference's importance weight)
    loss = skill_sd_loss(logp, teacher, logp - 1.0, torch.ones(1, 1))
    assert loss.item() == pytest.approx(math.e * (0.5 - 1 + math.log(2)), rel=1e-6)
    # ... but its log is capped at 10
    assert skill_sd_loss(logp, teacher, logp - 50.0, torch.ones(1, 1)).item() == pytest.approx(
        math.exp(10) * (0.5 - 1 + math.log(2)), rel=1e-5)
    assert skill_sd_loss(teacher, teacher, teacher, torch.ones(1, 1)).item() == 0.0  # k3(0) = 0


def test_rlsd_token_advantages_by_hand():
    logp = torch.zeros(2, 2)
    teacher = torch.log(torch.tensor([[1.1, 2.0], [1.1, 2.0]]))
    adv = rlsd_advantages(torch.tensor([1.0, -1.0]), logp, teacher, lam=0.5, clip=0.2)
    # A=+1: w = [1.1, clip(2)=1.2]; A=-1: w = [1/1.1, clip(0.5)=0.8]
    expected = torch.tensor([[0.5 + 0.5 * 1.1, 0.5 + 0.5 * 1.2], [-(0.5 + 0.5 / 1.1), -(0.5 + 0.5 * 0.8)]])
    assert torch.allclose(adv, expected)
    assert torch.allclose(rlsd_advantages(torch.tensor([3.0]), logp[:1], teacher[:1], lam=0.0), torch.full((1, 2), 3.0))
    # steps count from 1, as the reference's global step: the first update already uses 0.495
    assert [rlsd_lambda_at(s) for s in (1, 50, 99, 100, 150)] == pytest.approx([0.495, 0.25, 0.005, 0.0, 0.0])
