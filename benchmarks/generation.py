"""What each of the HF generation path's savings buys, on the demo's shapes and precision.

    python benchmarks/generation.py [--model embedded:smollm2-135m-instruct] [--dtype bfloat16]
                                    [--new-tokens 48] [--repeats 3]

Two shapes: the demo's RL step (the first turn of 1 held-out ALFWorld game x a group of 4) and its
validation (the first turns of 16 games). On each, one batch is sampled at T = 1 with every saving
on (`HFGenerator`'s defaults, in `--dtype`: bfloat16 generates on a bf16 copy of the weights, as
the demo does on a CPU), then with one saving off at a time: the prompts' shared prefix run once
(`share_prefix`), grouped decoding attention (`grouped_attention`), the LM head's dense input
(`contiguous_head`). The variants alternate `--repeats` times; each cell is the median wall time
per decoding step (a call runs as many steps as its longest row) and, for a saving, how much
slower the run is without it. A saving earns its place in the code at >= 5 % on the demo's path.
Prints Markdown table rows that start with the date, the machine and the commit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sdar_agent.config import ModelConfig
from sdar_agent.generation import HFGenerator, Sampling
from sdar_agent.hardware import measured_on
from sdar_agent.models import load_policy, load_tokenizer
from sdar_agent.prompts import template_for, turn_prompt_ids

VARIANTS = {"all savings": {}, "no shared prefix": {"share_prefix": False},
            "no grouped attention": {"grouped_attention": False}, "no dense head input": {"contiguous_head": False}}


def first_turn_prompts(tokenizer, games: int) -> list[list[int]]:
    import gymnasium as gym

    import sdar_envs  # noqa: F401  (registers the envs)

    template = template_for("sdar/ALFWorld-v0")
    env = gym.make("sdar/ALFWorld-v0", split="valid_unseen", embedded="easy")
    ids = env.unwrapped.task_ids
    prompts = []
    for i in range(games):
        obs, info = env.reset(options={"task_id": ids[i * len(ids) // games]})
        prompts.append(turn_prompt_ids(tokenizer, template, info["task"], obs, info["admissible_actions"], [], 0, 1,
                                       2048))
    env.close()
    return prompts


def ms_per_step(generator: HFGenerator, prompts: list[list[int]], sampling: Sampling, seed: int) -> float:
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = generator(prompts, sampling)
    return 1000 * (time.perf_counter() - start) / max(map(len, out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cfg = ModelConfig(name=args.model)
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    dtype = getattr(torch, args.dtype)
    template = template_for("sdar/ALFWorld-v0")
    sampling = Sampling(args.new_tokens, stop=template.answer_ends)
    games = first_turn_prompts(tokenizer, 16)
    shapes = {"RL step (1 game x 4)": [games[0]] * 4, "validation (16 games)": games}
    print(f"| date | machine | commit | model, dtype | shape | all savings, ms/step | "
          f"{' | '.join(f'{v}, ms/step (cost)' for v in list(VARIANTS)[1:])} |")
    print("|---|---|---|---|---|---|" + "---|" * (len(VARIANTS) - 1))
    for shape, prompts in shapes.items():
        generators = {name: HFGenerator(model, tokenizer, len(prompts), compute_dtype=dtype, **options)
                      for name, options in VARIANTS.items()}
        for generator in generators.values():
            generator(prompts[:2], Sampling(4))  # warm-up (and the bf16 copy made)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, generator in generators.items():
                times[name].append(ms_per_step(generator, prompts, sampling, args.seed))
        median = {name: statistics.median(t) for name, t in times.items()}
        base = median["all savings"]
        cells = [f"{median[name]:.0f} (+{100 * (median[name] / base - 1):.0f} %)" for name in list(VARIANTS)[1:]]
        print(f"{measured_on()} {args.model}, {args.dtype} | {shape} | {base:.0f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
