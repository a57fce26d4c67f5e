"""SDAR and the baselines on the one training loop, with the tiny model on ALFWorld."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
import torch  # noqa: E402

from sdar_agent.config import ModelConfig  # noqa: E402
from sdar_agent.generation import HFGenerator, Sampling  # noqa: E402
from sdar_agent.models import load_policy, load_tokenizer  # noqa: E402
from sdar_agent.prompts import template_for  # noqa: E402
from sdar_agent.rollout import Agent, RolloutSettings, SkillUse, collect  # noqa: E402
from sdar_agent.workers import EnvPool  # noqa: E402
from skillbank import SkillSelector  # noqa: E402
from tests.helpers import finite, run_train, undocumented  # noqa: E402

pytestmark = pytest.mark.usefixtures("lenient_template")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny")
    tokenizer = load_tokenizer(cfg)
    return load_policy(cfg, torch.device("cpu"), tokenizer)


def rollout(tiny, games, *, in_student, for_teacher, placement="user_message"):
    model, tokenizer = tiny
    selector = SkillSelector("alfworld", "keyword", budget=512,
                             measure=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    pool = EnvPool("sdar/ALFWorld-v0", {"data_dir": str(games)}, 2, max_turns=2, use_workers=False)
    try:
        tasks = list(pool.call("task_ids"))[:2]
        agent = Agent(HFGenerator(model, tokenizer, 4), tokenizer, template_for("sdar/ALFWorld-v0"))
        return collect(agent, pool, tasks, 1, RolloutSettings(Sampling(6), max_turns=2, history_length=1,
                                                              max_prompt_tokens=2048),
                       skills=SkillUse(selector, in_student, for_teacher, placement))
    finally:
        pool.close()


def test_teacher_prompt_has_the_skills_and_the_student_prompt_does_not(tiny, alfworld_games):
    _, tokenizer = tiny
    batch = rollout(tiny, alfworld_games, in_student=False, for_teacher=True)
    for sample in batch.samples:
        student = tokenizer.decode(sample.prompt_ids)
        teacher = tokenizer.decode(sample.teacher_prompt_ids)
        assert "Choose from the listed actions" in teacher and "Choose from the listed actions" not in student
        assert "Skills that may help" in teacher
        assert teacher.endswith(student[-200:])  # the same turn, the same ending (generation prompt)
    assert all(e.skills.ids and e.skills.task_type == e.task_type for e in batch.episodes)  # explicit task type


def test_prefix_placement_follows_the_reference_code(tiny, alfworld_games):
    _, tokenizer = tiny
    batch = rollout(tiny, alfworld_games, in_student=False, for_teacher=True, placement="prefix")
    sample = batch.samples[0]
    assert tokenizer.decode(sample.teacher_prompt_ids).startswith("[Privileged Skill Information]\n")
    assert sample.teacher_prompt_ids[-len(sample.prompt_ids) :] == sample.prompt_ids


def test_skill_grpo_student_sees_the_skills(tiny, alfworld_games):
    _, tokenizer = tiny
    batch = rollout(tiny, alfworld_games, in_student=True, for_teacher=False)
    assert all("Choose from the listed actions" in tokenizer.decode(s.prompt_ids) for s in batch.samples)
    assert all(s.teacher_prompt_ids is None for s in batch.samples)


@pytest.mark.parametrize("strategy", ["keyword", "full", "random", "ucb"])
def test_two_sdar_steps_with_each_retrieval_strategy(tmp_path, alfworld_games, strategy):
    rows, changed = run_train(tmp_path, alfworld_games, f"sdar-{strategy}", "algo.name=sdar",
                              f"skills.strategy={strategy}", "skills.k=3", steps=2)
    assert changed and [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("sdar/loss", "sdar/gate_mean", "sdar/gate_active_ratio", "sdar/teacher_gap_mean",
                    "actor/pg_loss", "perf/teacher_s"):
            assert finite(row, key), key
        assert 0.0 < row["sdar/gate_mean"] < 1.0
    assert not undocumented(rows)


@pytest.mark.parametrize("algo, present, absent", [
    ("grpo", ["actor/pg_loss", "actor/ppo_kl", "actor/clipfrac", "actor/dual_clipfrac"], ["sdar/loss"]),
    ("opsd", ["sdar/loss"], ["actor/pg_loss"]),
    ("grpo_opsd", ["actor/pg_loss", "sdar/loss"], []),
    ("skill_grpo", ["actor/pg_loss", "val/success_rate_no_skills"], ["sdar/loss"]),
    ("skill_sd", ["actor/pg_loss", "skill_sd/loss"], ["sdar/loss"]),
    ("rlsd", ["actor/pg_loss", "rlsd/lambda"], ["sdar/loss"]),
])
def test_every_algorithm_runs_on_the_loop(tmp_path, alfworld_games, algo, present, absent):
    rows, changed = run_train(tmp_path, alfworld_games, algo, f"algo.name={algo}", "val_every=1", "val_tasks=2",
                              steps=1)
    row = rows[0]
    assert changed
    for key in present:
        assert finite(row, key), key
    for key in absent:
        assert key not in row, key
    assert not undocumented(rows)  # every key a run writes is described in tracking.METRICS (docs/metrics.md)
    assert row["actor/nonfinite_steps"] == 0.0
    if algo == "grpo":  # no teacher: no teacher pass; the validation's report keeps its panel and outcomes
        assert row["perf/teacher_s"] == 0.0
        report = json.loads((tmp_path / algo / "validations" / "step_000001_valid_unseen.json").read_text())
        assert len(report["panel"]) == 2 and set(report["outcomes"]) == set(report["panel"])
        assert row["val/success_low"] <= row["val/success_rate"] <= row["val/success_high"]
    if algo == "grpo_opsd":
        assert row["sdar/gate_mean"] == pytest.approx(0.5) and row["sdar/gate_active_ratio"] == 0.0
    if algo == "opsd":  # SDAR's gated term without the RL term, as the reference runs it
        assert 0.0 < row["sdar/gate_mean"] < 1.0
    if algo == "rlsd":  # lambda 0.5 (1 - step / 100), the first step counted as 1
        assert row["rlsd/lambda"] == pytest.approx(0.495)


@pytest.mark.parametrize("override", ["algo.gate=entropy", "algo.gate=soft_or", "algo.divergence=forward_kl",
                                      "algo.divergence=jsd"])
def test_ablations_run(tmp_path, alfworld_games, override):
    rows, changed = run_train(tmp_path, alfworld_games, override.replace("=", "-"), "algo.name=sdar", override,
                              "algo.divergence_chunk=3", steps=1)
    assert changed and finite(rows[0], "sdar/loss")


def test_ucb_state_is_checkpointed(tmp_path, alfworld_games):
    run_train(tmp_path, alfworld_games, "ucb-ckpt", "algo.name=sdar", "skills.strategy=ucb", "skills.k=2", steps=2)
    states = []
    for f in sorted((tmp_path / "ucb-ckpt" / "checkpoints" / "step_000002").glob("custom_checkpoint_*.pkl")):
        states.append(torch.load(f, weights_only=False))  # accelerate writes custom states with torch.save
    bank_state = next(s for s in states if "bank" in s)["bank"]
    assert bank_state["bank"] == "alfworld" and bank_state["ucb"]["stats"]


def test_the_teacher_premise_example_runs_end_to_end(tmp_path, alfworld_games, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "teacher_premise.py"
    spec = importlib.util.spec_from_file_location("teacher_premise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "premise.json"
    result = module.main(["demo", "model.name=tiny", "model.compute_dtype=float32", "env.num_workers=0",
                          f"env.kwargs={{data_dir: {alfworld_games}}}", "rollout.max_response_tokens=4",
                          "env.max_turns=2", "episodes=2", "tasks=2", f"out={out}"])
    gap = result["teacher_gap"]
    assert gap["answers"] > 0 and gap["tokens"] > gap["answers"] and 0.0 <= gap["positive_share"] <= 1.0
    assert set(result["success"]) == {"with_skills", "without_skills"}
    assert result["success"]["with_skills"]["panel"] == result["success"]["without_skills"]["panel"]
    assert json.loads(out.read_text())["comparison"]["tasks"] == 2
    assert "| teacher gap, nats/token |" in capsys.readouterr().out


def test_held_out_expert_states_carry_the_teachers_prompt(tiny, alfworld_games):
    from sdar_agent.config import load_config
    from sdar_agent.premise import expert_states
    from sdar_agent.rollout import skill_selector

    _, tokenizer = tiny
    cfg = load_config("demo", ["model.name=tiny", f"env.kwargs={{data_dir: {alfworld_games}}}", "env.max_turns=20"])
    selector = skill_selector(cfg, tokenizer)
    states = expert_states(cfg, tokenizer, template_for(cfg.env.id), {tokenizer.eos_token_id}, selector,
                           "valid_unseen", episodes=2)
    from sdar_agent.workers import make_env

    env = make_env(cfg.env.id, {"data_dir": str(alfworld_games), "split": "valid_unseen"}, 20)
    held_out = set(env.unwrapped.task_ids)
    env.close()
    assert states and {s.task_id for s in states} <= held_out  # the held-out split's states, not train's
    for s in states:
        teacher = tokenizer.decode(s.teacher_prompt_ids)
        assert "Skills that may help with this task:" in teacher and "Skills that may help" not in tokenizer.decode(
            s.prompt_ids)


def test_the_comparison_experiment_runs_end_to_end_on_the_tiny_model(tmp_path, alfworld_games):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "sdar_vs_grpo_cpu.py"
    spec = importlib.util.spec_from_file_location("sdar_vs_grpo_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "cmp"
    module.main(["--seeds", "0", "--steps", "1", "--val-tasks", "2", "--out", str(out), "model.name=tiny",
                 "model.compute_dtype=float32", "env.num_workers=0", f"env.kwargs={{data_dir: {alfworld_games}}}",
                 "rollout.max_response_tokens=4", "env.max_turns=2", "skills.bank=",
                 "--sft-set", "sft.episodes=2", "sft.batch_size=8"])
    text = (out / "comparison.md").read_text()
    assert "| SFT model | grpo |" in text and "| grpo | sdar |" in text and "McNemar p" in text
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
