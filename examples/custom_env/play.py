"""Play examples/GuessNumber-v0 through the skill hook with a bisecting policy.

    python examples/custom_env/play.py

Shows the whole path of a new environment: register, `gym.make`, `PrivilegedSkills` with the
env's own bank (no arguments), and the contract's `info` keys.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).parent))
from guess_env import ENV_ID, register  # noqa: E402

from sdar_envs.wrappers import PrivilegedSkills  # noqa: E402


def bisect_policy(history: list[tuple[int, str]], top: int) -> str:
    low, high = 1, top
    for guess, hint in history:
        if hint == "Higher.":
            low = guess + 1
        elif hint == "Lower.":
            high = guess - 1
    return f"guess[{(low + high) // 2}]"


def main() -> int:
    register()
    env = PrivilegedSkills(gym.make(ENV_ID, split="test"), strategy="keyword")
    wins, steps = 0, 0
    for index in range(env.unwrapped.num_tasks):
        obs, info = env.reset(options={"task_index": index})
        if index == 0:
            print(f"task: {info['task']}  type: {info['task_type']}")
            print(f"skills shown to the teacher:\n{info['skills']['text']}\n")
        top = int(re.search(r"and (\d+)", info["task"]).group(1))
        history: list[tuple[int, str]] = []
        while True:
            action = bisect_policy(history, top)
            obs, reward, terminated, truncated, info = env.step(action)
            history.append((int(action[6:-1]), obs))
            if terminated or truncated:
                break
        wins += info["won"]
        steps += info["step"]
    n = env.unwrapped.num_tasks
    print(f"{ENV_ID}: won {wins}/{n} test tasks, {steps / n:.1f} guesses on average")
    return 0 if wins == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
