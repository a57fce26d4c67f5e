"""Search-QA's retriever: Pyserini BM25 over a wiki-18 style corpus or a Lucene index.

    Bm25Retriever.from_corpus("wiki-18.jsonl")    # indexed on first use, cached
    Bm25Retriever.from_index("indexes/wiki18")     # an existing Lucene index (e.g. Pyserini prebuilt)
    DenseRetriever("indexes/e5-faiss", "models/e5-base-v2", texts=Bm25Retriever.from_index(...))
    RemoteRetriever("http://127.0.0.1:8000")       # a retrieval server (python -m sdar_envs.searchqa.server)
    get_retriever(corpus=..., index_dir=...)       # the process's shared retriever for a configuration

Every retriever answers `search(queries, topk)` with, per query, the top passages: `Passage(id,
title, text, score)`. `format_information` writes them as Search-R1 does:
`Doc 1(Title: "Title") text` lines inside `<information> </information>`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdar_envs.lucene import Bm25Searcher, build_index
from sdar_envs.searchqa.data import QAFormatError, iter_corpus, split_title


@dataclass(frozen=True)
class Passage:
    """One retrieved passage."""

    id: str
    title: str  # as the corpus writes it, quotes included ("Paul Walker")
    text: str
    score: float

    @property
    def contents(self) -> str:
        """The wiki-18 `contents` field: title line, then the text."""
        return f"{self.title}\n{self.text}"


def format_information(passages: Sequence[Passage]) -> str:
    """Search-R1's rendering of retrieved passages."""
    docs = "\n".join(f"Doc {i}(Title: {p.title}) {p.text}" for i, p in enumerate(passages, 1))
    return f"<information>{docs.strip()}</information>"


class Bm25Retriever:
    """Pyserini Lucene BM25; passages come back from the index's stored raw JSON."""

    def __init__(self, index_dir: str | os.PathLike[str], *, threads: int = 2, cache: int = 65536) -> None:
        self.searcher = Bm25Searcher(index_dir)
        self.threads = threads
        self._contents = functools.lru_cache(maxsize=cache)(self._read_contents)

    @classmethod
    def from_corpus(cls, corpus: str | os.PathLike[str], **kwargs) -> Bm25Retriever:
        """Index a `{"id", "contents"}` JSON-lines corpus (once; cached by path, size and mtime)."""
        path = Path(corpus).expanduser().resolve()
        if not path.is_file():
            raise QAFormatError(f"corpus file {path} does not exist.")
        stat = path.stat()
        key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]

        return cls(build_index(f"searchqa-{path.stem}", iter_corpus(path), key=key, store_raw=True), **kwargs)

    @classmethod
    def from_documents(cls, name: str, docs: Sequence[dict[str, str]], **kwargs) -> Bm25Retriever:
        """Index in-memory documents (the embedded corpus); cached by their hash."""
        return cls(build_index(f"searchqa-{name}", docs, store_raw=True), **kwargs)

    @classmethod
    def from_index(cls, index_dir: str | os.PathLike[str], **kwargs) -> Bm25Retriever:
        """An existing Lucene index directory (its documents must store their raw JSON)."""
        return cls(index_dir, **kwargs)

    def _read_contents(self, docid: str) -> str:
        raw = self.searcher.raw(docid)
        if raw is None:
            raise KeyError(docid)
        try:
            return json.loads(raw).get("contents", "")
        except (json.JSONDecodeError, AttributeError):
            return raw  # an index that stores plain text

    def passage(self, docid: str, score: float = 0.0) -> Passage:
        """The stored passage `docid` (recently read passages are cached)."""
        title, text = split_title(self._contents(docid))
        return Passage(docid, title, text, score)

    def __len__(self) -> int:
        return len(self.searcher)

    def search(self, queries: Sequence[str], topk: int = 3) -> list[list[Passage]]:
        """The top `topk` passages of each query, best first (an empty query finds none)."""
        asked = [i for i, q in enumerate(queries) if q.strip()]
        hits: list[list] = [[] for _ in queries]
        if len(asked) == 1:
            hits[asked[0]] = self.searcher.search(queries[asked[0]], k=topk)
        elif asked:
            found = self.searcher.batch_search([queries[i] for i in asked], k=topk, threads=self.threads)
            for i, row in zip(asked, found, strict=True):
                hits[i] = row
        return [[self.passage(h.docid, h.score) for h in row] for row in hits]


