"""`HFGenerator` with a tiny random model: responses end at EOS or where the answer closes."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
import torch  # noqa: E402

from sdar_agent import logprobs  # noqa: E402
from sdar_agent.config import RolloutConfig  # noqa: E402
from sdar_agent.generation import HFGenerator, Sampling  # noqa: E402
from sdar_agent.prompts import template_for  # noqa: E402


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


@pytest.mark.parametrize("greedy", [True, False])
def test_the_fast_path_changes_no_token(tiny, greedy, monkeypatch):
    """A shared prompt prefix run once, grouped decoding attention and a dense LM-head input give the plain path's
    tokens, and none of them outlives the call."""
    from transformers import AttentionInterface

    from sdar_agent import decoding, generation

    model, tokenizer = tiny
    prefixes = []  # the fast path must really run the prefix once
    monkeypatch.setattr(generation, "prefix_cache",
                        lambda m, ids, rows: prefixes.append(len(ids)) or logprobs.prefix_cache(m, ids, rows))
    torch.manual_seed(5)
    prefix = torch.randint(100, 4000, (40,)).tolist()
    prompts = [prefix + torch.randint(100, 4000, (n,)).tolist() for n in (3, 9, 1, 5)] + [prefix + [7]]
    outputs = []
    for fast in (False, True):
        torch.manual_seed(11)  # sampling: the same random stream for both
        generator = HFGenerator(model, tokenizer, 0, share_prefix=fast, grouped_attention=fast, contiguous_head=fast)
        outputs.append(generator(prompts, Sampling(16, greedy=greedy)))
    assert prefixes == [40]
    assert outputs[0] == outputs[1]
    assert len(set(map(tuple, outputs[0]))) > 1  # the rows did not all write the same thing
    # nothing outlives the call: no patched layer, no hook, no registered attention, the sampler untouched
    assert all("forward" not in m.__dict__ and not m._forward_pre_hooks for m in model.modules())
    assert decoding.GROUPED_DECODE not in AttentionInterface._global_mapping
    assert model.config._attn_implementation == "sdpa" and torch.multinomial.__module__ == "torch"


def test_grouped_decode_attention_gives_sdpas_tokens_and_is_undone(tiny, monkeypatch):
    """Single-token queries regrouped per key/value head: the same greedy tokens and logits as `sdpa`."""
    from transformers import AttentionInterface

    from sdar_agent import decoding

    model, tokenizer = tiny
    assert model.config.num_attention_heads > model.config.num_key_value_heads  # grouped-query attention
    queries = []  # query lengths the grouped path saw
    real = decoding._grouped_decode_forward
    monkeypatch.setattr(decoding, "_grouped_decode_forward",
                        lambda module, q, *a, **k: queries.append(q.shape[2]) or real(module, q, *a, **k))
    torch.manual_seed(3)
    same = [torch.randint(100, 4000, (12,)).tolist()] * 3  # no padding: transformers drops the mask
    padded = [torch.randint(100, 4000, (n,)).tolist() for n in (4, 11, 7)]
    for prompts in (same, padded):
        outputs = []
        for grouped in (False, True):
            with decoding.grouped_decode_attention(model, grouped):
                assert model.config._attn_implementation == (decoding.GROUPED_DECODE if grouped else "sdpa")
                logits = model(input_ids=torch.tensor([prompts[1]])).logits  # a prompt: transformers' own path
                tokens = HFGenerator(model, tokenizer, 8, grouped_attention=False)(prompts, Sampling(10, greedy=True))
            outputs.append((tokens, logits))
        assert outputs[0][0] == outputs[1][0]
        assert torch.allclose(outputs[0][1], outputs[1][1], atol=1e-5)
    assert 1 in queries and max(queries) > 1  # decoding steps went through the grouped path, prompts too
    assert model.config._attn_implementation == "sdpa"  # restored
    assert decoding.GROUPED_DECODE not in AttentionInterface._global_mapping  # registered for the call only


def test_bf16_generation_on_a_cpu_runs_on_a_copy_that_follows_the_policy_after_sync(tiny):
    """The copy holds the policy's parameters in bf16 (buffers as they were), is made once, and takes the
    policy's new weights at the first call after `sync_weights`, not before."""
    import copy

    from sdar_agent.generation import low_precision_copy

    model, tokenizer = tiny
    policy = copy.deepcopy(model)  # the module's fixture stays as it was
    torch.manual_seed(3)
    prompts = [torch.randint(100, 4000, (n,)).tolist() for n in (6, 11, 3)]
    greedy = Sampling(12, greedy=True)
    generator = HFGenerator(policy, tokenizer, 0, compute_dtype=torch.bfloat16)
    assert generator.weights_copy  # the CPU default for bf16 compute over fp32 weights
    assert not HFGenerator(policy, tokenizer, 0).weights_copy  # fp32: nothing to copy
    first = generator(prompts, greedy)
    runner = generator._copy
    assert {p.dtype for p in runner.parameters()} == {torch.bfloat16}
    assert {b.dtype for b in runner.buffers() if b.is_floating_point()} == {
        b.dtype for b in policy.buffers() if b.is_floating_point()}
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # the policy itself is untouched
    assert first == HFGenerator(low_precision_copy(policy, torch.bfloat16), tokenizer, 0)(prompts, greedy)

    with torch.no_grad():  # an optimizer step's worth of change, large enough to move greedy tokens
        for param in policy.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    assert generator(prompts, greedy) == first  # not synced yet: the old weights
    generator.sync_weights()
    moved = generator(prompts, greedy)
    assert generator._copy is runner  # refreshed in place, not rebuilt
    assert moved == HFGenerator(low_precision_copy(policy, torch.bfloat16), tokenizer, 0)(prompts, greedy)
    assert moved != first


