"""The retrieval HTTP server: many env workers share one index.

    python -m sdar_envs.searchqa.server --port 8000                       # the embedded corpus
    python -m sdar_envs.searchqa.server --corpus wiki-18.jsonl --port 8000
    python -m sdar_envs.searchqa.server --index indexes/wiki18 --threads 32
    python -m sdar_envs.searchqa.server --prebuilt-index wikipedia-dpr-100w   # Pyserini's wiki-18 BM25

binds 127.0.0.1 by default and serves with waitress. `POST /retrieve` takes either request shape:

- Search-R1's `{"queries": ["...", ...], "topk": 3, "return_scores": false}`;
- verl-agent's `{"query": "..."}` (one query; `topk` and `return_scores` optional here too);

and answers `{"result": [[passage, ...] per query]}`, a passage being `{"id", "contents"}`, or
`{"document": {"id", "contents"}, "score": s}` with `return_scores`. Queries from concurrent clients
that queue up while a batch runs are searched together as the next batch (`--max-batch`;
`--max-wait-ms` adds a wait for more). A malformed body
gets a 400 with the reason; `GET /healthz` reports the index size.
"""

from __future__ import annotations

import argparse
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from sdar_envs.serving import RateLimitedLog, check_text, read_json_object

logger = logging.getLogger(__name__)
MAX_QUERIES = 512
MAX_TOPK = 100
MAX_QUERY_CHARS = 2000
MAX_REQUEST_CHARS = 64 * 1024  # all of one request's queries together
MAX_PASSAGES = 1536  # queries x topk: what one request may ask back (Search-R1: 512 queries x 3)


@dataclass
class _Job:
    """One request's queries, searched a share at a time."""

    queries: list[str]
    topk: int
    future: Future
    results: list[Any] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.results)


