"""Prompt templates, the action projection, and the config system."""

from __future__ import annotations

import pytest

from sdar_agent.config import ConfigError, load_config, preset_names
from sdar_agent.prompts import PromptTemplate, register_template, template_for
from sdar_envs.answers import parse_think_action


@pytest.mark.parametrize(
    "text, action, valid",
    [
        ("<think>go</think><action>Go To Fridge 1</action>", "go to fridge 1", True),
        ("<think>a</think>\n<action>  open   drawer 2 </action> trailing", "open drawer 2", True),
        ("<think>x</think><action>look</action><action>inventory</action>", "look", True),
        ("<action>look</action>", "look", False),  # no <think>
        ("<action>look</action><think>late</think>", "look", False),  # think after the action
        ("<think>hmm</think> go to fridge 1", "<think>hmm</think> go to fridge 1", False),  # no tags: fallback
        ("<think>a</think><action></action>", "", False),
        ("", "", False),
    ],
)
def test_projection_rules(text, action, valid):
    parsed = parse_think_action(text)
    assert (parsed.action, parsed.valid) == (action, valid)
    assert parsed.valid == (parsed.reason == "")


def test_template_layout_and_lookup():
    template = template_for("sdar/ALFWorld-v0")
    assert template.name == "alfworld" and template_for("sdar_envs:sdar/ALFWorld-v0") is template
    first = template.render("put a mug in cabinet.", "You are in a room.", ["go to cabinet 1", "look"], [], 0)
    assert "Your task: put a mug in cabinet." in first and "- go to cabinet 1" in first
    assert "<think>" in first and "<action>" in first and "step(s) so far" not in first
    later = template.render("t", "now", ["look"], [("obs a", "look"), ("obs b", "inventory")], 5)
    assert "You have taken 5 step(s) so far." in later
    assert "Step 4: observation: obs a\nStep 4: your action: look" in later
    assert "Step 5: your action: inventory" in later
    assert later.index("Step 5: your action") < later.index("Current observation (step 6)")
    import gymnasium as gym

    if "test/Plain-v0" not in gym.registry:  # an env class that declares no template
        gym.register("test/Plain-v0", entry_point=lambda: None)
    assert template_for("test/Plain-v0").name == "generic"
    register_template(PromptTemplate("test-template", "Intro."))
    assert template_for("sdar/ALFWorld-v0", "test-template").intro == "Intro."
    assert template_for("sdar/ALFWorld-v0", "searchqa") is template_for("sdar/SearchQA-v0")  # another env's, by name
    with pytest.raises(ValueError, match="rollout.template='nope'"):
        template_for("sdar/ALFWorld-v0", "nope")


def test_webshop_template_is_the_default_for_the_env():
    template = template_for("sdar_envs:sdar/WebShop-v0")
    assert template.name == "webshop" and "search[your keywords]" in template.instruction
    parsed = template.parse("<think>find tea</think><action>search[Green Tea]</action>")
    assert parsed.valid and parsed.action == "search[green tea]"


def test_searchqa_template_and_parser():
    template = template_for("sdar_envs:sdar/SearchQA-v0")
    assert template.name == "searchqa"
    ok = template.parse("<think>need facts</think>\n<search>  Founder of  X </search>")
    assert ok.valid and ok.action == "<search> Founder of X </search>"
    assert template.parse("<think>known</think><answer> Paris </answer>").action == "<answer> Paris </answer>"
    assert not template.parse("<answer>Paris</answer>").valid  # no <think> first
    assert not template.parse("<think>x</think>search[bracket form is for people, not the model]").valid
    bad = template.parse("Paris, I think")
    assert not bad.valid and bad.reason == "no <search> or <answer> block"
    message = template.render("Who founded X?", "Who founded X?", [], [], 0)
    assert "<search>" in message and "Admissible actions" not in message


