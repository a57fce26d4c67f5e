"""How much of a model AdamW moves at lr 1e-6: bfloat16 storage against fp32 master weights with bf16 compute.

    python benchmarks/master_weights.py [--model embedded:smollm2-135m-instruct] [--steps 5]

The same batch, the same AdamW (lr 1e-6, the paper presets' rate) and the same number of steps,
once with the weights stored in bfloat16 (what `dtype: bfloat16` did before) and once with fp32
master weights and bfloat16 autocast (`model.weights_dtype=float32 model.compute_dtype=bfloat16`,
the reference's FSDP mixed precision). Prints, for each, the share of the transformer layers'
weights that changed at all, and of the norm weights (which start at 1.0). On a 2-core CPU without
bfloat16 matrix units a step takes about two minutes (bf16 autocast is slow there); on a GPU
raise --steps.
"""

from __future__ import annotations

import argparse

import torch

from sdar_agent.config import ModelConfig
from sdar_agent.hardware import markdown_table
from sdar_agent.logprobs import pack, response_logprobs
from sdar_agent.models import autocast, load_policy, load_tokenizer


def moved_share(model, before: dict[str, torch.Tensor], match: str) -> float:
    after = model.state_dict()
    keys = [k for k in before if "layers" in k and match in k]
    return sum(int((before[k] != after[k]).sum()) for k in keys) / sum(before[k].numel() for k in keys)


def run(model_name: str, weights: str, steps: int, lr: float) -> tuple[float, float]:
    torch.manual_seed(0)
    cfg = ModelConfig(name=model_name, weights_dtype=weights, compute_dtype="bfloat16")
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    prompts = [torch.randint(100, 20000, (48,)).tolist() for _ in range(4)]
    responses = [torch.randint(100, 20000, (16,)).tolist() for _ in range(4)]
    batch = pack(prompts, responses, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(steps):
        with autocast(torch.device("cpu"), torch.bfloat16):
            logp = response_logprobs(model, batch).logp
        (-(logp * batch["response_mask"]).sum() / batch["response_mask"].sum()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return moved_share(model, before, "proj"), moved_share(model, before, "norm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-6)
    args = parser.parse_args()
    print(f"{args.model}, {args.steps} AdamW steps at lr {args.lr:g}, bf16 compute: share of the weights changed")
    rows = []
    for weights in ("bfloat16", "float32"):
        linear, norms = run(args.model, weights, args.steps, args.lr)
        rows.append([args.model, f"{args.steps} at lr {args.lr:g}", weights, f"{linear:.2%}", f"{norms:.2%}"])
    print(markdown_table(["model", "AdamW steps", "weights stored in", "linear weights changed",
                          "norm weights changed"], rows))

if __name__ == "__main__":
    main()
