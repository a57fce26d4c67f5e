"""Generation backends behind one small protocol, and the sampling settings they honour.

The rollout loop only calls a `Generator`: token-id prompts in, token-id responses out. The
default backend is `HFGenerator` (batched `transformers.generate`); another backend (a compiled
static-cache path, vLLM) implements the same two methods and slots in without touching
`rollout.collect`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from sdar_agent.config import RolloutConfig
from sdar_agent.decoding import grouped_decode_attention
from sdar_agent.logprobs import CACHE, prefix_cache, usable_prefix_length
from sdar_agent.models import autocast, contiguous_head_input


@dataclass(frozen=True)
class Sampling:
    """Generation settings for one `collect` call."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False
    stop: tuple[str, ...] = ()
    """Texts that end a response once generated, as EOS does (the answer's closing tags); matched
    case-insensitively, the response kept up to and including the token that completes one."""

    @classmethod
    def from_config(cls, rollout: RolloutConfig, temperature: float | None = None,
                    answer_ends: Sequence[str] = ()) -> Sampling:
        """The rollout config's sampling; `temperature` overrides it (0 = greedy, e.g. validation).

        `answer_ends` (the template's closing tags) become stop texts when `rollout.stop_at_answer_end`.
        """
        t = rollout.temperature if temperature is None else temperature
        return cls(rollout.max_response_tokens, temperature=max(t, 1e-5), top_p=rollout.top_p, top_k=rollout.top_k,
                   greedy=t == 0, stop=tuple(answer_ends) if rollout.stop_at_answer_end else ())


