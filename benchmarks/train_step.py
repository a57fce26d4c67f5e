"""Trainer throughput: rollout generation, the training step, and a GRPO step against TRL's.

    python benchmarks/train_step.py [--model embedded:smollm2-135m-instruct] [--envs 8] [--skip-trl]
                                    [--set KEY=VALUE ...]

Prints, all measured in this one run:
1. rollout generation tokens/s: our batched generation over all active envs vs a naive loop that
   calls `generate` for one env at a time (same prompts, same lengths, greedy so both produce the
   same number of tokens);
2. training-step tokens/s (forward + backward + AdamW) and the share of this machine's fp32 matmul
   peak it reaches (6 x parameters x tokens FLOPs against a timed large matmul);
3. the same GRPO step (same model, prompts, group size, completion length, one optimizer step,
   single-turn task) in TRL's GRPOTrainer and in ours, as a time ratio. Skipped with a note when
   `trl` is not installed (`pip install trl`);
4. the SDAR step time over the GRPO step time on the same batch (the trainer's own `update`,
   SDAR including its teacher pass on prompts that carry the retrieved skills; the samples come in
   groups of 4 of one task at different turns, the skills within the demo preset's budget); then
   the same for one task's 4 x `--envs` / 2 samples (the demo's RL step: one task, 4 rollouts over
   several turns, so the task's shared prefix serves several micro-batches). Both trainers use the
   `demo` preset, which trains only the top `model.train_layers` blocks; `--set` overrides its keys
   for both (e.g. `--set model.train_layers=0` trains every layer, a costlier GRPO update).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from sdar_agent.config import ModelConfig
from sdar_agent.generation import HFGenerator, Sampling
from sdar_agent.hardware import markdown_table
from sdar_agent.logprobs import pack, response_logprobs
from sdar_agent.losses import ppo_clip_loss
from sdar_agent.models import load_policy, load_tokenizer
from sdar_agent.prompts import chat_ids, template_for


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def alfworld_like_prompts(tokenizer, n: int, skills: str = "", per_task: int = 4) -> list[list[int]]:
    """`n` turn prompts in groups of `per_task` of one task (as a GRPO group), at turns 0-3 in turn."""
    template = template_for("sdar/ALFWorld-v0")
    actions = ["go to cabinet 1", "go to countertop 1", "go to fridge 1", "go to microwave 1", "inventory", "look"]
    return [
        chat_ids(tokenizer, template.render(
            f"put a hot apple in cabinet {i // per_task + 1}.",
            "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 1, "
            "a fridge 1, and a microwave 1.", actions,
            [(f"You arrive at countertop {i % 4}. On it you see nothing.", actions[i % 4])] if i % 4 else [], i % 4,
            skills=skills))
        for i in range(n)
    ]


def bench_generation(model, tokenizer, prompts, new_tokens: int) -> tuple[float, float]:
    sampling = Sampling(new_tokens, greedy=True)
    model.generation_config.eos_token_id = None  # same length for both: no early stop
    ours = HFGenerator(model, tokenizer, batch_size=len(prompts))
    start = time.perf_counter()
    out = ours(prompts, sampling)
    ours_tps = sum(len(o) for o in out) / (time.perf_counter() - start)
    naive = HFGenerator(model, tokenizer, batch_size=1)
    start = time.perf_counter()
    out = [naive([p], sampling)[0] for p in prompts]
    naive_tps = sum(len(o) for o in out) / (time.perf_counter() - start)
    return ours_tps, naive_tps


def our_update(model, optimizer, prompts, responses, pad_id, micro: int) -> float:
    """One PPO-clip step over the batch in micro-batches; returns seconds."""
    n_tokens = sum(len(r) for r in responses)
    adv = torch.randn(len(prompts))
    start = time.perf_counter()
    for k in range(0, len(prompts), micro):
        batch = pack(prompts[k : k + micro], responses[k : k + micro], pad_id)
        logp = response_logprobs(model, batch).logp
        loss, *_ = ppo_clip_loss(logp, logp.detach(), adv[k : k + micro], batch["response_mask"], n_tokens=n_tokens)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_trl(model_cfg: ModelConfig, tokenizer, n_prompts: int, group: int, new_tokens: int, micro: int):
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        return None
    prompt_text = [f"Name a fruit that starts with letter {chr(97 + i)}." for i in range(n_prompts)]
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompt_text]})

    def reward(completions, **kwargs):
        return [float(len(str(c))) for c in completions]

    # Ours: the same prompts and lengths, generation + one update.
    model, _ = load_policy(model_cfg, torch.device("cpu"), tokenizer)
    model.generation_config.eos_token_id = None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    prompts = [chat_ids(tokenizer, p) for p in prompt_text for _ in range(group)]
    start = time.perf_counter()
    responses = HFGenerator(model, tokenizer, len(prompts))(prompts, Sampling(new_tokens))
    our_update(model, optimizer, prompts, responses, tokenizer.pad_token_id, micro)
    ours_s = time.perf_counter() - start

    model, _ = load_policy(model_cfg, torch.device("cpu"), tokenizer)
    model.generation_config.eos_token_id = None
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=n_prompts * group, num_generations=group,
            gradient_accumulation_steps=1, max_completion_length=new_tokens, max_steps=1, learning_rate=1e-6,
            logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", beta=0.0,
            gradient_checkpointing=False,  # ours runs without it too
            generation_kwargs={"min_new_tokens": new_tokens},  # full-length completions, as ours
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                              processing_class=tokenizer)
        start = time.perf_counter()
        trainer.train()
        trl_s = time.perf_counter() - start
    return ours_s, trl_s


def sdar_over_grpo(model_name: str, prompts, responses, tokenizer, micro: int, per_task: int = 4,
                   overrides: tuple[str, ...] = ()) -> tuple[float, float, float]:
    """Seconds of Trainer.update for grpo and sdar on the same samples, and the teacher pass's share.

    The samples come in tasks of `per_task` (a GRPO group's turns), with one skills text per task.
    """
    from sdar_agent.config import load_config
    from sdar_agent.rollout import Sample
    from sdar_agent.trainer import Trainer
    from skillbank import SkillBank

    budget = load_config("demo").skills.budget_tokens  # the demo's skills, in each teacher prompt
    skills = SkillBank.load("alfworld").retrieve(
        "pick_heat_then_place_in_recep", budget=budget,
        measure=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])).text
    teacher_prompts = alfworld_like_prompts(tokenizer, len(prompts), skills=skills, per_task=per_task)
    samples = [Sample(p, r, group=i // per_task, traj=i, step=0, task_id=str(i // per_task),
                      task_type="pick_heat_then_place_in_recep", valid=True, teacher_prompt_ids=t)
               for i, (p, r, t) in enumerate(zip(prompts, responses, teacher_prompts, strict=True))]
    scores = torch.tensor([float(i % 3) for i in range(len(samples))], dtype=torch.float64)
    times = {}
    teacher_s = 0.0
    with tempfile.TemporaryDirectory() as out:
        for algo in ("grpo", "sdar"):
            cfg = load_config("demo", [f"model.name={model_name}", f"algo.name={algo}", "env.num_workers=0",
                                       f"output_dir={out}", f"name={algo}", f"algo.micro_batch_size={micro}",
                                       "log.tensorboard=false", "log.progress=false", *overrides])
            trainer = Trainer(cfg)
            try:
                trainer.update(samples[:2], scores[:2])  # warm-up
                start = time.perf_counter()
                metrics = trainer.update(samples, scores)
                times[algo] = time.perf_counter() - start
                teacher_s = metrics.get("perf/teacher_s", teacher_s)
            finally:
                trainer.close()
    return times["grpo"], times["sdar"], teacher_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="`demo` preset overrides for the SDAR / GRPO update comparison")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig(name=args.model)
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    params = sum(p.numel() for p in model.parameters())
    prompts = alfworld_like_prompts(tokenizer, args.envs)
    print(f"model {args.model} ({params / 1e6:.0f}M params), {args.envs} envs, prompts of "
          f"{sum(map(len, prompts)) / len(prompts):.0f} tokens, {args.new_tokens} new tokens, float32; "
          f"SDAR / GRPO with {' '.join(args.set) or 'the demo preset'}")
    ours_tps, naive_tps = bench_generation(model, tokenizer, prompts, args.new_tokens)

    responses = HFGenerator(model, tokenizer, len(prompts))(prompts, Sampling(args.new_tokens, greedy=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    our_update(model, optimizer, prompts[:2], responses[:2], tokenizer.pad_token_id, args.micro)  # warm-up
    seconds = our_update(model, optimizer, prompts, responses, tokenizer.pad_token_id, args.micro)
    tokens = sum(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    peak = matmul_peak_gflops()
    achieved = 6 * params * tokens / seconds / 1e9

    grpo_s, sdar_s, teacher_s = sdar_over_grpo(args.model, prompts, responses, tokenizer, args.micro,
                                               overrides=tuple(args.set))
    # the demo's RL step: one task, 4 rollouts over several turns, so several micro-batches per task
    one_task = alfworld_like_prompts(tokenizer, 4 * args.envs // 2, per_task=4 * args.envs // 2)
    one_task_responses = HFGenerator(model, tokenizer, len(one_task))(
        one_task, Sampling(args.new_tokens, greedy=True))
    grpo1_s, sdar1_s, teacher1_s = sdar_over_grpo(args.model, one_task, one_task_responses, tokenizer, args.micro,
                                                  per_task=len(one_task), overrides=tuple(args.set))
    trl = "skipped (--skip-trl)"
    if not args.skip_trl:
        result = bench_trl(cfg, tokenizer, n_prompts=max(1, args.envs // 4), group=4, new_tokens=args.new_tokens,
                           micro=args.micro)
        if result is not None:
            trl = f"{result[1]:.1f} / {result[0]:.1f} s = {result[1] / result[0]:.2f}x"
        else:
            trl = "not installed"
    print(markdown_table(
        ["model", "generation tokens/s: batched / one env at a time", "update: train tokens/s (share of fp32 peak)",
         "SDAR / GRPO update, tasks of 4 (teacher)",
         f"SDAR / GRPO update, one task's {len(one_task)} samples (teacher)",
         "one GRPO step, TRL / ours"],
        [[args.model, f"{ours_tps:.1f} / {naive_tps:.1f} = {ours_tps / naive_tps:.2f}x",
          f"{tokens / seconds:.1f} ({achieved / peak:.0%} of {peak:.0f} GFLOP/s)",
          f"{sdar_s:.1f} / {grpo_s:.1f} s = {sdar_s / grpo_s:.2f}x ({teacher_s:.1f} s)",
          f"{sdar1_s:.1f} / {grpo1_s:.1f} s = {sdar1_s / grpo1_s:.2f}x ({teacher1_s:.1f} s)", trl]]))

if __name__ == "__main__":
    main()
