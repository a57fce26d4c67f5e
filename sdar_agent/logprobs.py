"""Log-probabilities of sampled response tokens under a model, in micro-batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def pack(prompts: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompt+response sequences, right-aligned so every response ends at the last column.

    Returns input_ids (B, L), attention_mask (B, L), position_ids (B, L), and response_mask
    (B, T) over the last T = max response length positions' *targets*.
    """
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    t_max = max(len(r) for r in responses)
    n = len(prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, t_max), dtype=torch.float32)
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        seq = p + r
        input_ids[row, width - len(seq) :] = torch.tensor(seq)
        attention[row, width - len(seq) :] = 1
        response_mask[row, t_max - len(r) :] = 1.0
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention, "position_ids": position_ids,
            "response_mask": response_mask}


def response_logprobs(model: Any, batch: dict[str, torch.Tensor], with_entropy: bool = False,
                      with_hidden: bool = False):
    """Log-probs (B, T) of the response tokens, from one forward.

    Only the last T + 1 positions go through the LM head (`logits_to_keep`), so memory does not
    grow with the prompt length. With `with_entropy` also returns the per-token entropies (B, T)
    (no gradient); with `with_hidden` also the final hidden states that predict each response
    token (B, T, H), for full-vocabulary losses computed in chunks. Returns a tuple when asked
    for either.
    """
    device = next(model.parameters()).device
    t_max = batch["response_mask"].shape[1]
    out = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        position_ids=batch["position_ids"].to(device),
        logits_to_keep=t_max + 1,
        use_cache=False,
        output_hidden_states=with_hidden,
    )
    logits = out.logits[:, :-1, :].float()  # (B, T, V): position j predicts token j + 1
    targets = batch["input_ids"][:, -t_max:].to(device)  # (B, T)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    if not (with_entropy or with_hidden):
        return logp
    result = [logp]
    if with_entropy:
        from sdar_agent.losses import entropy_from_logits

        with torch.no_grad():
            result.append(entropy_from_logits(logits))
    if with_hidden:
        result.append(out.hidden_states[-1][:, -(t_max + 1) : -1, :])  # (B, T, H), after the final norm
    return tuple(result)


def output_head(model: Any) -> torch.Tensor:
    """The LM head's weight (V, H), through any wrapper (DDP, peft)."""
    inner = model.module if hasattr(model, "module") else model
    return inner.get_output_embeddings().weight
