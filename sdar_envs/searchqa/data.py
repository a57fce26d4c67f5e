r"""Search-QA questions and corpora: Search-R1 parquet, FlashRAG JSON lines, the embedded set.

Questions, from a file the user names:

- Search-R1 parquet (`id, question, golden_answers, data_source, prompt, ability, reward_model,
  extra_info`);
- JSON lines: FlashRAG's `{"id", "question", "golden_answers"}`, R1-Searcher's and Reflexion's
  `{"question", "answer"}`, and the like.

The golden answers are the first of `golden_answers`, `answers`, `answer` (a string or a list of
strings), `reward_model.ground_truth.target` that a row has. Each question keeps its
`data_source` (nq, hotpotqa, ...), which is the env's `task_type`: the row's own `data_source`,
else an explicit `data_source=`, else the known data set (`KNOWN_DATA_SOURCES`: nq, triviaqa,
popqa, hotpotqa, 2wikimultihopqa, musique, bamboogle, in their common spellings) that the file's
or its folder's name spells (`hotpot_qa_500.jsonl` -> `hotpotqa`, `nq_search/test.parquet` ->
`nq`, `2wiki/dev.jsonl` -> `2wikimultihopqa`), else `unknown`, with a warning.
Corpora are wiki-18 style JSON lines, `{"id", "contents": "\\"Title\\"\\ntext"}`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdar_envs.datafiles import iter_json_lines, read_json

log = logging.getLogger(__name__)


class QAFormatError(ValueError):
    """A question or corpus file is missing, corrupt, or not in a known layout."""


@dataclass(frozen=True)
class Question:
    """One question, its golden answers and its data source (the task type)."""

    qid: str
    question: str
    golden_answers: tuple[str, ...]
    data_source: str
    hops: tuple[str, ...] = field(default=())  # searches that find the gold passages (generated set)


ANSWER_FIELDS = ("golden_answers", "answers", "answer", "reward_model.ground_truth.target")
QUESTION_ROW = 'a question: {"question", "golden_answers" | "answer" | ...}'


def _field(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _answers(row: dict[str, Any], where: str) -> tuple[str, ...]:
    for name in ANSWER_FIELDS:
        value = _field(row, name)
        if value is None:
            continue
        if hasattr(value, "tolist"):  # numpy arrays from parquet
            value = value.tolist()
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and value and all(isinstance(a, str) and a.strip() for a in value):
            return tuple(a.strip() for a in value)
        raise QAFormatError(f"{where}: {name!r} must be a non-empty string or list of strings, got {value!r:.80}.")
    raise QAFormatError(f"{where}: no golden answers; looked for {list(ANSWER_FIELDS)} (keys: {sorted(row)[:8]}).")


#: The data sets Search-R1 trains and evaluates on, with the spellings their files, folders and rows use.
KNOWN_DATA_SOURCES = {
    "nq": ("nq", "naturalquestions", "nqopen"),
    "triviaqa": ("triviaqa", "trivia", "tqa"),
    "popqa": ("popqa",),
    "hotpotqa": ("hotpotqa", "hotpot"),
    "2wikimultihopqa": ("2wikimultihopqa", "2wikimqa", "2wiki", "2wikimultihop", "wikimultihopqa"),
    "musique": ("musique",),
    "bamboogle": ("bamboogle",),
}
_SPELLINGS = {spelling: name for name, spellings in KNOWN_DATA_SOURCES.items() for spelling in spellings}


def known_data_source(name: str) -> str | None:
    """The known data set `name` spells ("HotpotQA", "hotpot_qa", "2wiki_500.jsonl", "nq-open"), else None.

    A name matches when, lowercased, it, one of its words (split at `_`, `-`, `.`, spaces) or two
    neighbouring words joined ("hotpot_qa" -> "hotpotqa") is a spelling, digits after it aside
    ("hotpotqa500"); "r1_searcher", "flashrag" or "trivial" spell none.
    """
    lowered = name.lower().strip()
    words = [w for w in re.split(r"[\s_.\-/]+", lowered) if w]
    candidates = [re.sub(r"[\s_.\-]+", "", lowered), *words, *("".join(words[i:i + 2]) for i in range(len(words)))]
    for candidate in candidates:
        if (spelling := candidate.rstrip("0123456789") or candidate) in _SPELLINGS:
            return _SPELLINGS[spelling]
    return None


def data_source_of(path: Path) -> str | None:
    """A question file's known data set from its file name or its folder's name (see `known_data_source`)."""
    for name in (path.name, path.parent.name):
        if source := known_data_source(name):
            return source
    return None


def _question(row: dict[str, Any], where: str, qid: str, default_source: str) -> Question:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise QAFormatError(f"{where}: every row needs a non-empty 'question' string (keys: {sorted(row)[:8]}).")
    own = str(row.get("data_source") or row.get("dataset") or "").strip()
    return Question(
        qid=str(row.get("id", qid)),
        question=question.strip(),
        golden_answers=_answers(row, where),
        data_source=(known_data_source(own) or own.lower()) if own else default_source,
        hops=tuple(row.get("hops") or ()),
    )


def load_questions(path: str | Path, data_source: str | None = None) -> list[Question]:
    """Questions from a Search-R1 parquet file or a FlashRAG-style JSON-lines file.

    Each question's `data_source` is its row's own (a known data set under its one name, see
    `KNOWN_DATA_SOURCES`, else as the row writes it), else `data_source` when given, else the known
    data set the file's or its folder's name spells, else `unknown` (said once, in a warning).
    Questions without an `id` get one from the file's name and their line (`"nq.jsonl, line 7"`),
    the same on every machine.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise QAFormatError(f"question file {path} does not exist.")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise QAFormatError(f"{path}: not a readable parquet file ({e}).") from None
        numbered = [(f"row {i}", row) for i, row in enumerate(rows)]
    elif path.suffix == ".json" and path.read_bytes()[:64].lstrip().startswith(b"["):
        rows = read_json(path, list, QAFormatError, "question objects")
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        if bad is not None:
            raise QAFormatError(f"{path}, item {bad}: expected a question object, found {type(rows[bad]).__name__}.")
        numbered = [(f"item {i}", row) for i, row in enumerate(rows)]
    elif path.suffix in (".jsonl", ".json"):
        numbered = [(f"line {n}", row) for n, row in iter_json_lines(path, QAFormatError, QUESTION_ROW)]
    else:
        raise QAFormatError(f"{path}: expected a .parquet (Search-R1) or .jsonl / .json question file.")
    default_source = (data_source or "").strip().lower() or data_source_of(path) or "unknown"
    questions = [_question(row, f"{path}, {at}", f"{path.name}, {at}", default_source) for at, row in numbered]
    if not questions:
        raise QAFormatError(f"{path} holds no questions.")
    unnamed = sum(q.data_source == "unknown" for q in questions)
    if unnamed:
        log.warning("%s: %d of %d questions name no known data set (%s) in their row, the file's name or its "
                    "folder's: their task type is 'unknown' (pass data_source=NAME to name it).", path, unnamed,
                    len(questions), ", ".join(KNOWN_DATA_SOURCES))
    return questions


