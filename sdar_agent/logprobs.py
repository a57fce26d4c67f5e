"""Log-probabilities of sampled response tokens under a model, in micro-batches."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from sdar_agent.losses import entropy_from_logits
from sdar_agent.models import autocast, contiguous_head_input

MIN_SHARED_PREFIX = 16
"""Fewest shared leading tokens worth one extra forward: below this, rows are run whole."""

RUN_COST = 64
"""What one more forward costs `plan_micro_batches`, in tokens run."""

CACHE = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"
"""The name of a model's KV cache argument and output: transformers 5.24 renamed `past_key_values`."""


def shared_prefix_length(seqs: Sequence[Sequence[int]], keep: int = 1) -> int:
    """How many leading tokens all `seqs` have in common, leaving at least `keep` tokens of each after them."""
    if not seqs:
        return 0
    first, limit = seqs[0], min(len(s) for s in seqs) - keep
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


def usable_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """The shared leading tokens worth running once for `prompts`: all but each prompt's last, or 0.

    0 for a single prompt or fewer than `MIN_SHARED_PREFIX` shared tokens.
    """
    n = shared_prefix_length(prompts, keep=1) if len(prompts) > 1 else 0
    return n if n >= MIN_SHARED_PREFIX else 0


def plan_micro_batches(prompts: Sequence[Sequence[int]], response_lengths: Sequence[int], size: int,
                       cached: int = 0) -> list[list[int]]:
    """Micro-batches of at most `size` rows, for passes without gradient, that run the fewest tokens.

    Such a pass runs a micro-batch's shared leading tokens once (`pack(..., share_prefix=True)`,
    `extend_cache`), then each row's rest of prompt and its response, padded to the longest. The
    rows are sorted by their prompt tokens, so that rows sharing long prefixes (the same turn of a
    group's rollouts, the same state reached twice) are neighbours, then cut into runs of
    neighbours by dynamic programming over that count: the micro-batch's shared tokens beyond the
    first `cached` (a cache made once for all micro-batches: every prompt must be longer than it)
    plus rows x its longest rest. Returns lists of indices into `prompts`; a micro-batch's shared
    prefix is `usable_prefix_length` of its prompts (at least `cached`).
    """
    if size < 1:
        raise ValueError(f"size={size}: a micro-batch holds at least one row")
    order = sorted(range(len(prompts)), key=lambda i: (prompts[i], response_lengths[i]))
    # leading tokens each sorted prompt shares with the next; a run's shared prefix is their minimum
    common = [shared_prefix_length([prompts[a], prompts[b]], keep=0)
              for a, b in zip(order[:-1], order[1:], strict=True)]
    n = len(order)
    best, cut = [0] + [math.inf] * n, [0] * (n + 1)  # fewest tokens for the first k rows; where the last run starts
    for end in range(1, n + 1):
        shared, shortest, longest = math.inf, math.inf, 0
        for start in range(end - 1, max(end - size, 0) - 1, -1):  # the run order[start:end], growing leftwards
            i = order[start]
            if start < end - 1:
                shared = min(shared, common[start])
            shortest, longest = min(shortest, len(prompts[i])), max(longest, len(prompts[i]) + response_lengths[i])
            usable = min(shared, shortest - 1) if start < end - 1 else 0  # as usable_prefix_length: one token kept
            prefix = max(usable if usable >= MIN_SHARED_PREFIX else 0, cached)
            tokens = best[start] + RUN_COST + (prefix - cached) + (end - start) * (longest - prefix)
            if tokens <= best[end]:  # ties go to the longer run: fewer forwards
                best[end], cut[end] = tokens, start
    runs, end = [], n
    while end:
        runs.append(order[cut[end] : end])
        end = cut[end]
    return runs[::-1]


def pack(prompts: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int,
         share_prefix: bool = False, prefix_length: int | None = None) -> dict[str, torch.Tensor]:
    """Left-padded prompt+response sequences, right-aligned so every response ends at the last column.

    Returns input_ids (B, L), attention_mask (B, L), position_ids (B, L), and response_mask
    (B, T) over the last T = max response length positions' *targets*.

    With `share_prefix`, the leading tokens every prompt shares (at least `MIN_SHARED_PREFIX`, at
    most all but each prompt's last) are taken out as `prefix_ids` (P,): input_ids then holds the
    rest, attention_mask is (B, P + L) with the prefix first, and position_ids count on from P.
    `response_logprobs` runs the prefix once, not once per row (passes without gradient only).
    `prefix_length` fixes the prefix's length instead (e.g. the prefix a larger set of prompts
    shares, whose cache is computed once for all their micro-batches); every prompt must share it
    and keep at least one token after it.
    """
    if share_prefix and prefix_length is not None:
        if prefix_length > shared_prefix_length(prompts, keep=1):
            raise ValueError(f"prefix_length={prefix_length}: the prompts share only "
                             f"{shared_prefix_length(prompts, keep=1)} leading tokens (leaving one of each)")
        n_prefix = prefix_length
    else:
        n_prefix = usable_prefix_length(prompts) if share_prefix else 0
    seqs = [p[n_prefix:] + r for p, r in zip(prompts, responses, strict=True)]
    width = max(len(s) for s in seqs)
    t_max = max(len(r) for r in responses)
    n = len(prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, t_max), dtype=torch.float32)
    for row, (seq, r) in enumerate(zip(seqs, responses, strict=True)):
        input_ids[row, width - len(seq) :] = torch.tensor(seq)
        attention[row, width - len(seq) :] = 1
        response_mask[row, t_max - len(r) :] = 1.0
    position_ids = n_prefix + (attention.cumsum(dim=1) - 1).clamp(min=0)
    batch = {"input_ids": input_ids, "attention_mask": attention, "position_ids": position_ids,
             "response_mask": response_mask}
    if n_prefix:
        batch["prefix_ids"] = torch.tensor(prompts[0][:n_prefix])
        batch["attention_mask"] = torch.cat([torch.ones((n, n_prefix), dtype=torch.long), attention], dim=1)
    return batch


