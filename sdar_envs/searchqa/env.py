"""`sdar/SearchQA-v0`: answer a question with a search engine, Search-R1 style.

    env = gym.make("sdar/SearchQA-v0")                                      # embedded set, in-process
    env = gym.make("sdar/SearchQA-v0", questions="nq_search/test.parquet", corpus="wiki-18.jsonl")
    env = gym.make("sdar/SearchQA-v0", questions="nq_test.jsonl", retriever_url="http://127.0.0.1:8000")

The first observation is the question. Actions are `search[query]` / `answer[text]` or the
Search-R1 tags `<search> query </search>` / `<answer> text </answer>` (the first complete one in
the action text counts, so a whole model response can be passed as the action). A search returns
the top-`topk` passages (3) as `<information>Doc 1(Title: ...) ...</information>`; an answer ends
the episode with reward 1.0 on an exact match after Search-R1's normalisation (0.0 otherwise),
`won` = exact match and `score` = token F1. An action with neither gets the format reminder and
`action_valid=False`. Four turns by default (`gym.make(..., max_episode_steps=N)`).

Questions: `questions=` a Search-R1 parquet or FlashRAG JSON-lines file (the split is that file),
or `data_dir=` a folder of `{split}.parquet` / `{split}.jsonl` files; neither: the embedded set
(`generator.py`). Corpus: `corpus=` (wiki-18 JSON lines), `index_dir=` (a Lucene index), or
`retriever_url=` (`python -m sdar_envs.searchqa.server`); with the embedded questions the default is
the embedded corpus. Dense retrieval: `dense_index=` (a Pyserini Faiss index) and `encoder=` (a local
query encoder), with `corpus=` or `index_dir=` for the passage texts. `task_type` is the question's
`data_source`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdar_envs.core import TaskStart, TextEnv, Transition
from sdar_envs.searchqa.data import QAFormatError, Question, load_questions
from sdar_envs.searchqa.retriever import Bm25Retriever, Passage, format_information
from sdar_envs.searchqa.scoring import exact_match, token_f1

REMINDER = (
    "Invalid action: nothing to do. To search, write <search> your query </search> (or search[query]); "
    "to answer, write <answer> your answer </answer> (or answer[text])."
)
_ACTIONS = re.compile(r"<(search|answer)>(.*?)</\1>|\b(search|answer)\[(.*?)\]", re.IGNORECASE | re.DOTALL)
MAX_QUERY_CHARS = 1000

_RETRIEVERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def parse_action(text: str) -> tuple[str, str] | None:
    """The first `search` / `answer` action in `text` as (kind, argument), or None."""
    match = _ACTIONS.search(text)
    if match is None:
        return None
    kind = (match.group(1) or match.group(3)).lower()
    argument = (match.group(2) if match.group(1) else match.group(4)).strip()
    return kind, argument


def embedded_set():
    """The embedded questions and corpus (generated once per process; deterministic)."""
    from sdar_envs.searchqa.generator import generate

    with _LOCK:
        if "embedded" not in _RETRIEVERS:
            _RETRIEVERS["embedded"] = generate()
        return _RETRIEVERS["embedded"]


def get_retriever(
    corpus: str | None = None, index_dir: str | None = None, dense_index: str | None = None, encoder: str | None = None
) -> Any:
    """The process's retriever, built once per configuration.

    BM25 over a corpus file, an index, or (neither) the embedded corpus; with `dense_index` and
    `encoder`, dense retrieval whose passage texts come from that BM25 index.
    """
    if dense_index or encoder:
        if not (dense_index and encoder):
            raise ValueError("dense retrieval needs both dense_index= (a Faiss index folder) and encoder= (a model).")
        from sdar_envs.searchqa.retriever import DenseRetriever

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
            retriever = Bm25Retriever.from_documents("embedded", embedded_set().passages)
        with _LOCK:
            retriever = _RETRIEVERS.setdefault(key, retriever)
    return retriever


class _RemoteRetriever:
    """The retrieval server's `POST /retrieve`, as a retriever."""

    def __init__(self, url: str, timeout: float) -> None:
        import requests

        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/retrieve") else "/retrieve")
        self.http = requests.Session()
        self.timeout = timeout

    def search(self, queries: Sequence[str], topk: int = 3) -> list[list[Passage]]:
        import requests

        from sdar_envs.searchqa.data import split_title

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


def _questions_for(split: str, questions: str | None, data_dir: str | None) -> list[Question]:
    if questions:
        return load_questions(questions)
    if data_dir:
        root = Path(data_dir).expanduser()
        for suffix in (".parquet", ".jsonl"):
            if (root / f"{split}{suffix}").is_file():
                return load_questions(root / f"{split}{suffix}")
        raise QAFormatError(f"no {split}.parquet or {split}.jsonl in {root}.")
    from sdar_envs.searchqa.generator import split_questions

    rows = split_questions(embedded_set().questions, split)
    return [Question(str(r["id"]), str(r["question"]), tuple(r["golden_answers"]), str(r["data_source"]),
                     tuple(r["hops"])) for r in rows]  # fmt: skip


