"""The reference recipe's behaviour on the tiny model: master weights, mini-batches, sampling, teacher context."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
import torch  # noqa: E402

from sdar_agent.config import ModelConfig, load_config  # noqa: E402
from sdar_agent.generation import HFGenerator, Sampling  # noqa: E402
from sdar_agent.models import load_policy, load_tokenizer  # noqa: E402
from sdar_agent.prompts import PRIVILEGED_PREFIX, template_for  # noqa: E402
from sdar_agent.rollout import Agent, RolloutSettings, Sample, SkillUse, collect  # noqa: E402
from sdar_agent.trainer import Trainer  # noqa: E402
from sdar_agent.workers import EnvPool  # noqa: E402
from skillbank import SkillSelector  # noqa: E402
from tests.conftest import shared_path  # noqa: E402
from tests.helpers import LENIENT, run_train  # noqa: E402

pytestmark = pytest.mark.usefixtures("lenient_template")


def tiny_trainer(tmp_path, games, *extra):
    cfg = load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", "algo.name=grpo", "name=ref", f"output_dir={tmp_path}",
        "steps=1", "save_every=0", "val_every=0", "env.num_workers=0", "rollout.tasks_per_step=1",
        "rollout.group_size=2", "rollout.max_response_tokens=8", "env.max_turns=2", "log.progress=false",
        "log.tensorboard=false", "log.plot=false", f"env.kwargs={{data_dir: {games}}}", f"rollout.template={LENIENT}",
        *extra])
    return Trainer(cfg)


def fake_samples(tokenizer, n: int) -> tuple[list[Sample], torch.Tensor]:
    torch.manual_seed(1)
    samples = [Sample(torch.randint(10, 500, (12,)).tolist(), torch.randint(10, 500, (6,)).tolist(), group=i // 4,
                      traj=i, step=0, task_id=str(i), task_type="t", valid=True) for i in range(n)]
    return samples, torch.arange(n, dtype=torch.float64) % 3


def changed_share(trainer, before) -> float:
    """Share of the transformer layers' weights that the update moved (embeddings of unseen tokens get no gradient)."""
    after = trainer.acc.unwrap_model(trainer.model).state_dict()
    keys = [k for k in before if "layers" in k]
    moved = sum(int((before[k] != after[k]).sum()) for k in keys)
    return moved / sum(before[k].numel() for k in keys)


@pytest.mark.parametrize("weights, expected", [("float32", "all"), ("bfloat16", "almost none")])
def test_one_lr_1e6_step_with_bf16_compute_moves_the_fp32_master_weights(tmp_path, alfworld_games, weights, expected):
    trainer = tiny_trainer(tmp_path, alfworld_games, "algo.lr=1e-6", "model.compute_dtype=bfloat16",
                           f"model.weights_dtype={weights}")
    try:
        samples, scores = fake_samples(trainer.tokenizer, 8)
        before = {k: v.clone() for k, v in trainer.acc.unwrap_model(trainer.model).state_dict().items()}
        trainer.update(samples, scores)
        share = changed_share(trainer, before)
    finally:
        trainer.close()
    if expected == "all":  # fp32 master weights: an AdamW step of ~1e-6 is far above fp32's spacing
        assert share >= 0.99, share
    else:  # bf16 storage swallows it (the paper presets' old behaviour)
        assert share < 0.05, share


def test_bf16_compute_on_a_cpu_generates_with_the_updated_weights(tmp_path, alfworld_games):
    """The demo's setting: fp32 master weights, bf16 compute; rollouts come from a bf16 copy that each
    optimizer step brings up to date."""
    trainer = tiny_trainer(tmp_path, alfworld_games, "algo.lr=1e-2", "model.compute_dtype=bfloat16")
    try:
        policy = trainer.acc.unwrap_model(trainer.model)
        prompt = [trainer.tokenizer("Go to the desk.", add_special_tokens=False)["input_ids"]]
        trainer.generator(prompt, Sampling(4, greedy=True))
        before = {k: v.clone() for k, v in trainer.generator._copy.state_dict().items()}
        samples, scores = fake_samples(trainer.tokenizer, 8)
        trainer.update(samples, scores)
        trainer.generator(prompt, Sampling(4, greedy=True))
        copied = trainer.generator._copy.state_dict()
        weights = policy.state_dict()
    finally:
        trainer.close()
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())  # master weights
    moved = [k for k in weights if "layers" in k and not torch.equal(before[k], copied[k])]
    assert moved  # the update reached the copy
    for key, weight in weights.items():
        assert torch.equal(copied[key], weight.to(copied[key].dtype)), key


