"""The reference recipe's formulas (ZJU-REAL/SDAR@8b85c23, a verl-agent fork), transcribed here from
their definitions, against the project's terms on identical inputs: values and gradients.

Each `ref_*` function restates one formula of the reference in plain torch, token-mean aggregated
over one micro-batch as the reference's `agg_loss(..., "token-mean")` does.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

torch = pytest.importorskip("torch", reason="the trainer's losses need torch (pip install 'sdar[train]')")

from sdar_agent.advantages import grpo_advantages  # noqa: E402
from sdar_agent.config import AlgoConfig  # noqa: E402
from sdar_agent.losses import entropy_from_logits, ppo_clip_loss  # noqa: E402
from sdar_agent.objective import ALGORITHMS, MicroBatch, objective_terms, total_loss  # noqa: E402


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def ref_policy_loss(old_logp, logp, adv, mask, clip=0.2, clip_c=3.0):
    """verl's dual-clip PPO: max of the two PPO terms, capped at -A * c where A < 0."""
    ratio = torch.exp(logp - old_logp)
    loss1, loss2 = -adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)
    clipped = torch.max(loss1, loss2)
    dual = torch.min(-adv * clip_c, clipped)
    return masked_mean(torch.where(adv < 0, dual, clipped), mask)


def ref_sdar(student, teacher, mask, beta=5.0):
    """compute_sdar_loss: the gate and the teacher are constants; the log-ratio keeps its gradient."""
    teacher = teacher.detach()
    gate = torch.sigmoid(beta * (teacher - student.detach()))
    return masked_mean(gate * (teacher - student), mask)


def ref_sdl(student, teacher, old, mask):
    """compute_sdl_loss (Skill-SD): on-policy ratio (log capped at 10) times k3 (exponent capped at 20)."""
    ell = student - teacher.detach()
    k3 = torch.exp((-ell).clamp(max=20.0)) - 1.0 + ell
    rho = torch.exp((student - old.detach()).clamp(max=10.0))
    return masked_mean(rho * k3, mask)


def ref_rlsd_advantages(seq_adv, old, teacher, lam, eps=0.2):
    """compute_rlsd_token_advantage, with the reference's student log-probs = the old log-probs."""
    weight = torch.clamp(torch.exp(torch.sign(seq_adv)[:, None] * (teacher - old)), 1 - eps, 1 + eps)
    return seq_adv[:, None] * ((1 - lam) + lam * weight)


def ref_grpo(scores, index, traj, eps=1e-6, cross_steps=True):
    """compute_grpo_outcome_advantage: a group of one score gets mean 0 and std 1."""
    by_group, seen = defaultdict(list), set()
    for i, s in enumerate(scores.tolist()):
        if (index[i], traj[i]) in seen:
            continue
        by_group[index[i]].append(s)
        if not cross_steps:
            seen.add((index[i], traj[i]))
    stats = {g: (0.0, 1.0) if len(v) == 1 else (torch.tensor(v).mean().item(), torch.tensor(v).std().item())
             for g, v in by_group.items()}
    return torch.tensor([(s - stats[index[i]][0]) / (stats[index[i]][1] + eps) for i, s in enumerate(scores.tolist())])


@pytest.fixture
def batch():
    torch.manual_seed(3)
    logits = torch.randn(3, 5, 11, requires_grad=True)  # (B, T, V): the policy's logits on the response
    targets = torch.randint(0, 11, (3, 5))
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=torch.float32)
    old = (torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1) + torch.randn(3, 5) * 0.3).detach()
    teacher = (old + torch.randn(3, 5) * 0.5).detach()
    adv = torch.tensor([1.5, -0.7, -2.0])
    return logits, targets, mask, old, teacher, adv


def ours(algo: str, batch, step: int = 1, **settings):
    """Our objective for `algo` on the batch: its value and its gradient w.r.t. the logits."""
    logits, targets, mask, old, teacher, adv = batch
    logits.grad = None
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    cfg = AlgoConfig(**settings)
    entropy = entropy_from_logits(logits) if cfg.entropy_coef else entropy_from_logits(logits).detach()
    mb = MicroBatch(logp=logp, old_logp=old, adv=adv, mask=mask, n_tokens=float(mask.sum()), entropy=entropy,
                    step=step, teacher_logp=teacher)
    loss, _ = total_loss(objective_terms(ALGORITHMS[algo], cfg), mb, cfg)
    loss.backward()
    return loss.detach(), logits.grad.clone()


def reference(fn, batch):
    logits, targets, *_ = batch
    logits.grad = None
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    loss = fn(logits, logp)
    loss.backward()
    return loss.detach(), logits.grad.clone()


