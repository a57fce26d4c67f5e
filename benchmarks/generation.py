"""What stopping at the answer's end buys: generation with and without `rollout.stop_at_answer_end`.

    python benchmarks/generation.py [--model embedded:smollm2-135m-instruct] [--games 16] [--new-tokens 48]

The first-turn prompts of `--games` held-out ALFWorld games (the embedded easy set), one batch,
sampled at the rollout temperature with the same seed twice: once to `--new-tokens` or EOS, once
also stopping each row at `</action>`. Sampling draws the same random numbers for every row at
every step in both runs, so each stopped response is a prefix of its free one and parses to the
same action; the script checks that and prints, measured in this one run, the wall time, generated
tokens and tokens/s of both and their ratio. Use an SFT folder as `--model` to see a trained
policy's figures (it closes its answer and writes EOS itself; the untouched model rambles).
"""

from __future__ import annotations

import argparse
import time

import torch

from sdar_agent.config import ModelConfig, RolloutConfig
from sdar_agent.generation import HFGenerator, Sampling
from sdar_agent.models import load_policy, load_tokenizer
from sdar_agent.prompts import template_for, turn_prompt_ids


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


def timed(generator: HFGenerator, prompts: list[list[int]], sampling: Sampling, seed: int):
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = generator(prompts, sampling)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--games", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg = ModelConfig(name=args.model)
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    template = template_for("sdar/ALFWorld-v0")
    prompts = first_turn_prompts(tokenizer, args.games)
    rollout = RolloutConfig(max_response_tokens=args.new_tokens)
    generator = HFGenerator(model, tokenizer, batch_size=len(prompts))
    timed(generator, prompts[:2], Sampling(4), args.seed)  # warm-up
    rollout.stop_at_answer_end = False
    free, free_s = timed(generator, prompts, Sampling.from_config(rollout, answer_ends=template.answer_ends), args.seed)
    rollout.stop_at_answer_end = True
    stopped, stopped_s = timed(generator, prompts, Sampling.from_config(rollout, answer_ends=template.answer_ends),
                               args.seed)

    prefixes = sum(s == f[: len(s)] for s, f in zip(stopped, free, strict=True))
    same = sum(template.parse(tokenizer.decode(s, skip_special_tokens=True)).action
               == template.parse(tokenizer.decode(f, skip_special_tokens=True)).action
               for s, f in zip(stopped, free, strict=True))
    closed = sum("</action>" in tokenizer.decode(f).lower() for f in free)
    print(f"{args.model}: {len(prompts)} first-turn prompts (mean {sum(map(len, prompts)) / len(prompts):.0f} tokens), "
          f"T={rollout.temperature}, up to {args.new_tokens} new tokens; {closed} free responses close </action>")
    for name, out, secs in (("free", free, free_s), ("stop at </action>", stopped, stopped_s)):
        tokens = sum(map(len, out))
        print(f"  {name:18s} {secs:6.1f} s  {tokens:5d} tokens  {tokens / secs:6.1f} tokens/s  "
              f"mean response {tokens / len(out):5.1f} tokens")
    print(f"  time ratio free / stopped: {free_s / stopped_s:.2f}x; stopped responses that are prefixes of the free "
          f"ones: {prefixes}/{len(prompts)}; same parsed action: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
