"""`HFGenerator` with a tiny random model: responses end at EOS or where the answer closes."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
import torch  # noqa: E402

from sdar_agent.config import ModelConfig, RolloutConfig  # noqa: E402
from sdar_agent.generation import HFGenerator, Sampling  # noqa: E402
from sdar_agent.models import load_policy, load_tokenizer  # noqa: E402
from sdar_agent.prompts import template_for  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny")
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    return model, tokenizer


def first_completion(tokenizer, tokens: list[int], text: str) -> int:
    """The length of the shortest prefix of `tokens` whose text holds `text` (case-insensitive)."""
    return next((j for j in range(1, len(tokens) + 1) if text.lower() in tokenizer.decode(tokens[:j]).lower()),
                len(tokens))


def test_a_response_ends_with_the_token_that_completes_a_stop_text(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer, batch_size=8)
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"]
               for text in ("Go to the kitchen.", "Open the fridge and look inside it please", "Buy a red lamp")]
    free = generator(prompts, Sampling(24, greedy=True))
    assert all(len(r) == 24 for r in free)  # the random model writes no EOS: every row runs to the limit
    # a stop text the first response writes in its middle, upper-cased (matching ignores case)
    stop = tokenizer.decode(free[0][6:8]).upper()
    assert stop.strip()
    stopped = generator(prompts, Sampling(24, greedy=True, stop=(stop,)))
    for row, response in enumerate(free):
        end = first_completion(tokenizer, response, stop)
        assert stopped[row] == response[:end], row  # greedy: the same tokens, cut where the text first appears
    assert len(stopped[0]) <= 8


def test_sampling_takes_the_templates_answer_ends_unless_switched_off():
    rollout = RolloutConfig()
    assert Sampling.from_config(rollout, answer_ends=template_for("sdar/ALFWorld-v0").answer_ends).stop == (
        "</action>",)
    assert Sampling.from_config(rollout, 0.0, template_for("sdar/SearchQA-v0").answer_ends).stop == (
        "</search>", "</answer>")
    rollout.stop_at_answer_end = False
    assert Sampling.from_config(rollout, answer_ends=("</action>",)).stop == ()


def test_rows_per_call_come_from_the_memory_a_row_needs():
    from types import SimpleNamespace

    from sdar_agent.generation import rows_that_fit

    config = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=8,
                             head_dim=2, intermediate_size=16, vocab_size=100, _attn_implementation="sdpa")
    # per row: KV 2*2*2*2*(10+6)*4 = 1024, prefill 10*(4*8+3*16)*4 = 3200, vocabulary 4*100*4 = 1600 bytes
    assert rows_that_fit(config, 10, 6, 4, free_bytes=2 * 5824 * 10) == 10
    config._attn_implementation = "eager"  # + 4 heads * 10 * 10 float32 scores = 1600 bytes
    assert rows_that_fit(config, 10, 6, 4, free_bytes=2 * 5824 * 10) == 7  # 58240 // 7424
    assert rows_that_fit(config, 10, 6, 4, free_bytes=0) == 1


def test_an_unset_batch_size_sizes_each_call_from_free_memory(tiny, monkeypatch):
    import sdar_agent.generation as generation

    model, tokenizer = tiny
    prompts = [tokenizer(f"Task {i}: go to the desk number {i}.", add_special_tokens=False)["input_ids"]
               for i in range(5)]
    fixed = HFGenerator(model, tokenizer, batch_size=2)(prompts, Sampling(6, greedy=True))
    calls = []
    original = generation.HFGenerator._generate
    monkeypatch.setattr(generation.HFGenerator, "_generate",
                        lambda self, rows, sampling: calls.append(len(rows)) or original(self, rows, sampling))
    auto = HFGenerator(model, tokenizer)
    assert auto(prompts, Sampling(6, greedy=True)) == fixed
    assert calls == [5]  # plenty of memory: one call for every row
    calls.clear()
    width = max(map(len, prompts))
    per_row = generation.row_bytes(model.config, width, 6, 4)
    monkeypatch.setattr(generation, "free_memory", lambda device: 2 * (2 * per_row + 1))  # half of it: 2 rows
    assert auto(prompts, Sampling(6, greedy=True)) == fixed
    assert calls == [2, 2, 1]