def load_split(data_dir: str | Path, split: str, data_source: str | None = None) -> list[Question]:
    """The questions of `split` in a folder of `{split}.parquet` / `{split}.jsonl` files (see `load_questions`)."""
    root = Path(data_dir).expanduser()
    for suffix in (".parquet", ".jsonl"):
        if (root / f"{split}{suffix}").is_file():
            return load_questions(root / f"{split}{suffix}", data_source)
    raise QAFormatError(f"no {split}.parquet or {split}.jsonl in {root}.")


def split_title(contents: str) -> tuple[str, str]:
    """wiki-18 `contents` -> (title with its quotes, text), split at the first newline."""
    title, _, text = contents.partition("\n")
    return title, text


def iter_corpus(path: str | Path) -> Iterator[dict[str, str]]:
    """A wiki-18 style JSON-lines corpus, streamed as `{"id", "contents"}` rows (checked line by line).

    Rows with `title` and `text` instead of `contents` (DPR-style) get contents = the quoted title, a
    newline, the text.
    """
    path = Path(path).expanduser()
    for number, row in iter_json_lines(path, QAFormatError, 'a passage: {"id", "contents"}'):
        contents = row.get("contents")
        if contents is None and isinstance(row.get("text"), str):
            contents = f'"{row.get("title", "")}"\n{row["text"]}'
        if not isinstance(contents, str):
            raise QAFormatError(f"{path}, line {number}: expected a passage {{'id', 'contents': str}} (or 'title' "
                                f"and 'text'), got keys {sorted(row)[:6]}.")
        yield {"id": str(row.get("id", number)), "contents": contents}


def load_corpus(path: str | Path) -> list[dict[str, str]]:
    """A wiki-18 style JSON-lines corpus as `[{"id", "contents"}]` (see `iter_corpus`)."""
    return list(iter_corpus(path))


def dump_jsonl(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSON lines (used to save the embedded set in the user's layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
