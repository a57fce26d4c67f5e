"""The algorithms, as configurations of one training loop (`algo.name` picks one, once).

| name         | RL term          | teacher term                                    | skills in the student prompt |
|--------------|------------------|-------------------------------------------------|------------------------------|
| `grpo`       | PPO-clip (GRPO)  | -                                               | no                           |
| `sdar`       | PPO-clip         | lambda * gated distillation, g = sg(sigma(beta*delta)) | no                    |
| `opsd`       | -                | ungated distillation (g = 1)                    | no                           |
| `grpo_opsd`  | PPO-clip         | lambda * distillation with beta = 0 (g = 0.5)   | no                           |
| `skill_grpo` | PPO-clip         | -                                               | yes (evaluated with and without) |
| `skill_sd`   | PPO-clip         | lambda_sd * k3 KL to the teacher x clipped ratio | no                          |
| `rlsd`       | PPO-clip with teacher-reweighted token advantages | -              | no                           |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlgoSpec:
    """What an algorithm adds to or removes from the shared loop."""

    rl: bool  # the PPO-clip GRPO term
    teacher: bool  # needs the teacher pass (skills in the teacher's prompt)
    distill: str = ""  # "", "gated" (SDAR family), "skill_sd"
    fixed_beta: float | None = None  # overrides algo.sdar_beta (grpo_opsd: 0 -> constant gate 0.5)
    ungated: bool = False  # OPSD: g = 1
    skills_in_student: bool = False
    rlsd: bool = False

    @property
    def needs_skills(self) -> bool:
        return self.teacher or self.skills_in_student


ALGORITHMS: dict[str, AlgoSpec] = {
    "grpo": AlgoSpec(rl=True, teacher=False),
    "sdar": AlgoSpec(rl=True, teacher=True, distill="gated"),
    "opsd": AlgoSpec(rl=False, teacher=True, distill="gated", ungated=True),
    "grpo_opsd": AlgoSpec(rl=True, teacher=True, distill="gated", fixed_beta=0.0),
    "skill_grpo": AlgoSpec(rl=True, teacher=False, skills_in_student=True),
    "skill_sd": AlgoSpec(rl=True, teacher=True, distill="skill_sd"),
    "rlsd": AlgoSpec(rl=True, teacher=True, rlsd=True),
}