class Generator(Protocol):
    """What the rollout loop needs of a generation backend."""

    def __call__(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[list[int]]:
        """One response per prompt: token ids up to and including EOS or the token completing a stop text."""

    def sync_weights(self) -> None:
        """Make the next call use the policy's current weights (after an optimizer step)."""

    def eos_ids(self) -> list[int]:
        """The tokens that end a response."""


class HFGenerator:
    """Batched `transformers` generation on the policy itself: left padding, KV cache, length-sorted chunks.

    Each `generate` call takes as many rows as free memory holds (`rows_that_fit`), unless
    `batch_size` caps them: at small batches decoding reads every weight once per token whatever
    the batch, so fewer, larger calls are faster. The leading tokens all rows of a call share are
    run once and their keys and values shared (`share_prefix`): the same tokens come out, since
    each row attends to the same keys and values at the same positions.

    Samples come from exactly the configured distribution, softmax(logits / T) with the configured
    top-p / top-k and nothing else: the checkpoint's own `generation_config` (a repetition penalty,
    a default top-k of 50, ...) is set aside for the call, or PPO's old log-probs would be wrong.
    Forward passes run in `compute_dtype`: under autocast over the policy's weights, or, with
    `weights_copy`, on a copy of the policy whose parameters are stored in `compute_dtype`
    (`low_precision_copy`, 2 more bytes per parameter; refreshed at the first call after
    `sync_weights`). On a CPU with float32 weights the copy is the default for a narrower
    `compute_dtype`: autocast there recasts every frozen weight at every decoding step (it caches
    only trained ones). Either way samples come from the policy computed in `compute_dtype`, as a
    vLLM engine's do; the trainer's log-probs are recomputed by the policy under autocast. Within
    each call the LM head's input is made dense (`models.contiguous_head_input`) and, on a CPU,
    decoding steps' attention runs per key/value head (`decoding.grouped_decode_attention`); both
    are undone when the call returns. `benchmarks/generation.py` measures each saving.
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 0,
                 compute_dtype: torch.dtype = torch.float32, share_prefix: bool = True,
                 grouped_attention: bool = True, contiguous_head: bool = True,
                 weights_copy: bool | None = None) -> None:
        """`batch_size` caps the rows of one `generate` call; 0 sizes each call from free memory.

        `share_prefix`: the prompts' common leading tokens are run once per call and their keys and
        values shared by every row (`rollout.share_prompt_prefix`). `grouped_attention=False` keeps
        transformers' own decoding attention on a CPU, `contiguous_head=False` hands the LM head the
        sliced hidden states as transformers does (both for comparisons).
        `weights_copy`: generate on a copy of the policy stored in `compute_dtype` (None: on a CPU
        when `compute_dtype` is narrower than the policy's weights; no copy when they match).
        """
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.compute_dtype, self.share_prefix = compute_dtype, share_prefix
        self.grouped_attention, self.contiguous_head = grouped_attention, contiguous_head
        weights = next(model.parameters())
        narrower = compute_dtype.itemsize < weights.dtype.itemsize
        self.weights_copy = narrower and (weights.device.type == "cpu" if weights_copy is None else weights_copy)
        self._copy: Any = None
        self._stale = False

    def sync_weights(self) -> None:
        """Mark the low-precision copy (if any) stale: the next call copies the policy's weights into it."""
        self._stale = True

    def eos_ids(self) -> list[int]:
        """The tokens that end a response."""
        return eos_ids(self.model, self.tokenizer)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[list[int]]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[int]] = [[] for _ in prompts]
        model = self._runner()
        was_training, own_config = model.training, model.generation_config
        device = next(model.parameters()).device
        model.eval()
        model.generation_config = self._neutral_config()
        try:
            fp32 = next(model.parameters()).dtype == torch.float32
            with autocast(device, self.compute_dtype if fp32 else torch.float32), \
                    grouped_decode_attention(model, self.grouped_attention and device.type == "cpu"), \
                    contiguous_head_input(model) if self.contiguous_head else contextlib.nullcontext():
                start = 0
                while start < len(order):
                    rows = self.batch_size or rows_that_fit(
                        model.config, len(prompts[order[-1]]), sampling.max_new_tokens,
                        torch.empty((), dtype=self.compute_dtype).element_size(), free_memory(device))
                    chunk = order[start : start + rows]
                    for i, ids in zip(chunk, self._generate(model, [prompts[i] for i in chunk], sampling), strict=True):
                        out[i] = ids
                    start += len(chunk)
        finally:
            model.train(was_training)
            model.generation_config = own_config
        return out

    def _runner(self) -> Any:
        """The model `generate` runs on: the policy, or its `compute_dtype` copy brought up to date."""
        if not self.weights_copy:
            return self.model
        if self._copy is None:
            self._copy = low_precision_copy(self.model, self.compute_dtype)
        elif self._stale:
            for mine, theirs in zip(self._copy.parameters(), self.model.parameters(), strict=True):
                mine.copy_(theirs)
        self._stale = False
        return self._copy

    def _neutral_config(self) -> Any:
        """A generation config with nothing but the special tokens: no penalties, no default top-k."""
        from transformers import GenerationConfig

        return GenerationConfig(eos_token_id=eos_ids(self.model, self.tokenizer),
                                pad_token_id=self.tokenizer.pad_token_id, bos_token_id=self.tokenizer.bos_token_id)

    def _generate(self, model: Any, prompts: list[list[int]], sampling: Sampling) -> list[list[int]]:
        pad = self.tokenizer.pad_token_id
        device = next(model.parameters()).device
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "use_cache": True, "pad_token_id": pad}
        # The leading tokens all rows share (system prompt, instructions, a group's whole first
        # prompt) go through the model once: rows are laid out [prefix | left padding | own tokens].
        n_prefix = usable_prefix_length(prompts) if self.share_prefix else 0
        cache = prefix_cache(model, torch.tensor(prompts[0][:n_prefix]), len(prompts)) if n_prefix else None
        if cache is None:
            n_prefix = 0
        width = n_prefix + max(len(p) - n_prefix for p in prompts)
        if cache is not None:
            kwargs[CACHE] = cache
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        input_ids[:, :n_prefix] = torch.tensor(prompts[0][:n_prefix])
        attention[:, :n_prefix] = 1
        for row, p in enumerate(prompts):
            input_ids[row, width - len(p) + n_prefix :] = torch.tensor(p[n_prefix:])
            attention[row, width - len(p) + n_prefix :] = 1
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:  # top_k=0 and top_p=1.0 switch those filters off explicitly
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        stop = StopTexts(self.tokenizer, sampling.stop, width) if sampling.stop else None
        if stop is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        responses = output[:, width:].tolist()  # (B, T)
        if stop is not None:
            responses = [r[: stop.ends.get(row, len(r))] for row, r in enumerate(responses)]
        eos = set(model.generation_config.eos_token_id)
        return [cut_at_eos(r, eos, pad) for r in responses]


class StopTexts(StoppingCriteria):
    """Ends each row of a `generate` call once its response contains one of `texts` (case-insensitive).

    Called after every decoding step; it decodes only the newest tokens of rows still running (enough
    to hold the longest text), so a match is found at the step whose token completes it. `ends` maps
    a row to its response length at that step: the response is cut there, the padding after it dropped.
    """

    def __init__(self, tokenizer: Any, texts: Sequence[str], prompt_width: int) -> None:
        self.tokenizer, self.texts, self.width = tokenizer, tuple(t.lower() for t in texts), prompt_width
        self.window = max(len(t) for t in self.texts) + 1  # every token holds at least one character
        self.ends: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        length = input_ids.shape[1] - self.width
        window = min(self.window, length)
        running = [row for row in range(input_ids.shape[0]) if row not in self.ends]
        tails = self.tokenizer.batch_decode(input_ids[running, -window:].tolist(), skip_special_tokens=True)
        for row, tail in zip(running, tails, strict=True):
            if any(text in tail.lower() for text in self.texts):
                self.ends[row] = length
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        done[list(self.ends)] = True
        return done