def test_presets_load_and_validate():
    assert {"demo", "alfworld_grpo_qwen2.5-3b"} <= set(preset_names())
    demo = load_config("demo")
    assert demo.model.name.startswith("embedded:") and demo.steps >= 1
    paper = load_config("alfworld_grpo_qwen2.5-3b")
    assert (paper.rollout.tasks_per_step, paper.rollout.group_size, paper.steps) == (16, 8, 150)
    assert (paper.algo.lr, paper.algo.kl_coef, paper.rollout.max_response_tokens) == (1e-6, 0.01, 512)


def test_overrides_apply_with_types():
    cfg = load_config("demo", ["rollout.group_size=2", "algo.lr=3e-6", "env.kwargs={data_dir: /x}", "name=abc",
                               "model.lora_target_modules=[q_proj]", "log.plot=false"])
    assert cfg.rollout.group_size == 2 and cfg.algo.lr == 3e-6 and cfg.env.kwargs == {"data_dir": "/x"}
    assert cfg.model.lora_target_modules == ["q_proj"] and cfg.log.plot is False and cfg.name == "abc"


@pytest.mark.parametrize(
    "override, message",
    [
        ("rollout.groupsize=4", "unknown config key 'rollout.groupsize'.*Did you mean 'group_size'"),
        ("algo.lr=fast", r"algo.lr='fast' has the wrong type: expected float"),
        ("rollout.group_size=0", r"rollout.group_size=0 is invalid: expected >= 1"),
        ("algo.advantage_norm=batch", r"expected one of \['step', 'trajectory'\]"),
        ("env.val_splits=[valid_seen,train]", "must name held-out splits"),
        ("model=tiny", "model is a section"),
        ("steps", None),
        ("rollout.temperature=0", "expected > 0"),
        ("env.num_workers=3", "-1 .* or 0"),
    ],
)
def test_bad_config_names_the_key(override, message):
    if message is None:  # a bare word is a second preset
        with pytest.raises(ConfigError, match="unknown preset 'steps'"):
            load_config("steps")
        return
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("rollout:\n  grop_size: 2\n")
    with pytest.raises(ConfigError, match=r"wrong.yaml: unknown config key 'rollout.grop_size'"):
        load_config(str(wrong))


def test_paper_presets_cover_every_algorithm():
    import typing

    from sdar_agent.config import AlgoConfig

    choices = set(typing.get_args(typing.get_type_hints(AlgoConfig)["name"]))
    presets = {load_config(name).algo.name: name for name in preset_names() if name.startswith("alfworld_")}
    assert set(presets) == choices
    for name in presets.values():
        cfg = load_config(name)
        assert (cfg.rollout.tasks_per_step, cfg.rollout.group_size, cfg.steps, cfg.algo.lr) == (16, 8, 150, 1e-6)
        assert (cfg.algo.kl_coef, cfg.algo.sdar_lambda, cfg.algo.sdar_beta) == (0.01, 0.01, 5.0)