class DenseRetriever:
    """Pyserini's Faiss searcher with a local query encoder, for users who have a dense index.

    `index_dir` is a Pyserini Faiss index folder (`index` + `docid` files); `encoder` a local
    Hugging Face encoder folder (e.g. e5-base-v2: `pooling="mean"`, `prefix="query:"`). Texts come
    from `texts`, a `Bm25Retriever` over the same corpus (whose index stores the raw documents).
    Needs `faiss-cpu` (`pip install 'sdar[dense]'`); nothing in the defaults uses it.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        encoder: str | os.PathLike[str],
        texts: Bm25Retriever,
        *,
        pooling: str = "mean",
        l2_norm: bool = True,
        prefix: str | None = None,
        threads: int = 2,
    ) -> None:
        from sdar_envs.lucene import lucene_searcher_class

        if not (Path(index_dir) / "index").is_file():
            raise FileNotFoundError(f"{index_dir} is not a Pyserini Faiss index folder (no 'index' file in it).")
        if not Path(encoder).is_dir():
            raise FileNotFoundError(f"query encoder {encoder} is not a local model folder (download it first).")
        lucene_searcher_class()  # the JVM and the import-time snags, before Pyserini's faiss module
        try:
            from pyserini.encode import AutoQueryEncoder
            from pyserini.search.faiss import FaissSearcher
        except ImportError as e:
            raise ImportError(f"dense retrieval needs faiss: pip install faiss-cpu ({e}).") from e
        query_encoder = AutoQueryEncoder(str(encoder), pooling=pooling, l2_norm=l2_norm, prefix=prefix)
        self.searcher = FaissSearcher(str(index_dir), query_encoder)
        self.texts = texts
        self.threads = threads

    def __len__(self) -> int:
        return int(self.searcher.num_docs)

    def search(self, queries: Sequence[str], topk: int = 3) -> list[list[Passage]]:
        """The top `topk` passages of each query by inner product."""
        if not queries:
            return []
        qids = [str(i) for i in range(len(queries))]
        results = self.searcher.batch_search(list(queries), qids, k=topk, threads=self.threads)
        return [[self.texts.passage(h.docid, float(h.score)) for h in results.get(q, [])] for q in qids]


_RETRIEVERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def get_retriever(
    corpus: str | None = None, index_dir: str | None = None, dense_index: str | None = None, encoder: str | None = None,
    prebuilt_index: str | None = None,
) -> Any:
    """The process's retriever, built once per configuration.

    BM25 over a corpus file, an index folder, a Pyserini prebuilt index by name (e.g.
    `wikipedia-dpr-100w`: from Pyserini's cache, or downloaded), or (none) the embedded corpus; with
    `dense_index` and `encoder`, dense retrieval whose passage texts come from that BM25 index.
    """
    if sum(x is not None for x in (corpus, index_dir, prebuilt_index)) > 1:
        raise ValueError("give at most one of corpus=, index_dir=, prebuilt_index=.")
    if prebuilt_index:
        from sdar_envs.lucene import prebuilt_index_dir

        index_dir = str(prebuilt_index_dir(prebuilt_index))
    if dense_index or encoder:
        if not (dense_index and encoder):
            raise ValueError("dense retrieval needs both dense_index= (a Faiss index folder) and encoder= (a model).")
        key = ("dense", str(dense_index), str(encoder), str(corpus), str(index_dir))
        with _LOCK:
            retriever = _RETRIEVERS.get(key)
        if retriever is None:
            retriever = DenseRetriever(dense_index, encoder, get_retriever(corpus, index_dir))
            with _LOCK:
                retriever = _RETRIEVERS.setdefault(key, retriever)
        return retriever
    key = ("bm25", str(corpus) if corpus else None, str(index_dir) if index_dir else None)
    with _LOCK:
        retriever = _RETRIEVERS.get(key)
    if retriever is None:
        if index_dir:
            retriever = Bm25Retriever.from_index(index_dir)
        elif corpus:
            retriever = Bm25Retriever.from_corpus(corpus)
        else:
            from sdar_envs.searchqa.generator import embedded_set

            retriever = Bm25Retriever.from_documents("embedded", embedded_set().passages)
        with _LOCK:
            retriever = _RETRIEVERS.setdefault(key, retriever)
    return retriever


class RemoteRetriever:
    """The retrieval server's `POST /retrieve`, as a retriever."""

    def __init__(self, url: str, timeout: float) -> None:
        import requests

        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/retrieve") else "/retrieve")
        self.http = requests.Session()
        self.timeout = timeout

    def search(self, queries: Sequence[str], topk: int = 3) -> list[list[Passage]]:
        import requests

        body = {"queries": list(queries), "topk": topk, "return_scores": True}
        try:
            response = self.http.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException as e:
            raise ConnectionError(f"retrieval server {self.url} did not answer: {e}. Start it with: "
                                  "python -m sdar_envs.searchqa.server --port PORT") from e  # fmt: skip
        if response.status_code != 200:
            raise RuntimeError(f"retrieval server {self.url} answered {response.status_code}: {response.text[:300]}")
        rows = response.json()["result"]
        return [[Passage(d["document"]["id"], *split_title(d["document"]["contents"]), float(d["score"])) for d in row]
                for row in rows]  # fmt: skip