def low_precision_copy(model: Any, dtype: torch.dtype) -> Any:
    """A frozen copy of `model` (its wrapper, e.g. a LoRA adapter, included) with its parameters stored in `dtype`.

    Buffers keep their dtype: rotary inverse frequencies rounded to bfloat16 would shift the
    angles of late positions by whole radians.
    """
    copied = copy.deepcopy(model)
    for param in copied.parameters():
        param.requires_grad_(False)
        if param.is_floating_point():
            param.data = param.data.to(dtype)
    return copied


def free_memory(device: torch.device) -> int:
    """Bytes this process could still allocate on `device`.

    A GPU's free memory plus what PyTorch's allocator holds unused; on the host, Linux's
    `MemAvailable` (8 GiB where it cannot be read).
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(
            device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def rows_that_fit(config: Any, prompt_tokens: int, new_tokens: int, dtype_bytes: int, free_bytes: int,
                  share: float = 0.5) -> int:
    """How many rows of `prompt_tokens` + `new_tokens` fit in `share` of `free_bytes` (at least one)."""
    return max(1, int(share * free_bytes) // row_bytes(config, prompt_tokens, new_tokens, dtype_bytes))


def row_bytes(config: Any, prompt_tokens: int, new_tokens: int, dtype_bytes: int) -> int:
    """The memory one row of a `generate` call takes at its peak.

    The KV cache of every layer over the whole sequence, the largest prefill activations of one
    layer (hidden states and the MLP's intermediate; with eager attention also its float32 scores,
    which sdpa and flash attention never hold whole), and float32 logits, probabilities and the
    top-p sort over the vocabulary.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    kv = 2 * text.num_hidden_layers * kv_heads * head_dim * (prompt_tokens + new_tokens) * dtype_bytes
    prefill = prompt_tokens * (4 * text.hidden_size + 3 * text.intermediate_size) * dtype_bytes
    if getattr(text, "_attn_implementation", None) in (None, "eager"):
        prefill += heads * prompt_tokens * prompt_tokens * 4
    return kv + prefill + 4 * text.vocab_size * 4


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The token ids that end a response: the model's generation config's and the tokenizer's."""
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    return list(dict.fromkeys([*ids, tokenizer.eos_token_id]))


def cut_at_eos(tokens: list[int], eos: set[int], pad: int) -> list[int]:
    """The response up to and including its first end-of-sequence token (padding removed)."""
    for j, t in enumerate(tokens):
        if t in eos:
            return tokens[: j + 1]
    while tokens and tokens[-1] == pad:
        tokens = tokens[:-1]
    return tokens


# The attribute paths, across vLLM versions, from an in-process `vllm.LLM` to the model its worker
# runs (V1 with in-process engine core; the older V0 engine).
_VLLM_MODEL_PATHS = (
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner", "model"),
    ("llm_engine", "model_executor", "driver_worker", "model_runner", "model"),
)