def test_the_lm_head_gets_its_input_contiguous_on_the_policy_and_its_copies(tiny):
    """`logits_to_keep` slices the final hidden states; within `contiguous_head_input` the head (of the policy,
    its bf16 generation copy and a frozen reference copy) receives them contiguous, and computes the same logits."""
    from sdar_agent.generation import low_precision_copy
    from sdar_agent.models import contiguous_head_input, dense_strides, frozen_copy

    model, _ = tiny
    torch.manual_seed(4)
    for rows in (3, 1):  # one row too: `contiguous()` calls its view contiguous whatever its first stride
        ids = torch.randint(100, 4000, (rows, 9))
        for net in (model, low_precision_copy(model, torch.bfloat16), frozen_copy(model, torch.bfloat16)):
            seen: list[bool] = []
            with torch.no_grad(), contiguous_head_input(net):
                probe = net.get_output_embeddings().register_forward_pre_hook(  # after the contiguity hook
                    lambda module, args, seen=seen: seen.append(args[0].stride() == dense_strides(args[0].shape)))
                out = net(ids, logits_to_keep=4, output_hidden_states=True)
                probe.remove()
            assert not net.get_output_embeddings()._forward_pre_hooks  # the hook is the block's only
            last = out.hidden_states[-1][:, -4:, :]
            assert last.stride() != dense_strides(last.shape) and seen == [True]
            head = net.get_output_embeddings()
            assert torch.equal(out.logits, torch.nn.functional.linear(last.contiguous(), head.weight))


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
                        lambda self, model, rows, sampling: calls.append(len(rows)) or original(self, model, rows,
                                                                                                 sampling))
    auto = HFGenerator(model, tokenizer)
    assert auto(prompts, Sampling(6, greedy=True)) == fixed
    assert calls == [5]  # plenty of memory: one call for every row
    calls.clear()
    width = max(map(len, prompts))
    per_row = generation.row_bytes(model.config, width, 6, 4)
    monkeypatch.setattr(generation, "free_memory", lambda device: 2 * (2 * per_row + 1))  # half of it: 2 rows
    assert auto(prompts, Sampling(6, greedy=True)) == fixed
    assert calls == [2, 2, 1]


class FakeEngineModel:
    def __init__(self):
        self.loads: list[dict[str, torch.Tensor]] = []

    def load_weights(self, weights):
        self.loads.append({name: tensor.clone() for name, tensor in weights})


class FakeEngine:
    """Stands in for an in-process `vllm.LLM`: records what it is given, answers fixed token ids."""

    def __init__(self, answer: list[int]):
        from types import SimpleNamespace

        self.model = FakeEngineModel()
        worker = SimpleNamespace(model_runner=SimpleNamespace(model=self.model))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(worker=worker)))
        self.answer, self.calls, self.cache_resets = answer, [], 0

    def generate(self, prompts, params, use_tqdm=True):
        from types import SimpleNamespace

        self.calls.append((prompts, params))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=tuple(self.answer))]) for _ in prompts]

    def reset_prefix_cache(self):
        self.cache_resets += 1


