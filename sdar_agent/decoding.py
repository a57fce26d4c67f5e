"""A CPU fast path for `transformers.generate`'s decoding loop, scoped to the call that uses it.

- `grouped_decode_attention`: a decode step's attention per key/value head, its query heads
  stacked, instead of repeating keys and values for every query head.

It computes what the path it replaces computes (a test checks the tokens and logits), and is
entered and undone around each `generate` call: nothing of it outlives the call.
`benchmarks/generation.py` measures what it saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

GROUPED_DECODE = "sdar_grouped_decode"
"""The attention implementation `grouped_decode_attention` switches a model to (registered for the call)."""


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
    configs, registered = [], False
    if enabled:
        from transformers import AttentionInterface, PreTrainedModel
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        for module in model.modules():
            config = getattr(module, "config", None) if isinstance(module, PreTrainedModel) else None
            if config is not None and config._attn_implementation == "sdpa" and all(config is not c for c in configs):
                configs.append(config)
        if configs and GROUPED_DECODE not in AttentionInterface._global_mapping:
            AttentionInterface.register(GROUPED_DECODE, _grouped_decode_forward)
            AttentionMaskInterface.register(GROUPED_DECODE, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
            registered = True
        for config in configs:
            config._attn_implementation = GROUPED_DECODE
    try:
        yield
    finally:
        for config in configs:
            config._attn_implementation = "sdpa"
        if registered:  # transformers' registries hold it only for the call
            from transformers import AttentionInterface
            from transformers.masking_utils import AttentionMaskInterface

            AttentionInterface._global_mapping.pop(GROUPED_DECODE, None)
            AttentionMaskInterface._global_mapping.pop(GROUPED_DECODE, None)


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
