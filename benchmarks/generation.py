"""What the HF generation path's savings buy: stopping at the answer's end, and sharing the prompts' prefix.

    python benchmarks/generation.py [--model embedded:smollm2-135m-instruct] [--games 16] [--group 1]
                                    [--new-tokens 48] [--dtype bfloat16]

The first-turn prompts of `--games` held-out ALFWorld games (the embedded easy set), each repeated
`--group` times as a GRPO group's first turn is (the demo's RL step: `--games 1 --group 4`; its
validation: `--games 8`), one batch, sampled at the rollout temperature with the same seed four
times: plain (to `--new-tokens` or EOS, every row run whole: the path before these changes); also
stopping each row at `</action>` (`rollout.stop_at_answer_end`); also running the leading tokens
all rows share once (`rollout.share_prompt_prefix`); also computing the decoding steps' small
products weight-first (`weight_first_linears`); also their attention per key/value head
(`grouped_decode_attention`); and also writing each step's keys and values into room reserved for
the whole sequence (`reserve_cache`); and last drawing each token's exponential race from uniform
numbers (`race_sampling`; all on by default on a CPU). `--dtype bfloat16` adds bf16 runs: under
autocast, on a bf16 copy of the weights (the CPU default), and on that copy with its LM head fed
the sliced final hidden states as transformers hands them over (the path before
`models.contiguous_head_input`). Up to the race-sampling run, sampling draws the same
random numbers for every row at every step, so each stopped response is a prefix of its plain one
and parses to the same action, and the savings change no token; the script checks that and prints,
measured in this one run, each run's wall time, generated tokens, tokens/s, wall time per decoding
step (a call runs as many steps as its longest row) and speed-up over the plain run. The
race-sampling run (and the bf16 runs after it) sample from the same distribution with other random
numbers, so their responses (and lengths) differ: compare wall time per decoding step. Use an
SFT folder as `--model` to see a trained policy's figures (it closes its answer and writes EOS
itself; the untouched model rambles).
"""

from __future__ import annotations

import argparse
import time

import torch

from sdar_agent.config import ModelConfig, RolloutConfig
from sdar_agent.generation import HFGenerator, Sampling
from sdar_agent.logprobs import shared_prefix_length
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
    parser.add_argument("--group", type=int, default=1, help="rows per game, as a GRPO group's first turn")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: also time bf16 generation under autocast and on a bf16 weights copy")
    args = parser.parse_args()

    cfg = ModelConfig(name=args.model)
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    template = template_for("sdar/ALFWorld-v0")
    prompts = [p for p in first_turn_prompts(tokenizer, args.games) for _ in range(args.group)]
    rollout = RolloutConfig(max_response_tokens=args.new_tokens)
    rows = len(prompts)
    plain = HFGenerator(model, tokenizer, rows, share_prefix=False, weight_first=False, grouped_attention=False,
                        reserve=False, race=False)
    shared = HFGenerator(model, tokenizer, rows, weight_first=False, grouped_attention=False, reserve=False,
                         race=False)
    linears = HFGenerator(model, tokenizer, rows, grouped_attention=False, reserve=False, race=False)
    grouped = HFGenerator(model, tokenizer, rows, reserve=False, race=False)
    reserved = HFGenerator(model, tokenizer, rows, race=False)
    fast = HFGenerator(model, tokenizer, rows)  # the defaults: all of it
    timed(plain, prompts[:2], Sampling(4), args.seed)  # warm-up
    rollout.stop_at_answer_end = False
    free = Sampling.from_config(rollout, answer_ends=template.answer_ends)
    rollout.stop_at_answer_end = True
    stop = Sampling.from_config(rollout, answer_ends=template.answer_ends)
    runs = {"plain": timed(plain, prompts, free, args.seed),
            "stop at </action>": timed(plain, prompts, stop, args.seed),
            "stop + shared prefix": timed(shared, prompts, stop, args.seed),
            "+ weight-first linears": timed(linears, prompts, stop, args.seed),
            "+ grouped attention": timed(grouped, prompts, stop, args.seed),
            "+ reserved KV cache": timed(reserved, prompts, stop, args.seed),
            "+ race sampling": timed(fast, prompts, stop, args.seed)}
    if args.dtype == "bfloat16":
        for name, copy in (("bf16 autocast", False), ("bf16 weights copy", True)):
            low = HFGenerator(model, tokenizer, rows, compute_dtype=torch.bfloat16, weights_copy=copy)
            timed(low, prompts[:2], Sampling(4), args.seed)  # warm-up (and the copy made)
            runs[name] = timed(low, prompts, stop, args.seed)
        # the copy as it was before `models.contiguous_head_input`: the LM head fed the sliced hidden states
        head = low._copy.get_output_embeddings()
        hooks = dict(head._forward_pre_hooks)
        head._forward_pre_hooks.clear()
        runs["bf16 copy, sliced head input"] = timed(low, prompts, stop, args.seed)
        head._forward_pre_hooks.update(hooks)

    base, base_s = runs["plain"]
    stopped = runs["stop at </action>"][0]
    prefixes = sum(s == f[: len(s)] for s, f in zip(stopped, base, strict=True))
    same = sum(template.parse(tokenizer.decode(s, skip_special_tokens=True)).action
               == template.parse(tokenizer.decode(f, skip_special_tokens=True)).action
               for s, f in zip(stopped, base, strict=True))
    closed = sum("</action>" in tokenizer.decode(f).lower() for f in base)
    shared_len = shared_prefix_length(prompts)
    print(f"{args.model}: {args.games} games x {args.group} rows = {len(prompts)} first-turn prompts (mean "
          f"{sum(map(len, prompts)) / len(prompts):.0f} tokens, {shared_len} shared by all), T={rollout.temperature}, "
          f"up to {args.new_tokens} new tokens, {torch.get_num_threads()} threads; {closed} plain responses close "
          f"</action>")
    for name, (out, secs) in runs.items():
        tokens, steps = sum(map(len, out)), max(map(len, out))  # one call: as many decoding steps as its longest row
        print(f"  {name:28s} {secs:6.1f} s  {tokens:5d} tokens  {tokens / secs:6.1f} tokens/s  "
              f"mean response {tokens / len(out):5.1f} tokens  {1000 * secs / steps:5.0f} ms/step  speed-up "
              f"(tokens/s) {tokens / secs / (sum(map(len, base)) / base_s):4.2f}x")
    fp32_step = runs["+ race sampling"][1] / max(map(len, runs["+ race sampling"][0]))
    for name in ("bf16 autocast", "bf16 weights copy", "bf16 copy, sliced head input"):
        if name in runs:
            out, secs = runs[name]
            print(f"  {name}: {fp32_step * max(map(len, out)) / secs:4.2f}x the fp32 run's speed per decoding step")
    unchanged = ", ".join(str(runs[name][0] == stopped) for name in list(runs)[2:6])
    print(f"  stopped responses that are prefixes of the plain ones: {prefixes}/{len(prompts)}; same parsed action: "
          f"{same}/{len(prompts)}; shared prefix, weight-first linears, grouped attention, reserved cache changed no "
          f"token: {unchanged}")


if __name__ == "__main__":
    main()
