"""Reset and step latency of sdar/ALFWorld-v0 against the raw TextWorld env on the same games.

    python benchmarks/env_step.py [--games 12] [--steps 20] [--data-dir DIR]

The raw env is what ALFWorld's own text env builds: `textworld.gym.register_games` with alfworld's
`AlfredDemangler` and `AlfredInfos` wrappers, one game at a time (batch size 1, no worker process).
Both play the same games with the same command sequence (the expert's walkthrough short of the win, then
`look` / `inventory`),
interleaved game by game so machine noise hits both alike. Prints milliseconds and the ratio
ours / raw (below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym

from sdar_agent.hardware import markdown_table


def commands_for(game_file: Path, steps: int) -> list[str]:
    """The walkthrough without its winning command, then `look` / `inventory`: never ends early."""
    walkthrough = json.loads(game_file.read_text()).get("walkthrough") or []
    return (walkthrough[:-1] + ["look", "inventory"] * steps)[:steps]


def time_ours(env: gym.Env, index: int, commands: list[str]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    env.reset(options={"task_index": index})
    reset_s = time.perf_counter() - start
    step_s = []
    for command in commands:
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(command)
        step_s.append(time.perf_counter() - start)
        if terminated or truncated:
            break
    return reset_s, step_s


def time_raw(game_file: Path, commands: list[str]) -> tuple[float, list[float]]:
    import textworld
    import textworld.gym
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    env_id = textworld.gym.register_games(
        [str(game_file)], infos, batch_size=1, asynchronous=False, max_episode_steps=len(commands) + 1,
        wrappers=[AlfredDemangler(), AlfredInfos],
    )
    env = textworld.gym.make(env_id)
    start = time.perf_counter()
    env.reset()
    reset_s = time.perf_counter() - start
    step_s = []
    for command in commands:
        start = time.perf_counter()
        _, _, dones, _ = env.step([command])
        step_s.append(time.perf_counter() - start)
        if dones[0]:
            break
    env.close()
    return reset_s, step_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data-dir", default=None, help="json_2.1.1 data (default: a fresh generated set)")
    args = parser.parse_args()

    data_dir = args.data_dir
    if data_dir is None:
        from sdar_envs.alfworld.generate import generate_set
        from sdar_envs.alfworld.generator import Difficulty

        data_dir = tempfile.mkdtemp(prefix="sdar-bench-")
        generate_set(Path(data_dir), {"train": args.games}, seed=1, difficulty=Difficulty(), log=lambda _: None)

    env = gym.make("sdar/ALFWorld-v0", data_dir=data_dir, max_episode_steps=args.steps + 1)
    games = env.unwrapped.games[: args.games]
    ours_reset, ours_step, raw_reset, raw_step = [], [], [], []
    for index, game in enumerate(games):
        commands = commands_for(game.game_file, args.steps)
        # Our env reloads only when the game changes; time a fresh load like the raw env does.
        env.unwrapped._engine = None
        r, s = time_ours(env, index, commands)
        ours_reset.append(r)
        ours_step += s
        r, s = time_raw(game.game_file, commands)
        raw_reset.append(r)
        raw_step += s
    env.close()

    def ms(values):
        return 1000 * statistics.median(values)

    print(f"ALFWorld env latency on {len(games)} games, {len(ours_step)} steps each side (median ms):")
    print(markdown_table(["games", "reset+load, sdar / raw TextWorld ms", "sdar / raw", "step, sdar / raw TextWorld ms",
                          "sdar / raw"],
                         [[len(games), f"{ms(ours_reset):.1f} / {ms(raw_reset):.1f}",
                           f"{ms(ours_reset) / ms(raw_reset):.2f}",
                           f"{ms(ours_step):.1f} / {ms(raw_step):.1f}", f"{ms(ours_step) / ms(raw_step):.2f}"]]))

if __name__ == "__main__":
    main()
