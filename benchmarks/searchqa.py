"""Retrieval queries/s: our retriever in-process, through the HTTP server, and raw Pyserini.

    python benchmarks/searchqa.py [--queries 2000] [--clients 1,8,32] [--corpus FILE | --index DIR]

All rows answer the same queries (the embedded set's questions, or questions made from the corpus
titles) with top-3 BM25. Raw Pyserini is `LuceneSearcher.search` (docids and scores only) and
`batch_search`; ours also returns each passage's text (read from the index), as the env needs.
The server rows run N concurrent clients, one query per request, against a waitress server in
this process, so its batcher can group queries that arrive together.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

import requests

from sdar_agent.hardware import markdown_table
from sdar_envs.lucene import lucene_searcher_class
from sdar_envs.searchqa.generator import embedded_set
from sdar_envs.searchqa.retriever import get_retriever
from sdar_envs.searchqa.server import create_app
from sdar_envs.serving import BackgroundServer


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load(url: str, queries: list[str], clients: int) -> float:
    def client(k: int) -> None:
        http = requests.Session()
        for q in queries[k::clients]:
            http.post(url + "/retrieve", json={"query": q, "topk": 3}).raise_for_status()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--index", default=None)
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queue-depth notes under deliberate load

    retriever = get_retriever(corpus=args.corpus, index_dir=args.index)
    if args.corpus or args.index:
        queries = [retriever.passage(str(i)).title.strip('"') for i in range(args.queries)]
    else:
        queries = [q["question"] for q in embedded_set().questions[: args.queries]]
    raw = lucene_searcher_class()(str(retriever.searcher.index_dir))
    raw.search(queries[0], k=3)
    retriever.search(queries[:8], 3)
    n = len(queries)
    print(f"{n} queries, top-3, index of {len(retriever.searcher)} passages; queries/s")
    rows = {
        "pyserini raw, one at a time": timed(lambda: [raw.search(q, k=3) for q in queries]),
        "ours, one at a time": timed(lambda: [retriever.search([q], 3) for q in queries]),
        "pyserini raw batch_search (2 threads)": timed(
            lambda: raw.batch_search(queries, [str(i) for i in range(n)], k=3, threads=2)
        ),
        "ours, batches of 64": timed(lambda: [retriever.search(queries[i : i + 64], 3) for i in range(0, n, 64)]),
    }
    server = BackgroundServer(create_app(retriever), threads=32)
    clients = [int(c) for c in args.clients.split(",")]
    served = [n / load(server.url, queries, k) for k in clients]
    one, batched = rows["pyserini raw, one at a time"], rows["pyserini raw batch_search (2 threads)"]
    print(markdown_table(
        ["passages", "one at a time: raw / ours", "ours / raw", "batched: raw / ours (64)", "ours / raw",
         *(f"server, {k} clients" for k in clients)],
        [[len(retriever.searcher), f"{n / one:.0f} / {n / rows['ours, one at a time']:.0f}",
          f"{one / rows['ours, one at a time']:.2f}", f"{n / batched:.0f} / {n / rows['ours, batches of 64']:.0f}",
          f"{batched / rows['ours, batches of 64']:.2f}", *(f"{q:.0f}" for q in served)]]))
    server.close()


if __name__ == "__main__":
    main()
