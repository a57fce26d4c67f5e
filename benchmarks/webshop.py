"""Env steps/s of sdar/WebShop-v0 in-process and over HTTP, and server throughput under load.

    python benchmarks/webshop.py [--episodes 20] [--clients 1,8,32] [--data-dir DIR]

Each episode is the oracle's: search for the goal product, open it, click its options, buy
(4-6 steps, every page kind but the sub-pages, and the reward at the end). The same episodes run
in-process (the Flask app through its test client) and over HTTP against a waitress server in this
process (`python -m sdar_envs.webshop.server` serves the same way), interleaved so machine noise
hits both alike. Then N concurrent sessions (threads, one HTTP connection each) play episodes
against the server for a fixed time: requests/s and the median latency.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time

import requests

from sdar_agent.hardware import markdown_table
from sdar_envs.serving import BackgroundServer
from sdar_envs.webshop.env import WebShopEnv
from sdar_envs.webshop.server import create_app, get_shop


def play(env: WebShopEnv, index: int, plan: list[str]) -> tuple[int, float]:
    env.reset(options={"task_index": index})
    start = time.perf_counter()
    for action in plan:
        env.step(action)
    return len(plan), time.perf_counter() - start


def load(base_url: str, plans: list[tuple[str, list[str]]], clients: int, seconds: float) -> tuple[float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        http = requests.Session()
        mine: list[float] = []
        i = k
        while time.perf_counter() < stop:
            goal_id, plan = plans[i % len(plans)]
            t = time.perf_counter()
            started = http.post(f"{base_url}/api/sessions", json={"goal_id": goal_id})
            started.raise_for_status()
            sid = started.json()["session_id"]
            mine.append(time.perf_counter() - t)
            for action in plan:
                t = time.perf_counter()
                http.post(f"{base_url}/api/sessions/{sid}/act", json={"action": action}).raise_for_status()
                mine.append(time.perf_counter() - t)
            http.delete(f"{base_url}/api/sessions/{sid}")
            i += clients
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--clients", default="1,8,32", help="concurrent sessions for the load test")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load test")
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    parser.add_argument("--data-dir", default=None, help="WebShop real data; default: the embedded catalog")
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queue-depth notes under deliberate load

    shop = get_shop(args.data_dir)
    server = BackgroundServer(create_app(shop), threads=args.threads)
    base_url = server.url

    local = WebShopEnv(split="test", data_dir=args.data_dir)
    remote = WebShopEnv(split="test", base_url=base_url)
    plans = []
    for index in range(args.episodes):
        local.reset(options={"task_index": index})
        plans.append((local.current_task_id, local.oracle_actions()))
    play(local, 0, plans[0][1])  # warm up both paths (spaCy, JIT, caches)
    play(remote, 0, plans[0][1])

    steps = {"in-process": 0, "http": 0}
    seconds = {"in-process": 0.0, "http": 0.0}
    for index, (_, plan) in enumerate(plans):
        for name, env in (("in-process", local), ("http", remote)):
            n, s = play(env, index, plan)
            steps[name] += n
            seconds[name] += s
    print(f"catalog: {shop.catalog.name} ({len(shop.catalog.products)} products), {args.episodes} oracle episodes, "
          f"{steps['http']} steps each way; then {args.seconds:.0f} s of load per client count "
          f"(waitress, {args.threads} threads)")
    rates = {name: steps[name] / seconds[name] for name in steps}
    loads = [(clients, *load(base_url, plans, clients, args.seconds)) for clients in map(int, args.clients.split(","))]
    print(markdown_table(
        ["catalog", "env steps/s in-process / over HTTP", "HTTP / in-process",
         *(f"{clients} sessions: requests/s, median ms" for clients, _, _ in loads)],
        [[shop.catalog.name, f"{rates['in-process']:.0f} / {rates['http']:.0f}",
          f"{rates['http'] / rates['in-process']:.2f}", *(f"{rps:.0f}, {ms:.1f}" for _, rps, ms in loads)]]))
    server.close()


if __name__ == "__main__":
    main()
