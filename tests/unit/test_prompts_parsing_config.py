"""Prompt templates, the action projection, and the config system."""

from __future__ import annotations

import pytest

from sdar_agent.config import ConfigError, load_config, preset_names
from sdar_agent.parsing import parse_think_action
from sdar_agent.prompts import PromptTemplate, register_template, template_for


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
    assert template_for("some/Other-v0").name == "generic"
    register_template("test/Env-v0", PromptTemplate("test-template", "Intro."))
    assert template_for("test/Env-v0").intro == "Intro."
    with pytest.raises(ValueError, match="rollout.template='nope'"):
        template_for("sdar/ALFWorld-v0", "nope")


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
        ("env.val_split=train", "validation must use a held-out split"),
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
    from sdar_agent.algorithms import ALGORITHMS

    presets = {load_config(name).algo.name: name for name in preset_names() if name.startswith("alfworld_")}
    assert set(presets) == set(ALGORITHMS)
    for name in presets.values():
        cfg = load_config(name)
        assert (cfg.rollout.tasks_per_step, cfg.rollout.group_size, cfg.steps, cfg.algo.lr) == (16, 8, 150, 1e-6)
        assert (cfg.algo.kl_coef, cfg.algo.sdar_lambda, cfg.algo.sdar_beta) == (0.01, 0.01, 5.0)