def test_mini_batch_size_gives_one_adamw_step_per_256_like_chunk(tmp_path, alfworld_games):
    trainer = tiny_trainer(tmp_path, alfworld_games, "algo.lr=1e-2", "algo.mini_batch_size=4",
                           "algo.micro_batch_size=3")
    try:
        samples, scores = fake_samples(trainer.tokenizer, 10)
        metrics = trainer.update(samples, scores)
    finally:
        trainer.close()
    assert metrics["actor/optimizer_steps"] == 3  # ceil(10 / 4)
    assert metrics["actor/clipfrac"] > 0  # later mini-batches see a moved policy: ratios and clipping act


def test_both_validation_splits_are_reported(tmp_path, alfworld_games):
    rows, _ = run_train(tmp_path, alfworld_games, "two-splits", "env.val_splits=[valid_seen,valid_unseen]",
                        "val_every=1", "val_tasks=2", steps=1)
    row = rows[0]
    for split in ("valid_seen", "valid_unseen"):
        assert f"val/{split}/success_rate" in row and f"val/{split}/valid_action_ratio" in row
    assert row["val/success_rate"] == row["val/valid_seen/success_rate"]  # the first split is the headline


def test_sampling_follows_softmax_of_logits_over_temperature_only():
    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny")
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    with torch.no_grad():
        model.model.norm.weight.mul_(20.0)  # a peaked next-token distribution, so frequencies are measurable
    model.generation_config.top_k = 2  # what a checkpoint's generation_config.json may carry ...
    model.generation_config.repetition_penalty = 5.0  # ... must not change the samples
    prompt = tokenizer("The answer is", add_special_tokens=False)["input_ids"]
    temperature, n = 0.7, 3000
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    p = torch.softmax(logits / temperature, -1)
    generator = HFGenerator(model, tokenizer, batch_size=1000)
    tokens = [r[0] for r in generator([prompt] * n, Sampling(1, temperature=temperature))]
    counts = torch.bincount(torch.tensor(tokens), minlength=p.numel()).double()
    top = torch.argsort(p, descending=True)[:8]
    assert len(set(tokens)) > 2  # no top-k of 2
    assert p[top].sum() < 0.98 and p[top[0]] < 0.9  # the test distribution is spread enough to tell
    expected = torch.cat([p[top] * n, (1 - p[top].sum()).reshape(1) * n])
    observed = torch.cat([counts[top], (n - counts[top].sum()).reshape(1)])
    chi2 = float(((observed - expected) ** 2 / expected.clamp(min=1e-9)).sum())
    assert chi2 < 27.9, (chi2, observed.tolist(), expected.tolist())  # chi-square, 8 dof, p = 0.0005
    assert model.generation_config.top_k == 2  # the checkpoint's own settings are left as they were


def test_prefix_teacher_context_is_the_references(alfworld_games, monkeypatch):
    root = shared_path("sdar_skills")
    monkeypatch.setenv("SDAR_SKILLS_DIR", str(root))
    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny")
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    selector = SkillSelector("sdar:alfworld", "keyword", budget=100_000)
    pool = EnvPool("sdar/ALFWorld-v0", {"data_dir": str(alfworld_games)}, 1, max_turns=1, use_workers=False)
    try:
        task = next(t for t, kind in zip(pool.call("task_ids"), pool.call("task_types"), strict=True)
                    if kind == "pick_heat_then_place_in_recep")
        agent = Agent(HFGenerator(model, tokenizer, 4), tokenizer, template_for("sdar/ALFWorld-v0"))
        settings = RolloutSettings(Sampling(4), 1, history_length=2, max_prompt_tokens=4096)
        batch = collect(agent, pool, [task], 1, settings,
                        skills=SkillUse(selector, in_student=False, for_teacher=True, placement="prefix"))
    finally:
        pool.close()
    sample = batch.samples[0]
    skills = "\n\n".join((root / "alfworld" / f).read_text().strip() for f in ("general_skills.md", "heat.md"))
    student_text = tokenizer.decode(sample.prompt_ids)
    expected = PRIVILEGED_PREFIX.format(skills=skills) + student_text
    assert PRIVILEGED_PREFIX == "[Privileged Skill Information]\n{skills}\n\n"
    assert tokenizer.decode(sample.teacher_prompt_ids) == expected
    assert sample.teacher_prompt_ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert sample.response_ids  # the teacher scores the student's own response


