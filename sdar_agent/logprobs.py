"""Log-probabilities of sampled response tokens under a model, in micro-batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sdar_agent.losses import entropy_from_logits


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


@dataclass
class ResponseScores:
    """What one forward gives about the response tokens; (B, T) unless noted."""

    logp: torch.Tensor  # log-probs of the response tokens
    entropy: torch.Tensor | None = None  # per-token entropy of the policy
    hidden: torch.Tensor | None = None  # (B, T, H) final hidden states that predict each response token


def response_logprobs(model: Any, batch: dict[str, torch.Tensor], *, with_entropy: bool = False,
                      entropy_grad: bool = False, with_hidden: bool = False) -> ResponseScores:
    """Log-probs of the response tokens from one forward, and optionally entropies and hidden states.

    Only the last T + 1 positions go through the LM head (`logits_to_keep`), so memory does not
    grow with the prompt length. `with_entropy` adds the per-token entropies (without gradient
    unless `entropy_grad`: the entropy bonus needs it); `with_hidden` the final hidden states, for
    full-vocabulary losses computed in chunks.
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