def prefix_cache(model: Any, prefix_ids: torch.Tensor, rows: int) -> Any:
    """The KV cache of `prefix_ids` (P,) from one forward, repeated for `rows` rows.

    None for a model whose cache cannot be repeated across rows.
    """
    device = next(model.parameters()).device
    # only the cache is wanted: the LM head runs on the last position alone
    cache = model(input_ids=prefix_ids[None].to(device), use_cache=True, logits_to_keep=1)[CACHE]
    if not hasattr(cache, "batch_repeat_interleave"):
        return None
    cache.batch_repeat_interleave(rows)
    return cache


def repeat_cache(cache: Any, rows: int) -> Any:
    """A copy of a one-row KV cache (`prefix_cache(..., rows=1)`) repeated for `rows` rows; `cache` is left as it is."""
    copied = copy.deepcopy(cache)
    copied.batch_repeat_interleave(rows)
    return copied


def extend_cache(model: Any, cache: Any, ids: torch.Tensor) -> Any:
    """A copy of a one-row KV cache with `ids` (N,) run on after it; `cache` is left as it is."""
    extended = copy.deepcopy(cache)
    device = next(model.parameters()).device
    model(input_ids=ids[None].to(device), use_cache=True, logits_to_keep=1, **{CACHE: extended})
    return extended


@dataclass
class ResponseScores:
    """What one forward gives about the response tokens; (B, T) unless noted."""

    logp: torch.Tensor  # log-probs of the response tokens
    entropy: torch.Tensor | None = None  # per-token entropy of the policy
    hidden: torch.Tensor | None = None  # (B, T, H) final hidden states that predict each response token


def response_logprobs(model: Any, batch: dict[str, torch.Tensor], *, temperature: float = 1.0,
                      with_entropy: bool = False, entropy_grad: bool = False, with_hidden: bool = False,
                      prefix_kv: Any = None) -> ResponseScores:
    """Log-probs of the response tokens from one forward, and optionally entropies and hidden states.

    Log-probs and entropies are those of softmax(logits / `temperature`): the distribution that
    rollouts sampled at `rollout.temperature` (as verl and TRL score every pass).

    Only the last T + 1 positions go through the LM head (`logits_to_keep`), so memory does not
    grow with the prompt length. `with_entropy` adds the per-token entropies (without gradient
    unless `entropy_grad`: the entropy bonus needs it); `with_hidden` the final hidden states, for
    full-vocabulary losses computed in chunks. `prefix_kv`: the one-row cache of the batch's
    `prefix_ids` (`prefix_cache(model, ids, 1)`), reused instead of running the prefix again.
    """
    device = next(model.parameters()).device
    t_max = batch["response_mask"].shape[1]
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device),
              "position_ids": batch["position_ids"].to(device), "use_cache": False}
    if "prefix_ids" in batch:
        if torch.is_grad_enabled():
            raise ValueError("a batch packed with share_prefix is for passes without gradient: the prefix's "
                             "keys and values would carry none")
        rows = len(inputs["input_ids"])
        if prefix_kv is not None:
            cache = repeat_cache(prefix_kv, rows)
        else:
            cache = prefix_cache(model, batch["prefix_ids"], rows)
        if cache is None:
            raise ValueError(f"{type(model).__name__}: its cache cannot be shared across rows; "
                             "pack without share_prefix")
        inputs.update({CACHE: cache, "use_cache": True})
    out = model(**inputs, logits_to_keep=t_max + 1, output_hidden_states=with_hidden)
    logits = out.logits[:, :-1, :].float() / temperature  # (B, T, V): position j predicts token j + 1
    targets = batch["input_ids"][:, -t_max:].to(device)  # (B, T)
    scores = ResponseScores(torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1))
    if with_entropy or entropy_grad:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            scores.entropy = entropy_from_logits(logits)
    if with_hidden:
        scores.hidden = out.hidden_states[-1][:, -(t_max + 1) : -1, :]  # (B, T, H), after the final norm
    return scores


def output_head(model: Any) -> torch.Tensor:
    """The LM head's weight (V, H), through any wrapper (DDP, peft)."""
    inner = model.module if hasattr(model, "module") else model
    return inner.get_output_embeddings().weight


@dataclass(frozen=True)
class Passes:
    """How every forward pass of a stage computes, resolved once: device, precision, temperature.

    The update, the old-log-prob, teacher and reference passes all score through `logprobs`, so
    each runs under the same autocast and takes its log-probs at the same `temperature` (the
    rollouts' sampling temperature; 1 for the SFT stage, which fits the demonstrations' text).
    """

    device: torch.device
    dtype: torch.dtype  # autocast's compute dtype over the stored weights
    temperature: float = 1.0

    @contextmanager
    def forward(self, model: Any) -> Iterator[None]:
        """The block every forward of `model` runs in: autocast to `dtype`, the LM head's input made dense."""
        with autocast(self.device, self.dtype), contiguous_head_input(model):
            yield

    def logprobs(self, model: Any, batch: dict[str, torch.Tensor], **options: Any) -> ResponseScores:
        """`response_logprobs` of `model` on `batch` under this precision and temperature."""
        with self.forward(model):
            return response_logprobs(model, batch, temperature=self.temperature, **options)