class SearchQAEnv(TextEnv):
    """Search-QA (Search-R1, Jin et al., 2025): answer a question, searching an encyclopedia first.

    ## Description
    Open-domain question answering with a retriever: the agent may search several times, then
    answers once; the answer is compared with the golden answers after normalisation.

    ## Action Space
    `<search> query </search>` or `search[query]`; `<answer> text </answer>` or `answer[text]`.
    The first complete one in the text counts. Anything else gets the format reminder and
    `action_valid=False`.

    ## Observation Space
    At reset the question ("Who founded the Naedreizei Institute?"); after a search the top
    passages as Search-R1 writes them:

        <information>Doc 1(Title: "Naedreizei Institute") The Naedreizei Institute is a ...
        Doc 2(Title: "...") ...</information>

    ## Rewards
    1.0 for an answer that matches a golden answer exactly after normalisation, else 0.

    ## Starting State
    The question chosen by `reset(options={"task_id"|"task_index": ...})` or the seed.

    ## Episode End
    Terminated by an answer; truncated after 4 turns (`max_episode_steps`).

    ## Information
    `task` the question, `task_id` the question id, `task_type` its `data_source` (nq, hotpotqa,
    ...; single_hop / entity_attribute / multi_hop / comparison in the embedded set),
    `admissible_actions` (empty: the space is open), `won` (exact match), `score` (token F1 of the
    answer, 0 before answering), `action_valid`, `step`.

    ## Arguments
    - `split`: "train" | "valid" | "test" (the embedded set, or `{split}.*` under `data_dir`).
    - `questions` / `data_dir`: real questions (see `sdar_envs.searchqa.data`).
    - `corpus` / `index_dir` / `retriever_url`: where passages come from; `dense_index` + `encoder`
      for dense retrieval. `topk`: passages per search (3). `timeout`: seconds per HTTP request.
    - `render_mode`: "ansi" renders the transcript.

    ## Version History
    - v0: initial version.
    """

    splits = ("train", "valid", "test")
    skill_bank = "searchqa"

    def __init__(
        self,
        split: str = "train",
        questions: str | None = None,
        data_dir: str | None = None,
        corpus: str | None = None,
        index_dir: str | None = None,
        retriever_url: str | None = None,
        dense_index: str | None = None,
        encoder: str | None = None,
        topk: int = 3,
        render_mode: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(split=split, render_mode=render_mode)
        if sum(x is not None for x in (corpus, index_dir, retriever_url)) > 1:
            raise ValueError("SearchQAEnv: give at most one of corpus=, index_dir=, retriever_url=.")
        if retriever_url and (dense_index or encoder):
            raise ValueError("SearchQAEnv: dense_index= / encoder= configure a local retriever; a server given by "
                             "retriever_url= takes them as --dense-index / --encoder.")  # fmt: skip
        if (questions or data_dir) and not (corpus or index_dir or retriever_url):
            raise ValueError("SearchQAEnv: real questions need their corpus: give corpus= (wiki-18 JSON lines), "
                             "index_dir= (a Lucene index) or retriever_url= (a retrieval server).")  # fmt: skip
        if not 1 <= topk <= 100:
            raise ValueError(f"SearchQAEnv: topk={topk}; use 1..100 (Search-R1 uses 3).")
        self.topk = topk
        self.questions = _questions_for(split, questions, data_dir)
        self.retriever = (
            _RemoteRetriever(retriever_url, timeout)
            if retriever_url
            else get_retriever(corpus, index_dir, dense_index, encoder)
        )
        ids = [q.qid for q in self.questions]
        if len(set(ids)) != len(ids):  # a file with repeated ids: number them, stable and unique
            ids = [f"{q.qid}#{i}" for i, q in enumerate(self.questions)]
        self.set_tasks(ids, [q.data_source for q in self.questions])
        self._question: Question | None = None
        self._done = False

    def _start(self, index: int) -> TaskStart:
        self._question = self.questions[index]
        self._done = False
        return TaskStart(self._question.question, self._question.question, self._question.data_source, [])

    def _act(self, action: str) -> Transition:
        question = self._question
        assert question is not None
        if self._done:
            return Transition("The question is answered; reset() for a new one.", 0.0, True, self._won,
                              self._score, False, [])  # fmt: skip
        parsed = parse_action(action)
        if parsed is None or not parsed[1]:
            return Transition(REMINDER, 0.0, False, False, 0.0, False, [])
        if len(parsed[1]) > MAX_QUERY_CHARS:
            reason = (
                f"Invalid action: the {parsed[0]} text is {len(parsed[1])} characters; keep it under {MAX_QUERY_CHARS}."
            )
            return Transition(reason, 0.0, False, False, 0.0, False, [])
        kind, argument = parsed
        if kind == "search":
            passages = self.retriever.search([argument], self.topk)[0]
            return Transition(format_information(passages), 0.0, False, False, 0.0, True, [])
        self._done = True
        won = exact_match(argument, question.golden_answers)
        score = token_f1(argument, question.golden_answers)
        verdict = "correct" if won else "not correct"
        return Transition(f"Your answer: {argument}. It is {verdict}.", float(won), True, won, score, True, [])

    def close(self) -> None:
        """Close the connection to a retrieval server (an in-process retriever is shared and stays)."""
        if isinstance(self.retriever, _RemoteRetriever):
            self.retriever.http.close()
        super().close()

    def oracle_actions(self) -> list[str]:
        """Searches that find the gold passages, then the gold answer (generated questions only)."""
        question = self._question
        if question is None or not question.hops:
            raise RuntimeError("oracle_actions() needs a generated question (they record their searches).")
        return [f"<search> {hop} </search>" for hop in question.hops] + [
            f"<answer> {question.golden_answers[0]} </answer>"
        ]