def test_teacher_scores_of_a_task_sharing_its_prefix_equal_each_sample_run_whole(tmp_path, alfworld_games,
                                                                                  monkeypatch):
    import sdar_agent.trainer as trainer_module
    from sdar_agent.logprobs import pack, response_logprobs

    extended = []
    extend = trainer_module.extend_cache
    monkeypatch.setattr(trainer_module, "extend_cache", lambda *a: extended.append(len(a[2])) or extend(*a))
    trainer = tiny_trainer(tmp_path, alfworld_games, "algo.micro_batch_size=2")
    try:
        torch.manual_seed(5)
        skills = torch.randint(10, 500, (40,)).tolist()  # a task's skills text and instructions
        turns = [torch.randint(10, 500, (20,)).tolist() for _ in range(3)]  # what a turn's rollouts share
        samples = [Sample(torch.randint(10, 500, (12,)).tolist(), torch.randint(10, 500, (4,)).tolist(),
                          group=i // 5, traj=i, step=i % 5 // 2, task_id=str(i // 5), task_type="t", valid=True,
                          teacher_prompt_ids=skills[: 40 - 10 * (i // 5)] + turns[i % 5 // 2]
                          + torch.randint(10, 500, (3,)).tolist())
                   for i in range(10)]  # two tasks of 5 samples, each three micro-batches: turns 0, 1 and 2
        logps, _ = trainer._score_responses(samples, teacher=True)
        with torch.no_grad():
            for s, logp in zip(samples, logps, strict=True):
                whole = response_logprobs(trainer.model, pack([s.teacher_prompt_ids], [s.response_ids], 0)).logp[0]
                assert torch.allclose(logp, whole.cpu(), atol=1e-5)
    finally:
        trainer.close()
    assert extended == [20, 20] * 2  # each task's two-row micro-batches ran their turn's shared tokens once


def test_a_cpu_peak_is_measured_in_the_compute_dtype():
    """A bf16 run's `perf/train_peak_share` divides by a timed bf16 matmul, not the fp32 one; timing it leaves the
    global random stream alone (it once moved a run's samples depending on when the peak was first asked for)."""
    from sdar_agent.hardware import cpu_matmul_flops, peak_flops

    cpu = torch.device("cpu")
    cpu_matmul_flops.cache_clear()  # timed here, whatever ran before
    state = torch.get_rng_state()
    assert peak_flops(cpu, torch.bfloat16) == cpu_matmul_flops(dtype=torch.bfloat16) > 0
    assert peak_flops(cpu, torch.float32) == cpu_matmul_flops(dtype=torch.float32) > 0
    assert peak_flops(cpu, torch.float16) is None  # not measured: no share reported
    assert torch.equal(torch.get_rng_state(), state)  # timing drew nothing from the run's random stream


@pytest.mark.parametrize(("bf16_gflops", "warned"), [(120.0, True), (700.0, False)])
def test_bfloat16_compute_on_a_cpu_without_fast_bf16_matmuls_warns_once(monkeypatch, caplog, bf16_gflops, warned):
    """`model.compute_dtype=bfloat16` on a CPU whose bf16 matmul is not 1.5x its fp32 one: kept, with one warning
    naming the key and the faster setting; none where bf16 is fast, and none for float32 or `auto` on a CPU."""
    from sdar_agent import hardware
    from sdar_agent.config import ModelConfig
    from sdar_agent.models import compute_dtype

    timed = {torch.bfloat16: bf16_gflops * 1e9, torch.float32: 180e9}
    monkeypatch.setattr(hardware, "cpu_matmul_flops", lambda dtype=torch.float32: timed[dtype])
    hardware.check_cpu_bfloat16.cache_clear()
    cpu = torch.device("cpu")
    try:
        with caplog.at_level("WARNING", logger="sdar_agent.hardware"):
            assert compute_dtype(ModelConfig(compute_dtype="float32"), cpu) == torch.float32
            assert compute_dtype(ModelConfig(), cpu) == torch.float32  # auto on a CPU
            assert not caplog.records  # neither times anything
            for _ in range(2):
                assert compute_dtype(ModelConfig(compute_dtype="bfloat16"), cpu) == torch.bfloat16
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == int(warned)
        if warned:
            assert "model.compute_dtype=float32" in messages[0] and "120 GFLOP/s against 180" in messages[0]
    finally:
        hardware.check_cpu_bfloat16.cache_clear()  # other tests time the real CPU