class VLLMGenerator:
    """Generation on a vLLM engine colocated with the trainer (`rollout.backend=vllm`; `pip install 'sdar[vllm]'`).

    Same contract as `HFGenerator`: token-id prompts in, token-id responses out, cut at EOS or at
    the first stop text (vLLM's `stop` with the text kept), sampled from softmax(logits / T) with
    the configured top-p / top-k and nothing else. The trainer recomputes log-probs with the policy,
    so the engine's own are not used. The engine starts from the policy's weights; after
    `sync_weights()` (the trainer calls it after every optimizer step) the next call first pushes
    the policy's current weights into it (a LoRA adapter's update added) and drops its prefix cache.
    """

    def __init__(self, policy: Any, tokenizer: Any, engine: Any, seed: int = 0) -> None:
        self.policy, self.tokenizer, self.engine = policy, tokenizer, engine
        self._stale = True  # the engine may hold other weights (a resumed run): push before the first call
        self._seeds = torch.Generator().manual_seed(seed)

    def sync_weights(self) -> None:
        """Mark the engine's weights stale: the next call pushes the policy's."""
        self._stale = True

    def eos_ids(self) -> list[int]:
        """The tokens that end a response."""
        return eos_ids(self.policy, self.tokenizer)

    def __call__(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[list[int]]:
        if self._stale:
            self._push_weights()
        # one seed per row: rows with the same prompt (a group's first turn) must not draw the same sample
        params = [self._sampling_params(sampling) for _ in prompts]
        outputs = self.engine.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        eos, pad = set(self.eos_ids()), self.tokenizer.pad_token_id
        return [cut_at_eos(list(o.outputs[0].token_ids), eos, pad) for o in outputs]

    def _sampling_params(self, sampling: Sampling) -> Any:
        from vllm import SamplingParams

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self._seeds))
        return SamplingParams(
            n=1, max_tokens=sampling.max_new_tokens, seed=seed,
            temperature=0.0 if sampling.greedy else sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,  # -1: no top-k filter
            stop=list(sampling.stop) or None, include_stop_str_in_output=True,
            stop_token_ids=self.eos_ids(), skip_special_tokens=False,
        )

    def _push_weights(self) -> None:
        target = engine_model(self.engine)
        with torch.no_grad():
            target.load_weights(list(policy_weights(self.policy).items()))
        if hasattr(self.engine, "reset_prefix_cache"):
            self.engine.reset_prefix_cache()  # cached KV of the old weights must not be reused
        self._stale = False


def engine_model(engine: Any) -> Any:
    """The model inside an in-process vLLM engine, whose `load_weights` takes (name, tensor) pairs."""
    for path in _VLLM_MODEL_PATHS:
        node = engine
        for name in path:
            node = getattr(node, name, None)
            if node is None:
                break
        if node is not None and hasattr(node, "load_weights"):
            return node
    raise RuntimeError(
        "rollout.backend=vllm: cannot reach the model inside this vLLM engine to update its weights (looked "
        f"for {' / '.join('.'.join(p) for p in _VLLM_MODEL_PATHS)}). Run the engine in-process "
        "(VLLM_ENABLE_V1_MULTIPROCESSING=0, set by the trainer) or use rollout.backend=hf."
    )


def policy_weights(policy: Any) -> dict[str, torch.Tensor]:
    """The policy's weights under the base model's names; a LoRA adapter's update is added to the copies.

    The model itself is left untouched (merging in place and back would drift the frozen base
    weights by rounding at every push).
    """
    if not hasattr(policy, "get_base_model"):
        return {name: tensor.detach() for name, tensor in policy.state_dict().items()}

    def base_name(name: str) -> str:
        return name.removeprefix("base_model.model.").replace(".base_layer.", ".")

    deltas: dict[str, torch.Tensor] = {}
    for name, module in policy.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "lora_A"):
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    key = base_name(name) + ".weight"
                    deltas[key] = deltas.get(key, 0) + module.get_delta_weight(adapter).detach()
    weights = {}
    for name, tensor in policy.state_dict().items():
        if "lora_" not in name:
            key = base_name(name)
            weights[key] = tensor.detach() + deltas[key] if key in deltas else tensor.detach()
    return weights


def build_vllm_engine(policy: Any, tokenizer: Any, rollout: RolloutConfig, dtype: torch.dtype, seed: int) -> Any:
    """A `vllm.LLM` in this process on the policy's current weights (written to a temporary folder)."""
    import os
    import tempfile

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: weights can be pushed
    try:
        from vllm import LLM
    except ImportError as err:
        raise ImportError("rollout.backend=vllm needs vllm: pip install 'sdar[vllm]' (a CUDA machine)") from err
    folder = tempfile.mkdtemp(prefix="sdar-vllm-")
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    base.save_pretrained(folder, state_dict=policy_weights(policy))
    tokenizer.save_pretrained(folder)
    return LLM(model=folder, tokenizer=folder, dtype=str(dtype).removeprefix("torch."), seed=seed,
               gpu_memory_utilization=rollout.vllm_gpu_memory_utilization, enable_prefix_caching=True,
               max_model_len=rollout.max_prompt_tokens + rollout.max_response_tokens)


def make_generator(rollout: RolloutConfig, policy: Any, tokenizer: Any, dtype: torch.dtype, seed: int,
                   weights_copy: bool | None = None) -> Generator:
    """The backend `rollout.backend` names, on `policy` (`weights_copy`: `HFGenerator`'s)."""
    if rollout.backend == "vllm":
        return VLLMGenerator(policy, tokenizer, build_vllm_engine(policy, tokenizer, rollout, dtype, seed), seed)
    return HFGenerator(policy, tokenizer, rollout.generation_batch_size, dtype, rollout.share_prompt_prefix,
                       weights_copy=weights_copy)
