"""Does the teacher know more? SDAR's premise on held-out states, for a preset and a model.

    python examples/teacher_premise.py [PRESET] [checkpoint=FOLDER] [episodes=12] [tasks=24]
                                       [split=valid_unseen] [out=premise.json] [key=value ...]

With the preset's skills (`skills.*`, the env's own bank by default) and its precision: the
teacher's log-prob gap over the student on the env expert's answers in `episodes` held-out
episodes (`sdar_agent.premise.teacher_gap`), and the policy's held-out success on a panel of
`tasks` tasks with the skills in its own prompt against without (`skills_in_prompt_success`, at
`val_temperature`, `eval.samples` episodes a task, with the paired comparison). Prints a Markdown
table row that starts with the date, the machine and the commit, and writes the reports to `out`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sdar_agent.config import load_config, parse_command_line
from sdar_agent.evaluate import load_for_evaluation
from sdar_agent.hardware import measured_on
from sdar_agent.logprobs import Passes
from sdar_agent.models import compute_dtype, pick_device
from sdar_agent.premise import expert_states, skills_in_prompt_success, teacher_gap
from sdar_agent.rollout import skill_selector
from sdar_agent.stats import paired_comparison

OWN = ("checkpoint", "episodes", "tasks", "split", "out")


def main(argv: list[str] | None = None) -> dict:
    args = parse_command_line(list(sys.argv[1:] if argv is None else argv), OWN)
    cfg = load_config(args.preset, args.overrides)
    own = args.own
    checkpoint = Path(own["checkpoint"]) if "checkpoint" in own else None
    split = own.get("split", cfg.env.val_splits[0])
    episodes, tasks = int(own.get("episodes", 12)), int(own.get("tasks", 24))
    agent, model = load_for_evaluation(cfg, checkpoint)
    device = pick_device(cfg.model)
    passes = Passes(device, compute_dtype(cfg.model, device), cfg.rollout.temperature)
    selector = skill_selector(cfg, agent.tokenizer)
    states = expert_states(cfg, agent.tokenizer, agent.template, set(agent.generate.eos_ids()), selector, split,
                           episodes)
    gap = teacher_gap(passes, model, states, agent.tokenizer.pad_token_id)
    success = skills_in_prompt_success(agent, cfg, selector, split, tasks)
    comparison = paired_comparison(success["without_skills"]["outcomes"], success["with_skills"]["outcomes"],
                                   seed=cfg.seed)
    result = {"model": cfg.model.name, "checkpoint": str(checkpoint) if checkpoint else None, "split": split,
              "skills": {"bank": cfg.skills.bank or "(the env's own)", "strategy": cfg.skills.strategy,
                         "budget_tokens": cfg.skills.budget_tokens},
              "teacher_gap": gap, "success": success, "comparison": comparison.to_dict()}
    Path(own.get("out", "premise.json")).write_text(json.dumps(result, indent=1))
    print("| date | machine | commit | model | held-out answers (tokens) | teacher gap, nats/token | tokens "
          "teacher ahead | gap per answer, nats | success without skills | with skills in its prompt | "
          "difference [95 % CI], McNemar p |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"{measured_on()} {checkpoint or cfg.model.name} | {gap['answers']:.0f} ({gap['tokens']:.0f}) | "
          f"{gap['teacher_gap_mean']:+.3f} | {gap['positive_share']:.1%} | {gap['answer_gap_mean']:+.2f} | "
          f"{comparison.success_a:.1%} | {comparison.success_b:.1%} | {comparison.difference:+.1%} "
          f"[{comparison.difference_low:+.1%}, {comparison.difference_high:+.1%}], p = {comparison.mcnemar_p:.2g} |")
    return result


if __name__ == "__main__":
    main()