class Batcher:
    """Collects queries from concurrent requests and searches them in batches on one thread.

    Each batch holds at most `max_batch` queries, shared out among the waiting requests of one
    `topk` (oldest first): a request of many queries is searched a share per batch, so requests
    that arrive behind it are served in the next batch instead of waiting for all of it. A batch
    that fails is searched again request by request, so one request's bad query fails it alone.
    """

    def __init__(self, retriever: Any, *, max_batch: int = 64, max_wait_ms: float = 0.0) -> None:
        self.retriever = retriever
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: queue.Queue[tuple[list[str], int, Future]] = queue.Queue()
        self.batches = 0
        threading.Thread(target=self._loop, name="retrieval-batcher", daemon=True).start()

    def search(self, queries: list[str], topk: int) -> list[list[Any]]:
        """Queue the queries, wait for their batches; the passages of each query."""
        future: Future = Future()
        self.queue.put((queries, topk, future))
        return future.result()

    def _loop(self) -> None:
        pending: list[_Job] = []
        while True:
            if not pending:
                pending.append(_Job(*self.queue.get()))
            while sum(len(j.queries) - j.done for j in pending) < self.max_batch:
                try:  # take what has queued up meanwhile; wait max_wait only when asked to
                    job = self.queue.get(timeout=self.max_wait) if self.max_wait > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                pending.append(_Job(*job))
            group = [j for j in pending if j.topk == pending[0].topk]
            share = max(1, self.max_batch // len(group))
            pieces = [(j, j.queries[j.done : j.done + share]) for j in group]
            self._run(pieces, group[0].topk)
            for job in group:
                if job.future.done() or job.done == len(job.queries):
                    if not job.future.done():
                        job.future.set_result(job.results)
                    pending.remove(job)

    def _run(self, pieces: list[tuple[_Job, list[str]]], topk: int) -> None:
        """One batch of the jobs' pieces; if it fails, each piece on its own (a failing piece fails its job)."""
        flat = [q for _, queries in pieces for q in queries]
        try:
            results = self.retriever.search(flat, topk)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            if len(pieces) == 1:
                pieces[0][0].future.set_exception(e)
            else:
                for piece in pieces:
                    self._run([piece], topk)
            return
        self.batches += 1
        start = 0
        for job, queries in pieces:
            job.results += results[start : start + len(queries)]
            start += len(queries)


class TooLarge(ValueError):
    """A request within every limit of its parts that asks for more work than one request may: a 413."""


def _bad(message: str):
    return jsonify({"error": message}), 400


def _queries(body: dict[str, Any]) -> list[str]:
    """The body's queries, either shape, each checked to be text."""
    if "queries" in body and "query" in body:
        raise ValueError("give 'queries' (a list) or 'query' (a string), not both")
    if "query" in body:
        if not isinstance(body["query"], str):
            raise ValueError("'query' must be a string")
        queries = [body["query"]]
    elif "queries" in body:
        queries = body["queries"]
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            raise ValueError("'queries' must be a list of strings")
    else:
        raise ValueError("the body needs 'queries' (a list of strings) or 'query' (a string)")
    for i, q in enumerate(queries):
        check_text(q, f"query {i}")
    return queries


def parse_request(body: Any, default_topk: int) -> tuple[list[str], int, bool]:
    """Validate a /retrieve body (either shape) -> (queries, topk, return_scores); ValueError says why."""
    if not isinstance(body, dict):
        raise ValueError('send a JSON object: {"queries": ["..."], "topk": 3} or {"query": "..."}')
    queries = _queries(body)
    if len(queries) > MAX_QUERIES:
        raise ValueError(f"{len(queries)} queries in one request; send at most {MAX_QUERIES}")
    if any(len(q) > MAX_QUERY_CHARS for q in queries):
        raise ValueError(f"a query is longer than {MAX_QUERY_CHARS} characters")
    if sum(map(len, queries)) > MAX_REQUEST_CHARS:
        raise TooLarge(f"the queries hold {sum(map(len, queries))} characters; send at most {MAX_REQUEST_CHARS} "
                       "in one request")
    topk = body.get("topk", default_topk)
    if topk is None:
        topk = default_topk
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise ValueError(f"'topk' must be an int in [1, {MAX_TOPK}], got {topk!r}")
    if len(queries) * topk > MAX_PASSAGES:
        raise TooLarge(f"{len(queries)} queries x topk {topk} = {len(queries) * topk} passages; ask for at most "
                       f"{MAX_PASSAGES} in one request")
    scores = body.get("return_scores", False)
    if not isinstance(scores, bool):
        raise ValueError("'return_scores' must be true or false")
    return queries, topk, scores


def create_app(retriever: Any, *, topk: int = 3, max_batch: int = 64, max_wait_ms: float = 0.0) -> Flask:
    """The retrieval app over `retriever` (anything with `search(queries, topk)`)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    batcher = Batcher(retriever, max_batch=max_batch, max_wait_ms=max_wait_ms)
    errors = RateLimitedLog(logger)
    app.extensions["batcher"] = batcher

    @app.post("/retrieve")
    def retrieve():
        try:
            queries, k, scores = parse_request(read_json_object(request.get_data()), topk)
        except TooLarge as e:
            return jsonify({"error": f"/retrieve request too large: {e}.", "status": 413}), 413
        except ValueError as e:
            return _bad(f"bad /retrieve request: {e}.")
        try:
            results = batcher.search(queries, k) if queries else []
        except Exception as e:  # noqa: BLE001 - this request's queries alone failed
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            if "TooManyClauses" in reason or "maxClauseCount" in reason:
                return _bad("bad /retrieve request: a query has more distinct terms than BM25 takes (Lucene's "
                            "maxClauseCount, 1024): shorten it.")
            errors.error("retrieval failed for one request: %s", reason)
            return jsonify({"error": f"retrieval failed: {reason}", "status": 500}), 500
        if scores:
            rows = [
                [{"document": {"id": p.id, "contents": p.contents}, "score": p.score} for p in ps] for ps in results
            ]
        else:
            rows = [[{"id": p.id, "contents": p.contents} for p in ps] for ps in results]
        return jsonify({"result": rows})

    @app.get("/healthz")
    def healthz():
        size = len(retriever) if hasattr(retriever, "__len__") else None
        return jsonify({"ok": True, "documents": size, "batches": batcher.batches})

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return jsonify({"error": e.description, "status": e.code}), e.code

    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m sdar_envs.searchqa.server`: serve a retriever."""
    from sdar_envs.searchqa.retriever import get_retriever

    parser = argparse.ArgumentParser(description="Serve BM25 retrieval over HTTP (POST /retrieve).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--corpus", help="a wiki-18 style JSON-lines corpus (indexed on first use)")
    source.add_argument("--index", help="an existing Lucene index directory")
    source.add_argument("--prebuilt-index", help="a Pyserini prebuilt index name, e.g. wikipedia-dpr-100w")
    parser.add_argument("--dense-index", help="a Pyserini Faiss index (dense retrieval; texts from --corpus/--index)")
    parser.add_argument("--encoder", help="the dense index's local query encoder folder")
    parser.add_argument("--topk", type=int, default=3, help="default topk when a request gives none")
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="wait this long for more queries before a batch (0: batch what has queued up)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    retriever = get_retriever(args.corpus, args.index, args.dense_index, args.encoder, args.prebuilt_index)
    app = create_app(retriever, topk=args.topk, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    from waitress import serve

    print(f"retrieval ({type(retriever).__name__}): POST http://{args.host}:{args.port}/retrieve", flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, connection_limit=1000)


if __name__ == "__main__":
    main()
