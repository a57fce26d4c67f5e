"""Play sdar/ALFWorld-v0 episodes with a scripted policy and print the success rate by task type.

    python -m sdar_envs.alfworld.play                        # oracle expert on valid_unseen
    python -m sdar_envs.alfworld.play --policy random --episodes 60 --split train

With no data configured this first builds the embedded game set (about a minute on two cores).
The `expert` policy reads the engine's full state, so it should win every game; `random` picks an
admissible command uniformly, a floor any learned agent must beat.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import gymnasium as gym
import numpy as np

from sdar_envs.alfworld.data import SPLITS, TASK_TYPES

POLICIES = ("expert", "random")


def play(env: gym.Env, policy: str, episodes: int, seed: int) -> list[dict]:
    """Play `episodes` games spread evenly over the split; return one result dict per episode."""
    rng = np.random.default_rng(seed)
    n = env.unwrapped.num_tasks
    results = []
    for episode in range(episodes):
        index = episode * n // episodes if episodes <= n else episode % n
        obs, info = env.reset(seed=seed + episode, options={"task_index": index})
        done, reward_sum = False, 0.0
        while not done:
            if policy == "expert":
                action = env.unwrapped.expert_action()
            else:
                action = str(rng.choice(info["admissible_actions"]))
            obs, reward, terminated, truncated, info = env.step(action)
            reward_sum += reward
            done = terminated or truncated
        results.append({"task_type": info["task_type"], "won": info["won"], "steps": info["step"]})
    return results


def report(results: list[dict]) -> str:
    """A table of success rate and mean steps per task type."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_type[r["task_type"]].append(r)
    lines = [f"{'task type':34s} {'episodes':>8s} {'success':>8s} {'steps':>6s}"]
    for task_type in TASK_TYPES:
        rows = by_type.get(task_type)
        if rows:
            rate = np.mean([r["won"] for r in rows])
            lines.append(f"{task_type:34s} {len(rows):8d} {rate:8.1%} {np.mean([r['steps'] for r in rows]):6.1f}")
    overall = np.mean([r["won"] for r in results]) if results else 0.0
    lines.append(f"{'all':34s} {len(results):8d} {overall:8.1%} {np.mean([r['steps'] for r in results]):6.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sdar_envs.alfworld.play", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", choices=POLICIES, default="expert")
    parser.add_argument("--split", choices=SPLITS, default="valid_unseen")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="json_2.1.1 data (default: $ALFWORLD_DATA or embedded)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes={args.episodes}: expected at least 1.")

    env = gym.make("sdar_envs:sdar/ALFWorld-v0", split=args.split, data_dir=args.data_dir,
                   max_episode_steps=args.max_steps)
    start = time.perf_counter()
    results = play(env, args.policy, args.episodes, args.seed)
    env.close()
    elapsed = time.perf_counter() - start
    print(f"sdar/ALFWorld-v0 split={args.split} policy={args.policy} ({env.unwrapped.num_tasks} games, "
          f"{args.episodes} episodes, {elapsed:.1f}s)")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