def assert_same(a, b):
    (va, ga), (vb, gb) = a, b
    assert torch.allclose(va, vb, rtol=5e-5, atol=1e-7), (va, vb)
    assert torch.allclose(ga, gb, rtol=5e-5, atol=1e-7), (ga - gb).abs().max()


def test_dual_clip_and_entropy_bonus_as_the_reference(batch):
    _, _, mask, old, _, adv = batch
    got = ours("grpo", batch, clip_ratio_c=3.0, entropy_coef=0.001)
    want = reference(lambda logits, logp: ref_policy_loss(old, logp, adv[:, None].expand(3, 5), mask)
                     - 0.001 * masked_mean(entropy_from_logits(logits), mask), batch)
    assert_same(got, want)
    # and our dual clip really acts: a negative advantage on a token whose ratio exploded
    huge = ppo_clip_loss(torch.full((1, 1), 3.0), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1),
                         clip_ratio_c=3.0)
    assert huge.loss.item() == pytest.approx(3.0)  # capped at -A * c, not -A * e^3
    assert huge.dual_clipped.tolist() == [[True]]


def test_sdar_and_opsd_as_the_reference(batch):
    _, _, mask, old, teacher, adv = batch
    pg = lambda logp: ref_policy_loss(old, logp, adv[:, None].expand(3, 5), mask, clip_c=1e9)  # noqa: E731
    assert_same(ours("sdar", batch), reference(lambda _, logp: pg(logp) + 0.01 * ref_sdar(logp, teacher, mask), batch))
    # OPSD: the reference runs SDAR's loss with pg_loss_coef = 0 (gated, beta 5, lambda 0.01)
    assert_same(ours("opsd", batch), reference(lambda _, logp: 0.01 * ref_sdar(logp, teacher, mask), batch))
    assert_same(ours("grpo_opsd", batch),
                reference(lambda _, logp: pg(logp) + 0.01 * ref_sdar(logp, teacher, mask, beta=0.0), batch))


def test_skill_sd_as_the_reference(batch):
    _, _, mask, old, teacher, adv = batch
    pg = lambda logp: ref_policy_loss(old, logp, adv[:, None].expand(3, 5), mask, clip_c=1e9)  # noqa: E731
    assert_same(ours("skill_sd", batch),
                reference(lambda _, logp: pg(logp) + 0.001 * ref_sdl(logp, teacher, old, mask), batch))


@pytest.mark.parametrize("step", [1, 40, 100])
def test_rlsd_as_the_reference(batch, step):
    _, _, mask, old, teacher, adv = batch
    lam = 0.5 * (1 - step / 100) if step < 100 else 0.0  # the reference's global step counts from 1
    token_adv = ref_rlsd_advantages(adv, old, teacher, lam)
    assert_same(ours("rlsd", batch, step=step),
                reference(lambda _, logp: ref_policy_loss(old, logp, token_adv, mask, clip_c=1e9), batch))


@pytest.mark.parametrize("mode", ["step", "trajectory"])
def test_grpo_advantages_as_the_reference(mode):
    scores = torch.tensor([10.0, 10.0, 9.9, 0.0, -0.1, 5.0, 3.0])
    groups = [0, 0, 0, 0, 0, 1, 2]  # group 1 and 2 hold one trajectory each
    trajs = [0, 0, 0, 1, 1, 2, 3]
    want = ref_grpo(scores, groups, trajs, cross_steps=mode == "step")
    got = grpo_advantages(scores, torch.tensor(groups), torch.tensor(trajs), mode=mode)
    assert torch.allclose(got, want.float(), atol=1e-5)
    assert got[-1].item() == pytest.approx(3.0, rel=1e-5)  # a group of one keeps its score


def test_paper_presets_set_the_reference_knobs():
    from sdar_agent.config import load_config

    for env in ("alfworld", "webshop", "searchqa"):
        cfg = load_config(f"{env}_sdar_qwen2.5-3b")
        assert (cfg.model.weights_dtype, cfg.model.compute_dtype) == ("float32", "bfloat16")
        assert (cfg.algo.mini_batch_size, cfg.algo.clip_ratio_c, cfg.algo.entropy_coef) == (256, 3.0, 0.001)
        assert cfg.algo.weight_decay == 0.01 and cfg.skills.placement == "prefix"
        assert cfg.skills.bank.startswith("sdar:")
    assert load_config("alfworld_grpo_qwen2.5-3b").env.val_splits == ["valid_seen", "valid_unseen"]
