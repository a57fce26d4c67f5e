"""CPU fast paths for `transformers.generate`'s decoding loop, each a context manager or a cache wrapper.

`HFGenerator` turns them on for CPU runs (`benchmarks/generation.py` times each one added in
turn; README: Generation speed). Each computes what the path it replaces computes:

- `weight_first_linears`: decode-step linears as `(W x)ᵀ`, the order MKL runs fastest at one row;
- `grouped_decode_attention`: a decode step's attention per key/value head, its query heads
  stacked, instead of repeating keys and values for every query head;
- `reserve_cache` / `ReservedLayer`: each step's keys and values written into room reserved for
  the whole sequence instead of concatenated onto a new tensor;
- `race_sampling`: `torch.multinomial(probs, 1)` as an exponential race from `torch.rand`.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


def reserve_cache(cache: Any, tokens: int) -> Any:
    """`cache` (a transformers `DynamicCache`) with its plain layers made `ReservedLayer`s with room for `tokens`."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            reserved = ReservedLayer(tokens)
            reserved.__dict__.update(layer.__dict__)
            cache.layers[i] = reserved
    return cache


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` that writes new keys and values into room set aside for the whole sequence.

    transformers' dynamic cache concatenates every decoding step's keys and values onto the old
    ones, copying each layer's whole cache per step; here the first update allocates room for
    `capacity` tokens (twice what is needed if that is more), later ones write into it, and
    `keys` / `values` are views of its filled part. The same tensors as `DynamicLayer` holds; an
    operation that replaces them (repeating or selecting rows) is noticed at the next update,
    which then makes new room.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, new = self.get_seq_length(), key_states.shape[-2]
        room = self._room
        if (room is None or length + new > room[0].shape[-2] or room[0].shape[:2] != key_states.shape[:2]
                or (length and self.keys.data_ptr() != room[0].data_ptr())):  # none yet, too small, or replaced
            size = self.capacity if length + new <= self.capacity else 2 * (length + new)  # past it: double
            room = tuple(states.new_empty((*states.shape[:-2], size, states.shape[-1]))
                         for states in (key_states, value_states))  # (B, H_kv, size, D) each
            if length:
                room[0][..., :length, :], room[1][..., :length, :] = self.keys, self.values
            self._room = room
        room[0][..., length : length + new, :], room[1][..., length : length + new, :] = key_states, value_states
        self.keys, self.values = room[0][..., : length + new, :], room[1][..., : length + new, :]
        return self.keys, self.values


SKINNY_ROWS = 64
"""Most rows (tokens) a linear layer's input may have to go through `weight_first_linears`' product."""


@contextmanager
def weight_first_linears(model: Any, enabled: bool = True) -> Iterator[None]:
    """Within the block, `nn.Linear` layers of `model` compute inputs of 2 to `SKINNY_ROWS` rows as `(W @ xᵀ)ᵀ`.

    The same product as `F.linear` (x Wᵀ), in the other operand order. On a CPU, MKL runs the
    skinny products of decoding (a few rows, the batch's newest tokens) 1.4 to 4x faster this way
    round (measured on SmolLM2's shapes, 2 to 8 rows; the LM head most), since x Wᵀ with few rows
    repacks the whole weight matrix on every call. Prefill and training inputs, with many rows, and
    single rows (a matrix-vector product either way) keep `F.linear`. Layers that already have
    their own instance `forward` (hooks of other libraries) are left alone.
    """
    patched = []
    if enabled:
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and "forward" not in module.__dict__:
                module.forward = types.MethodType(_weight_first_forward, module)
                patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _weight_first_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if not 1 < rows <= SKINNY_ROWS:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    # x row-major, so that xᵀ is a transposed view: MKL's fast path. A column-major x (the layout a
    # previous weight-first product's output keeps through the MLP's elementwise ops) is ~3x slower.
    flat = x.reshape(rows, x.shape[-1]).contiguous()  # (rows, K)
    out = (self.weight @ flat.T).T  # (N, K) @ (K, rows) -> (rows, N)
    if self.bias is not None:
        out = out + self.bias
    return out.reshape(*x.shape[:-1], self.weight.shape[0])  # (..., N)


GROUPED_DECODE = "sdar_grouped_decode"
"""The attention implementation `grouped_decode_attention` switches a model to (registered on first use)."""


@contextmanager
def grouped_decode_attention(model: Any, enabled: bool = True) -> Iterator[None]:
    """Within the block, models of `model` that use `sdpa` attention compute single-token queries per key/value head.

    With grouped-query attention (several query heads per key/value head, e.g. SmolLM2's 9 on 3)
    and no padding mask, transformers' `sdpa` path passes `enable_gqa`, which PyTorch's CPU kernel
    serves by copying every cached key and value once per query head at every decoding step. Here
    a decoding step's queries (B, H, 1, D) are regrouped as (B, H_kv, H / H_kv, D): each key/value
    head's queries attend to its keys as a short block of query rows, without a mask between them
    (none is needed: they are one position) and without copying the cache. The same attention;
    prompts (several query tokens), models without grouped heads and dropout keep transformers' own
    path, and every other attention implementation (eager, flash) is left as configured.
    """
    configs = []
    if enabled:
        from transformers import AttentionInterface, PreTrainedModel
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        if GROUPED_DECODE not in AttentionInterface._global_mapping:
            AttentionInterface.register(GROUPED_DECODE, _grouped_decode_forward)
            AttentionMaskInterface.register(GROUPED_DECODE, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        for module in model.modules():
            config = getattr(module, "config", None) if isinstance(module, PreTrainedModel) else None
            if config is not None and config._attn_implementation == "sdpa" and all(config is not c for c in configs):
                configs.append(config)
                config._attn_implementation = GROUPED_DECODE
    try:
        yield
    finally:
        for config in configs:
            config._attn_implementation = "sdpa"


# Arguments some models pass their attention that change the scores beyond the mask: such calls keep
# transformers' own path (which handles or refuses them).
_SCORE_ARGUMENTS = ("position_bias", "softcap", "s_aux", "sinks", "head_mask")


def _grouped_decode_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    changes_scores = any(kwargs.get(name) is not None for name in _SCORE_ARGUMENTS)
    if query.shape[2] != 1 or groups == 1 or dropout or changes_scores:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, heads // groups, groups, dim)  # (B, H_kv, G, D): a head's queries as rows
    # the mask, (B, 1, 1, L) or none, broadcasts over the key/value heads and their query rows
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask,
                                                           scale=scaling)  # (B, H_kv, G, D)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None  # (B, 1, H, D), as transformers expects


@contextmanager
def race_sampling(enabled: bool = True) -> Iterator[None]:
    """Within the block, `torch.multinomial(probs, 1)` on rows of probabilities draws from uniform numbers.

    The draw is PyTorch's own race, argmax_i p_i / E_i with E_i ~ Exp(1) (token i wins with
    probability p_i / sum(p)), but each E_i is made as -log(U_i) from `torch.rand`, which on a CPU
    costs ~2 ms for 4 rows of SmolLM2's 49,152 tokens where PyTorch's `exponential_` costs ~7 ms
    (of a ~135 ms decoding step). The distribution is unchanged and, as with any race, a rounding
    difference in p moves a draw only with a probability of that order; the random numbers are
    not PyTorch's, so the sampled tokens differ from its for the same seed. Other calls (several
    samples, a 1-D input, `out=`) and rows PyTorch would refuse (negative, NaN or infinite
    entries, no probability mass) go to PyTorch's own.
    """
    original = torch.multinomial

    def multinomial(probs: torch.Tensor, num_samples: int, replacement: bool = False, *,
                    generator: torch.Generator | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        if num_samples != 1 or probs.dim() != 2 or out is not None or not probs.is_floating_point():
            return original(probs, num_samples, replacement, generator=generator, out=out)
        total = probs.sum(dim=-1)  # (B,)
        if not bool((probs >= 0).all() and (total > 0).all() and total.isfinite().all()):
            return original(probs, num_samples, replacement, generator=generator)  # PyTorch's own error
        waits = torch.rand(probs.shape, dtype=probs.dtype, device=probs.device, generator=generator).log_().neg_()
        return (probs / waits).argmax(dim=-1, keepdim=True)  # (B, 1); a wait of 0 (U = 1) never occurs

    if enabled:
        torch.multinomial = multinomial
    try:
        yield
    finally:
        torch.multinomial = original