def test_a_preset_extends_another_with_base(tmp_path):
    (tmp_path / "parent.yaml").write_text("steps: 7\nrollout:\n  group_size: 3\n  top_k: 5\nalgo:\n  name: sdar\n")
    (tmp_path / "child.yaml").write_text("base: parent\nrollout:\n  group_size: 2\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert (cfg.steps, cfg.rollout.group_size, cfg.rollout.top_k, cfg.algo.name) == (7, 2, 5, "sdar")
    shipped = load_config("alfworld_rlsd_qwen2.5-3b")  # a per-algorithm file over the env's recipe
    assert shipped.algo.name == "rlsd" and shipped.rollout.group_size == 8 and shipped.name.endswith("rlsd-qwen2.5-3b")
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(ConfigError, match="in a circle"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "bad.yaml").write_text("base: [1]\n")
    with pytest.raises(ConfigError, match="base=\\[1\\]: expected the name"):
        load_config(str(tmp_path / "bad.yaml"))


def test_every_checked_field_is_checked_where_it_is_declared():
    from sdar_agent.config import TrainConfig, _checked_fields

    keys = [key for key, _, _ in _checked_fields(TrainConfig())]
    assert "algo.lr" in keys and "rollout.top_p" in keys and "env.num_workers" in keys
    with pytest.raises(ConfigError, match=r"rollout.top_p=0.0 is invalid: expected in \(0, 1\]"):
        load_config("demo", ["rollout.top_p=0"])


def test_command_line_parsing():
    from sdar_agent.config import parse_command_line

    line = parse_command_line(["demo_webshop", "steps=3", "checkpoint=runs/x"], own_keys=("checkpoint",))
    assert (line.preset, line.overrides, line.own) == ("demo_webshop", ["steps=3"], {"checkpoint": "runs/x"})
    assert parse_command_line([]).preset == "demo"
    with pytest.raises(ConfigError, match="at most one preset"):
        parse_command_line(["a", "b"])
    with pytest.raises(ConfigError, match="unknown option"):
        parse_command_line(["--verbose"])


@pytest.mark.parametrize("env_id, action", [("sdar/ALFWorld-v0", "go to fridge 1"),
                                            ("sdar/WebShop-v0", "click[buy now]"),
                                            ("sdar/SearchQA-v0", "<search> Naedreizei Institute </search>")])
def test_a_demonstration_answer_reads_back_as_its_action(env_id, action):
    template = template_for(env_id)
    parsed = template.parse(template.format_answer("A short thought.", action))
    assert parsed.valid and parsed.action == action


def test_guess_number_example_has_a_bisection_expert():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "custom_env"))
    try:
        from guess_env import GuessNumberEnv
    finally:
        sys.path.pop(0)
    env = GuessNumberEnv("test")
    for index in range(env.num_tasks):
        env.reset(options={"task_index": index})
        for _ in range(12):
            _, _, terminated, _, info = env.step(env.expert_step().action)
            if terminated:
                break
        assert info["won"] and info["step"] <= 7  # log2(100) rounds up to 7


def test_the_console_carries_the_projects_info_messages_and_only_other_libraries_warnings():
    import logging

    from sdar_agent.cli import configure_logging

    root, ours = logging.getLogger(), [logging.getLogger(name) for name in ("sdar_agent", "sdar_envs")]
    levels = [root.level] + [logger.level for logger in ours]
    try:
        configure_logging()
        assert logging.getLogger("sdar_agent.trainer").isEnabledFor(logging.INFO)
        assert logging.getLogger("sdar_envs.alfworld.env").isEnabledFor(logging.INFO)
        assert not logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)  # pyserini's import announces it
        assert logging.getLogger("faiss.loader").isEnabledFor(logging.WARNING)
    finally:
        for logger, level in zip([root, *ours], levels, strict=True):
            logger.setLevel(level)


def test_a_run_ends_with_each_validation_and_the_episodes_it_rests_on():
    from sdar_agent.cli import report

    results = {"sft": {"validations": [(0, 0.0, 8), (133, 0.125, 8)], "run_dir": "runs/demo/sft", "step": 133},
               "rl": {"validations": [(1, 0.375, 8), (2, 0.5, 0)], "run_dir": "runs/demo", "step": 2}}
    assert report(results).splitlines() == [
        "validation success untouched model: 0.0% (0 of 8 won)",
        "validation success after SFT (step 133): 12.5% (1 of 8 won)",
        "sft: runs/demo/sft (step 133)",
        "validation success after RL (step 1): 37.5% (3 of 8 won)",
        "validation success after RL (step 2): 50.0%",  # no episode count logged (an older run)
        "rl: runs/demo (step 2)",
    ]


def test_keys_inside_a_mapping_field_are_settable_from_the_command_line():
    cfg = load_config("demo", ["env.kwargs.questions=data/q.jsonl", "env.kwargs.split.seed=3"])
    assert cfg.env.kwargs == {"embedded": "easy", "questions": "data/q.jsonl", "split": {"seed": 3}}
    with pytest.raises(ConfigError, match="env.kwargs.embedded is 'easy', not a mapping"):
        load_config("demo", ["env.kwargs.embedded.x=1"])
    with pytest.raises(ConfigError, match="env.max_turns is a value, not a section"):
        load_config("demo", ["env.max_turns.x=1"])
