"""The SFT warm start on expert demonstrations, with the tiny model on generated ALFWorld games."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")

from sdar_agent.config import load_config  # noqa: E402
from sdar_agent.models import load_tokenizer  # noqa: E402
from sdar_agent.prompts import template_for  # noqa: E402
from sdar_agent.sft import collect_demonstrations  # noqa: E402
from sdar_agent.train import run  # noqa: E402
from tests.helpers import undocumented  # noqa: E402


def config(tmp_path, games, *extra):
    return load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", "name=sft", f"output_dir={tmp_path}", "steps=1",
        "save_every=0", "val_every=0",
        "env.num_workers=0", "env.max_turns=20", "rollout.tasks_per_step=1", "rollout.group_size=2",
        "rollout.max_response_tokens=8", "log.progress=false", "log.tensorboard=false", "log.plot=false",
        "sft.episodes=3", "sft.batch_size=8", "sft.lr=1e-3", "sft.epochs=2", "sft.noise=0", "sft.max_turns=0",
        f"env.kwargs={{data_dir: {games}}}", "algo.name=grpo", *extra])


def test_demonstrations_are_train_turns_with_response_only_targets(tmp_path, alfworld_games):
    cfg = config(tmp_path, alfworld_games)
    tokenizer = load_tokenizer(cfg.model)
    template = template_for(cfg.env.id)
    samples, summary = collect_demonstrations(cfg, tokenizer, template, {tokenizer.eos_token_id})
    again, _ = collect_demonstrations(cfg, tokenizer, template, {tokenizer.eos_token_id})
    assert summary["sft/expert_success_rate"] == 1.0 and len(samples) == summary["sft/samples"]
    assert [s.response_ids for s in samples] == [s.response_ids for s in again]  # seeded, reproducible
    from sdar_agent.workers import make_env

    env = make_env(cfg.env.id, {**cfg.env.kwargs, "split": "train"}, 5)
    train_ids = set(env.unwrapped.task_ids)
    env.close()
    for sample in samples:
        answer = tokenizer.decode(sample.response_ids, skip_special_tokens=True)
        assert template.parse(answer).valid and sample.response_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(sample.prompt_ids).rstrip().endswith("assistant")  # prompt = the chat up to the answer
        assert sample.task_id in train_ids  # demonstrations come from the train split only


def test_noisy_demonstrations_show_recoveries_from_off_path_states(tmp_path, alfworld_games):
    cfg = config(tmp_path, alfworld_games, "sft.episodes=6", "sft.noise=0.3", "env.max_turns=40")
    tokenizer = load_tokenizer(cfg.model)
    template = template_for(cfg.env.id)
    clean, _ = collect_demonstrations(config(tmp_path, alfworld_games, "sft.episodes=6", "env.max_turns=40"),
                                      tokenizer, template, {tokenizer.eos_token_id})
    noisy, summary = collect_demonstrations(cfg, tokenizer, template, {tokenizer.eos_token_id})
    again, _ = collect_demonstrations(cfg, tokenizer, template, {tokenizer.eos_token_id})
    assert summary["sft/expert_success_rate"] == 1.0  # the expert recovers from every wrong action
    assert [s.prompt_ids for s in noisy] == [s.prompt_ids for s in again]  # seeded, reproducible
    # every kept turn is still the expert's, but some are taken from states off its own path
    assert {tuple(s.prompt_ids) for s in noisy} - {tuple(s.prompt_ids) for s in clean}
    steps = [s.step for s in noisy]
    assert any(b - a > 1 for a, b in zip(steps, steps[1:], strict=False) if b > a)  # a wrong turn left no sample


def test_demonstrations_have_their_own_turn_limit(tmp_path, alfworld_games):
    tokenizer = load_tokenizer(load_config("demo", ["model.name=tiny"]).model)
    template = template_for("sdar/ALFWorld-v0")
    noisy = ("sft.episodes=6", "sft.noise=0.3")
    short, short_summary = collect_demonstrations(config(tmp_path, alfworld_games, *noisy, "env.max_turns=10"),
                                                  tokenizer, template, {tokenizer.eos_token_id})
    own, own_summary = collect_demonstrations(
        config(tmp_path, alfworld_games, *noisy, "env.max_turns=10", "sft.max_turns=40"),
        tokenizer, template, {tokenizer.eos_token_id})
    assert max(s.step for s in short) < 10
    assert own_summary["sft/expert_success_rate"] == 1.0 > short_summary["sft/expert_success_rate"]
    assert max(s.step for s in own) >= 10  # turns past the RL stage's limit, kept


def test_sft_then_rl_hands_over_the_model(tmp_path, alfworld_games, capsys, caplog):
    import logging

    cfg = config(tmp_path, alfworld_games)
    with caplog.at_level(logging.INFO):
        results = run(cfg)
    console = capsys.readouterr().err + caplog.text
    assert "Writing model shards" not in console and "Loading weights" not in console  # one progress bar
    assert "resolved config in" in console and "algo:" not in console  # where the config is, not the config
    rows = [json.loads(line) for line in (tmp_path / "sft" / "sft" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["sft/loss"] for r in rows if "sft/loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # the loss on the expert's responses goes down
    assert rows[0]["sft/episodes"] == 3 and "sft/episodes" not in rows[1]  # the demonstrations' figures, once
    rl_rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert not undocumented(rows + rl_rows)  # every key of both stages is described in tracking.METRICS
    final = tmp_path / "sft" / "sft" / "final"
    assert (final / "config.json").is_file()
    rl_config = (tmp_path / "sft" / "config.yaml").read_text()
    assert f"name: {final}" in rl_config  # the RL stage loaded the SFT folder
    assert results["rl"]["step"] == 1


def test_train_layers_updates_only_the_top_blocks(tmp_path, alfworld_games):
    import torch

    from sdar_agent.stages import SFT
    from sdar_agent.trainer import Trainer

    cfg = config(tmp_path, alfworld_games, "model.train_layers=1", "sft.epochs=1")
    trainer = Trainer(cfg, SFT)
    try:
        model = trainer.acc.unwrap_model(trainer.model)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        trainer.train_step()
        changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}
    finally:
        trainer.close()
    trained = {name for name in before if name.startswith(("model.layers.1.", "model.norm."))}
    assert changed == trained
    assert {id(p) for p in trainer.params} == {id(p) for n, p in model.named_parameters() if n in trained}


def test_train_layers_is_checked(tmp_path, alfworld_games):
    from sdar_agent.config import ConfigError

    with pytest.raises(ConfigError, match="model.train_layers=1 and model.lora_rank=4"):
        config(tmp_path, alfworld_games, "model.train_layers=1", "model.lora_rank=4")
    from sdar_agent.stages import SFT
    from sdar_agent.trainer import Trainer

    trainer = Trainer(config(tmp_path, alfworld_games, "model.train_layers=2"), SFT)  # the whole depth
    trainer.close()
    assert len(trainer.params) == len(list(trainer.acc.unwrap_model(trainer.model).parameters()))


def test_sft_teaches_the_tiny_model_the_answer_format(tmp_path, alfworld_games):
    from sdar_agent.generation import Sampling
    from sdar_agent.stages import SFT
    from sdar_agent.trainer import Trainer

    cfg = config(tmp_path, alfworld_games, "sft.episodes=2", "sft.epochs=40", "sft.lr=3e-3", "algo.micro_batch_size=8")
    trainer = Trainer(cfg, SFT)
    try:
        prompts = [s.prompt_ids for s in trainer.source.demos]
        before = trainer.generator(prompts, Sampling(48, greedy=True))
        while trainer.state.step < trainer.steps:
            trainer.train_step()
        after = trainer.generator(prompts, Sampling(48, greedy=True))
    finally:
        trainer.close()

    def valid(responses):
        texts = [trainer.tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        return sum(trainer.template.parse(t).valid for t in texts) / len(texts)

    assert valid(before) == 0.0 and valid(after) >= 0.8, (valid(before), valid(after))


def test_questions_the_expert_cannot_ground_are_skipped_and_counted(tmp_path, caplog):
    import logging

    pytest.importorskip("pyserini", reason="Search-QA's extras are not installed (pip install 'sdar[searchqa]')")
    from tests.integration.test_searchqa import PASSAGES, write_qa

    qfile, cfile = write_qa(tmp_path, [("Who directed the film Jaws?", ["Steven Spielberg"]),
                                       ("Who is the mayor of Amity Island?", ["Larry Vaughn"])], PASSAGES)
    cfg = load_config("demo", [
        "model.name=tiny", "name=sft", f"output_dir={tmp_path}", "env.id=sdar/SearchQA-v0", "env.max_turns=4",
        f"env.kwargs={{questions: {qfile}, corpus: {cfile}, topk: 1}}", "env.num_workers=0", "sft.episodes=8",
        "sft.noise=0", "sft.max_turns=0", "skills.bank=searchqa", "log.progress=false"])
    tokenizer = load_tokenizer(cfg.model)
    with caplog.at_level(logging.INFO, logger="sdar_agent.sft"):
        samples, summary = collect_demonstrations(cfg, tokenizer, template_for(cfg.env.id), {tokenizer.eos_token_id})
    skipped = summary["sft/skipped_episodes"]
    assert 0 < skipped < 8 and summary["sft/expert_success_rate"] == (8 - skipped) / 8
    assert {s.task_id for s in samples} == {"q0"}  # only the question with a grounded demonstration
    assert f"{skipped:.0f} of 8 episodes skipped" in caplog.text
