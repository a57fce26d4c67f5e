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

from sdar_envs.lucene import lucene_searcher_class
from sdar_envs.searchqa.generator import embedded_set
from sdar_envs.searchqa.retriever import get_retriever
from sdar_envs.searchqa.server import create_app
from sdar_envs.serving import BackgroundServer


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:9.1f} queries/s"


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
    print(f"{n} queries, top-3, index of {len(retriever.searcher)} passages")
    rows = {
        "pyserini raw, one at a time": timed(lambda: [raw.search(q, k=3) for q in queries]),
        "ours, one at a time": timed(lambda: [retriever.search([q], 3) for q in queries]),
        "pyserini raw batch_search (2 threads)": timed(
            lambda: raw.batch_search(queries, [str(i) for i in range(n)], k=3, threads=2)
        ),
        "ours, batches of 64": timed(lambda: [retriever.search(queries[i : i + 64], 3) for i in range(0, n, 64)]),
    }
    for name, seconds in rows.items():
        print(f"  {name:40s} {rate(n, seconds)}")
    print(
        f"  ours / raw, one at a time: {rows['pyserini raw, one at a time'] / rows['ours, one at a time']:.2f}; "
        f"batched: {rows['pyserini raw batch_search (2 threads)'] / rows['ours, batches of 64']:.2f}"
    )
    server = BackgroundServer(create_app(retriever), threads=32)
    url = server.url
    for clients in [int(c) for c in args.clients.split(",")]:
        print(f"  {'server, ' + str(clients) + ' concurrent clients':40s} {rate(n, load(url, queries, clients))}")
    server.close()


if __name__ == "__main__":
    main()