def test_the_vllm_backend_maps_sampling_and_pushes_weights_after_an_update(tiny, monkeypatch):
    import sys
    from types import SimpleNamespace

    from sdar_agent.generation import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(SamplingParams=lambda **kw: kw))
    model, tokenizer = tiny
    eos = tokenizer.eos_token_id
    engine = FakeEngine([11, 12, eos, 13])
    generator = VLLMGenerator(model, tokenizer, engine, seed=0)
    prompts = [[1, 2, 3], [1, 2, 3]]
    out = generator(prompts, Sampling(7, temperature=0.7, top_p=0.9, stop=("</action>",)))
    assert out == [[11, 12, eos], [11, 12, eos]]  # cut after EOS, as HFGenerator does
    sent, params = engine.calls[0]
    assert sent == [{"prompt_token_ids": [1, 2, 3]}] * 2
    assert params[0]["temperature"] == 0.7 and params[0]["top_p"] == 0.9 and params[0]["top_k"] == -1
    assert params[0]["max_tokens"] == 7 and params[0]["stop"] == ["</action>"]
    assert params[0]["include_stop_str_in_output"]
    assert params[0]["seed"] != params[1]["seed"]  # the same prompt twice: two different samples
    generator(prompts, Sampling(7, greedy=True))
    assert engine.calls[1][1][0]["temperature"] == 0.0 and engine.calls[1][1][0]["stop"] is None
    # the weights went in once, before the first call; an update makes the next call push them again
    assert len(engine.model.loads) == 1 and engine.cache_resets == 1
    state = model.state_dict()
    assert all(torch.equal(engine.model.loads[0][k], state[k]) for k in state)
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    generator.sync_weights()
    generator(prompts, Sampling(7))
    assert len(engine.model.loads) == 2 and engine.cache_resets == 2
    assert torch.equal(engine.model.loads[1]["model.norm.weight"], model.model.norm.weight)
    with torch.no_grad():
        model.model.norm.weight.sub_(1.0)


def test_a_lora_policy_is_pushed_with_its_adapter_merged(tiny):
    pytest.importorskip("peft", reason="LoRA needs peft")
    from peft import LoraConfig, get_peft_model

    from sdar_agent.generation import policy_weights

    model, _ = tiny
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():  # peft reads transformers' deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False))
    try:
        weights = policy_weights(lora)
        assert set(weights) == set(base)  # the base model's names, no adapter tensors
        name = "model.layers.0.self_attn.q_proj.weight"
        layer = lora.base_model.model.model.layers[0].self_attn.q_proj
        delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
        assert torch.allclose(weights[name], base[name] + delta, atol=1e-6)
        assert torch.equal(layer.base_layer.weight, base[name])  # the model itself is untouched
    finally:
        lora.unload()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the real vLLM engine needs a CUDA GPU")
def test_the_real_vllm_engine_generates_and_follows_the_policy(tiny):
    pytest.importorskip("vllm", reason="pip install 'sdar[vllm]'")
    from sdar_agent.generation import make_generator

    model, tokenizer = tiny
    generator = make_generator(RolloutConfig(backend="vllm", max_prompt_tokens=64, max_response_tokens=8),
                               model, tokenizer, torch.bfloat16, seed=0)
    prompts = [tokenizer("Go to the kitchen.", add_special_tokens=False)["input_ids"]] * 4
    out = generator(prompts, Sampling(8, greedy=True))
    assert len(out) == 4 and all(0 < len(r) <= 8 for r in out) and len({tuple(r) for r in out}) == 1


def test_the_cache_paths_draw_no_deprecation_message(tiny):
    """Generation, a shared prefix's cache, its extension and a log-prob pass over it hand transformers the KV
    cache under the name the installed version expects (5.24 renamed `past_key_values` to `cache`), so a run's
    console carries none of its deprecation messages."""
    import logging

    model, tokenizer = tiny
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    if hasattr(logging.Logger, "warning_once"):  # transformers says each message once per process
        logging.Logger.warning_once.cache_clear()
    prefix = list(range(100, 140))
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            HFGenerator(model, tokenizer, 0)([prefix + [7, 8], prefix + [9]], Sampling(4, greedy=True))
            one_row = logprobs.prefix_cache(model, torch.tensor(prefix), 1)
            logprobs.extend_cache(model, one_row, torch.tensor([5, 6]))
            batch = logprobs.pack([prefix + [7], prefix + [8, 9]], [[3, 4], [5]], tokenizer.pad_token_id,
                                  share_prefix=True)
            logprobs.response_logprobs(model, batch, prefix_kv=one_row)
    finally:
        library.removeHandler(handler)
    messages = [record.getMessage() for record in records] + [str(w.message) for w in caught]
    assert not [m for m in messages if "deprecated" in m.lower()], messages
