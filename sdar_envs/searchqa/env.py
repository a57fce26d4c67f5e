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
(`generator.py`). Corpus: `corpus=` (wiki-18 JSON lines), `index_dir=` (a Lucene index),
`prebuilt_index=` (a Pyserini prebuilt index, e.g. `wikipedia-dpr-100w`), or
`retriever_url=` (`python -m sdar_envs.searchqa.server`); with the embedded questions the default is
the embedded corpus. Dense retrieval: `dense_index=` (a Pyserini Faiss index) and `encoder=` (a local
query encoder), with `corpus=` or `index_dir=` for the passage texts. `task_type` is the question's
`data_source`. The expert (`expert_step`) is grounded: it answers only from a passage its own
searches retrieved (`sdar_envs.searchqa.expert`).
"""

from __future__ import annotations

from typing import Any

from sdar_envs.answers import PromptTemplate
from sdar_envs.core import ExpertStep, NoDemonstration, TaskStart, TextEnv, Transition
from sdar_envs.searchqa import expert
from sdar_envs.searchqa.data import Question, load_questions, load_split
from sdar_envs.searchqa.generator import embedded_questions
from sdar_envs.searchqa.protocol import MAX_QUERY_CHARS, REMINDER, parse_action, parse_search_answer
from sdar_envs.searchqa.retriever import RemoteRetriever, format_information, get_retriever
from sdar_envs.searchqa.scoring import exact_match, token_f1


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
    - `questions` / `data_dir`: real questions (see `sdar_envs.searchqa.data`): `questions` one
      file, the same questions whatever `split` says (the trainer does not validate on it);
      `data_dir` a folder of `{split}.parquet` / `{split}.jsonl` files. `data_source`: the data set
      of rows that name none (else the known data set the file's or folder's name spells).
    - `corpus` / `index_dir` / `prebuilt_index` / `retriever_url`: where passages come from (a
      wiki-18 JSON-lines file, a Lucene index folder, a Pyserini prebuilt index name such as
      `wikipedia-dpr-100w`, a retrieval server); `dense_index` + `encoder` for dense retrieval.
      `topk`: passages per search (3). `timeout`: seconds per HTTP request.
    - `render_mode`: "ansi" renders the transcript.

    ## Version History
    - v0: initial version.
    """

    splits = ("train", "valid", "test")
    skill_bank = "searchqa"
    prompt_template = PromptTemplate(
        "searchqa",
        "You answer questions with the help of a search engine over an encyclopedia. Each search "
        "returns the top passages inside <information> </information>.",
        "First reason inside <think> </think>. Then either search, writing <search> your query "
        "</search>, or, when you know the answer, give it inside <answer> </answer> with no "
        "explanation, for example <answer> Paris </answer>.",
        parse=parse_search_answer,
        answer="<think>{thought}</think>\n{action}",  # the env's action is already <search>/<answer>
        answer_ends=("</search>", "</answer>"),
    )

    def __init__(
        self,
        split: str = "train",
        questions: str | None = None,
        data_dir: str | None = None,
        corpus: str | None = None,
        index_dir: str | None = None,
        retriever_url: str | None = None,
        prebuilt_index: str | None = None,
        dense_index: str | None = None,
        encoder: str | None = None,
        topk: int = 3,
        render_mode: str | None = None,
        timeout: float = 60.0,
        data_source: str | None = None,
    ) -> None:
        super().__init__(split=split, render_mode=render_mode)
        if sum(x is not None for x in (corpus, index_dir, retriever_url, prebuilt_index)) > 1:
            raise ValueError("SearchQAEnv: give at most one of corpus=, index_dir=, prebuilt_index=, retriever_url=.")
        if retriever_url and (dense_index or encoder):
            raise ValueError("SearchQAEnv: dense_index= / encoder= configure a local retriever; a server given by "
                             "retriever_url= takes them as --dense-index / --encoder.")  # fmt: skip
        if (questions or data_dir) and not (corpus or index_dir or retriever_url or prebuilt_index):
            raise ValueError("SearchQAEnv: real questions need their corpus: give corpus= (wiki-18 JSON lines), "
                             "index_dir= (a Lucene index), prebuilt_index= (e.g. 'wikipedia-dpr-100w') or "
                             "retriever_url= (a retrieval server).")  # fmt: skip
        if not 1 <= topk <= 100:
            raise ValueError(f"SearchQAEnv: topk={topk}; use 1..100 (Search-R1 uses 3).")
        self.topk = topk
        if questions:
            self.questions = load_questions(questions, data_source)
        else:
            self.questions = load_split(data_dir, split, data_source) if data_dir else embedded_questions(split)
        self.retriever = (
            RemoteRetriever(retriever_url, timeout)
            if retriever_url
            else get_retriever(corpus, index_dir, dense_index, encoder, prebuilt_index)
        )
        ids = [q.qid for q in self.questions]
        if len(set(ids)) != len(ids):  # a file with repeated ids: number them, stable and unique
            ids = [f"{q.qid}#{i}" for i, q in enumerate(self.questions)]
        self.set_tasks(ids, [q.data_source for q in self.questions])
        self._question: Question | None = None
        self._done = False
        self._searched: list[str] = []  # this episode's queries (the demonstrator's memory)
        self._plan: expert.Plan | None | bool = False  # the demonstrator's plan; False: not made yet

    @classmethod
    def same_tasks_in_every_split(cls, kwargs: dict[str, Any]) -> str:
        if kwargs.get("questions"):
            return (f"questions={kwargs['questions']} is one file, played whatever the split: give a data_dir= "
                    "folder of train.jsonl and valid.jsonl (or .parquet) files instead")
        return ""

    def _start(self, index: int) -> TaskStart:
        self._question = self.questions[index]
        self._done, self._searched, self._plan = False, [], False
        return TaskStart(self._question.question, self._question.question, self._question.data_source, [])

    def _act(self, action: str) -> Transition:
        question = self._question
        assert question is not None
        if self._done:
            return Transition("The question is answered; reset() for a new one.", 0.0, True, self._won,
                              self._score, False, [])  # fmt: skip
        parsed = parse_action(action)
        if parsed is None or not parsed.argument:
            return Transition(REMINDER, 0.0, False, False, 0.0, False, [])
        kind, argument = parsed.kind, parsed.argument
        if len(argument) > MAX_QUERY_CHARS:
            reason = f"Invalid action: the {kind} text is {len(argument)} characters; keep it under {MAX_QUERY_CHARS}."
            return Transition(reason, 0.0, False, False, 0.0, False, [])
        if kind == "search":
            self._searched.append(argument)
            passages = self.retriever.search([argument], self.topk)[0]
            return Transition(format_information(passages), 0.0, False, False, 0.0, True, [])
        self._done = True
        won = exact_match(argument, question.golden_answers)
        score = token_f1(argument, question.golden_answers)
        verdict = "correct" if won else "not correct"
        return Transition(f"Your answer: {argument}. It is {verdict}.", float(won), True, won, score, True, [])

    def close(self) -> None:
        """Close the connection to a retrieval server (an in-process retriever is shared and stays)."""
        if isinstance(self.retriever, RemoteRetriever):
            self.retriever.http.close()
        super().close()

    def expert_step(self) -> ExpertStep:
        """The grounded demonstrator (`sdar_envs.searchqa.expert`): searches that retrieve a gold answer, then it.

        It plans once per episode with the retriever, then makes the plan's searches, and answers
        with the gold answer as the retrieved passage writes it, naming that passage. Raises
        `NoDemonstration` when no passage within `expert.SEARCH_BUDGET` searches holds a gold answer.
        """
        question = self._question
        if question is None:
            raise RuntimeError("expert_step() needs a reset() first.")
        if self._plan is False:
            self._plan = expert.plan(question, lambda query: self.retriever.search([query], self.topk)[0])
        plan = self._plan
        if plan is None:
            raise NoDemonstration(f"question {self.current_task_id!r}: no passage retrieved within "
                                  f"{expert.SEARCH_BUDGET} searches holds a golden answer.")
        pick = self.thought_rng().choice
        pending = [query for query in plan.searches if query not in self._searched]
        if pending and not self._done:
            query = pending[0]
            if query == plan.bridge:
                thought = pick([f"The passage names {query}; I search for it next.",
                                f"That points to {query}; I search for it."])
            elif not self._searched:
                thought = pick([f"I search for {query} first.", f"I search for {query}."])
            else:
                thought = pick([f"Not there yet; I search for {query}.", f"I search for {query} instead."])
            return ExpertStep(f"<search> {query} </search>", thought)
        answer = plan.answer
        return ExpertStep(f"<answer> {answer} </answer>",
                          pick([f"Doc {plan.doc} ({plan.title}) says {answer}.",
                                f"The passage on {plan.title} gives it: {answer}."]))

    def oracle_actions(self) -> list[str]:
        """Searches that find the gold passages, then the gold answer (generated questions only)."""
        question = self._question
        if question is None or not question.hops:
            raise RuntimeError("oracle_actions() needs a generated question (they record their searches).")
        return [f"<search> {hop} </search>" for hop in question.hops] + [
            f"<answer> {question.golden_answers[0]} </answer>"
        ]
