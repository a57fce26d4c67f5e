"""Many env processes, one WebShop site and one retriever: serve each once, point the envs at it.

    python examples/shared_servers.py [--envs 4]

In-process envs each load their own catalog, index and JVM; with `base_url=` / `retriever_url=`
the env processes are thin HTTP clients (no Java, no spaCy) and share one server. Here the servers
run on threads of this script (`sdar_envs.serving.BackgroundServer`); in a real set-up start them
with `python -m sdar_envs.webshop.server` and `python -m sdar_envs.searchqa.server`. Each group of
envs plays one task (as GRPO does) with the scripted oracle, and the script prints their rewards.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

from sdar_envs.searchqa.generator import embedded_set
from sdar_envs.searchqa.retriever import get_retriever
from sdar_envs.searchqa.server import create_app as retrieval_app
from sdar_envs.serving import BackgroundServer
from sdar_envs.webshop.expert import oracle_plan
from sdar_envs.webshop.server import create_app as webshop_app
from sdar_envs.webshop.server import get_shop


def play(envs: gym.vector.VectorEnv, task_index: int, plan: list[str]) -> list[float]:
    envs.reset(options={"task_index": task_index})
    rewards = [0.0] * envs.num_envs
    for action in plan:
        _, reward, terminated, truncated, _ = envs.step([action] * envs.num_envs)
        rewards = [old + r for old, r in zip(rewards, reward.tolist(), strict=True)]
        if all(terminated | truncated):
            break
    return rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=4, help="env processes per benchmark")
    args = parser.parse_args()
    # Text observations need shared_memory=False. Gymnasium 1.4's async workers then keep their
    # "reset on the next step" flag across an explicit reset(); with autoreset disabled every
    # episode starts only where we reset it, with the task we chose.
    vector = {"num_envs": args.envs, "vectorization_mode": "async",
              "vector_kwargs": {"shared_memory": False, "autoreset_mode": gym.vector.AutoresetMode.DISABLED}}

    shop = get_shop()
    with BackgroundServer(webshop_app(shop), threads=16) as site:
        start = time.perf_counter()
        envs = gym.make_vec("sdar_envs:sdar/WebShop-v0", base_url=site.url, split="test", **vector)
        print(f"WebShop at {site.url}: {args.envs} env processes up in {time.perf_counter() - start:.1f} s")
        for index in range(3):
            goal = shop.catalog.split("test")[index]
            rewards = play(envs, index, oracle_plan(shop, goal, shop.product(goal.asin)))
            print(f"  goal {goal.goal_id} ({goal.category}): rewards {rewards}")
        envs.close()

    questions = embedded_set().questions
    with BackgroundServer(retrieval_app(get_retriever()), threads=16) as retrieval:
        envs = gym.make_vec("sdar_envs:sdar/SearchQA-v0", retriever_url=retrieval.url, split="test", **vector)
        ids = list(envs.call("task_ids")[0])
        by_id = {q["id"]: q for q in questions}
        print(f"Search-QA retrieval at {retrieval.url}")
        for index in range(3):
            q = by_id[ids[index]]
            plan = [f"<search> {hop} </search>" for hop in q["hops"]] + [f"<answer> {q['golden_answers'][0]} </answer>"]
            print(f"  {q['data_source']:16s} {q['question']!r}: rewards {play(envs, index, plan)}")
        envs.close()


if __name__ == "__main__":
    main()
