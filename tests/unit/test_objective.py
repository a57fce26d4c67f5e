"""The objective table: which terms each algorithm sums, what they need, and how their metrics add up."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the trainer's losses need torch (pip install 'sdar[train]')")

from sdar_agent.config import AlgoConfig  # noqa: E402
from sdar_agent.losses import ppo_clip_loss  # noqa: E402
from sdar_agent.objective import ALGORITHMS, MicroBatch, objective_terms, total_loss  # noqa: E402


def micro_batch(**extra) -> MicroBatch:
    torch.manual_seed(0)
    logp = (torch.rand(2, 3) * -2).requires_grad_(True)
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    return MicroBatch(logp=logp, old_logp=logp.detach() - 0.1, adv=torch.tensor([1.0, -0.5]), mask=mask,
                      n_tokens=10.0, entropy=torch.full((2, 3), 0.7), **extra)


def names(algo: str, **settings) -> list[str]:
    return [t.name for t in objective_terms(ALGORITHMS[algo], AlgoConfig(**settings))]


def test_each_algorithm_lists_its_terms():
    assert names("grpo") == ["policy_gradient"]
    assert names("sdar") == ["policy_gradient", "gated_distillation"]
    assert names("opsd") == ["gated_distillation"]  # no RL term
    assert names("skill_sd") == ["policy_gradient", "skill_sd"]
    assert names("rlsd") == ["rlsd_policy_gradient"]
    assert names("sft") == ["sft"]
    assert names("grpo", kl_coef=0.01) == ["policy_gradient", "kl"]  # the KL joins any algorithm
    grpo_opsd = ALGORITHMS["grpo_opsd"].terms[1]
    assert grpo_opsd.options == {"beta": 0.0} and grpo_opsd.weight == "sdar_lambda"
    assert [a for a, spec in ALGORITHMS.items() if spec.skills_in_student] == ["skill_grpo"]


def test_algo_name_choices_are_the_table():
    import typing

    choices = set(typing.get_args(typing.get_type_hints(AlgoConfig)["name"]))
    assert choices == set(ALGORITHMS) - {"sft"}  # sft is the warm-start stage, not an RL algorithm


def test_needs_follow_the_terms_and_settings():
    cfg = AlgoConfig()
    assert ALGORITHMS["grpo"].needs(cfg) == frozenset()
    assert ALGORITHMS["sdar"].needs(cfg) == {"teacher"}
    assert ALGORITHMS["sdar"].needs(AlgoConfig(divergence="jsd")) == {"teacher", "full_logits"}
    assert ALGORITHMS["grpo"].needs(AlgoConfig(kl_coef=0.1)) == {"reference"}
    assert ALGORITHMS["rlsd"].needs(cfg) == {"teacher"} and ALGORITHMS["sft"].needs(cfg) == frozenset()
    assert ALGORITHMS["skill_grpo"].uses_skills(cfg) and ALGORITHMS["sdar"].uses_skills(cfg)
    assert not ALGORITHMS["grpo"].uses_skills(cfg)


def test_sdar_sums_the_policy_gradient_and_the_weighted_distillation():
    cfg = AlgoConfig(sdar_lambda=0.25)
    teacher = torch.full((2, 3), -0.5)
    mb = micro_batch(teacher_logp=teacher)
    loss, metrics = total_loss(objective_terms(ALGORITHMS["sdar"], cfg), mb, cfg)
    pg, *_ = ppo_clip_loss(mb.logp, mb.old_logp, mb.adv, mb.mask, n_tokens=10.0)
    gate = torch.sigmoid(5.0 * (teacher - mb.logp.detach()))
    distill = (gate * (teacher - mb.logp) * mb.mask).sum() / 10.0
    assert loss.item() == pytest.approx((pg + 0.25 * distill).item(), rel=1e-6)
    assert metrics["sdar/gate_mean"].item() == pytest.approx(((gate * mb.mask).sum() / 10.0).item(), rel=1e-6)
    assert metrics["actor/entropy"].item() == pytest.approx(0.7 * 5 / 10)  # this micro-batch's share


def test_metric_shares_add_up_to_the_mini_batch_mean_across_micro_batches():
    cfg = AlgoConfig()
    whole = micro_batch()
    _, full = total_loss(objective_terms(ALGORITHMS["grpo"], cfg), whole, cfg)
    parts = [MicroBatch(logp=whole.logp[r : r + 1], old_logp=whole.old_logp[r : r + 1], adv=whole.adv[r : r + 1],
                        mask=whole.mask[r : r + 1], n_tokens=whole.n_tokens, entropy=whole.entropy[r : r + 1])
             for r in range(2)]
    summed = [total_loss(objective_terms(ALGORITHMS["grpo"], cfg), mb, cfg)[1] for mb in parts]
    for key in full:
        assert sum(m[key].item() for m in summed) == pytest.approx(full[key].item(), rel=1e-6), key


def test_sft_is_the_response_tokens_negative_log_likelihood():
    cfg = AlgoConfig()
    mb = micro_batch()
    loss, metrics = total_loss(objective_terms(ALGORITHMS["sft"], cfg), mb, cfg)
    assert loss.item() == pytest.approx((-(mb.logp * mb.mask).sum() / 10.0).item())
    loss.backward()
    assert torch.all(mb.logp.grad[0, 0] == 0)  # a masked (prompt or padding) position gets no gradient
    assert torch.allclose(mb.logp.grad[mb.mask.bool()], torch.full((5,), -0.1))
    assert "actor/pg_loss" not in metrics and "sft/loss" in metrics


def test_a_term_without_what_it_needs_fails_loudly():
    cfg = AlgoConfig()
    with pytest.raises(AssertionError, match="needs 'teacher'"):
        total_loss(objective_terms(ALGORITHMS["sdar"], cfg), micro_batch(), cfg)
