r"""Search-QA questions and corpora: Search-R1 parquet, FlashRAG JSON lines, the embedded set.

Questions, from a file the user names:

- Search-R1 parquet (`id, question, golden_answers, data_source, prompt, ability, reward_model,
  extra_info`);
- JSON lines: FlashRAG's `{"id", "question", "golden_answers"}`, R1-Searcher's and Reflexion's
  `{"question", "answer"}`, and the like.

The golden answers are the first of `golden_answers`, `answers`, `answer` (a string or a list of
strings), `reward_model.ground_truth.target` that a row has. Each question keeps its
`data_source` (nq, hotpotqa, ...), which is the env's `task_type`: the row's own `data_source`,
else the file's or its folder's name up to the first `_` when that is not a split name
(`hotpotqa_500.jsonl` -> `hotpotqa`, `nq_search/test.parquet` -> `nq`), else `unknown`.
Corpora are wiki-18 style JSON lines, `{"id", "contents": "\\"Title\\"\\ntext"}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdar_envs.datafiles import iter_json_lines, read_json


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
SPLIT_NAMES = {"train", "valid", "validation", "val", "dev", "test", "eval"}


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


def data_source_of(path: Path) -> str:
    """A question file's data source from its name or its folder's, split names aside; else `unknown`."""
    for name in (path.stem, path.parent.name):
        head = name.split("_")[0].lower()
        if head and head not in SPLIT_NAMES:
            return head
    return "unknown"


def _question(row: dict[str, Any], where: str, default_source: str) -> Question:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise QAFormatError(f"{where}: every row needs a non-empty 'question' string (keys: {sorted(row)[:8]}).")
    return Question(
        qid=str(row.get("id", where)),
        question=question.strip(),
        golden_answers=_answers(row, where),
        data_source=str(row.get("data_source") or default_source).lower(),
        hops=tuple(row.get("hops") or ()),
    )


def load_questions(path: str | Path) -> list[Question]:
    """Questions from a Search-R1 parquet file or a FlashRAG-style JSON-lines file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise QAFormatError(f"question file {path} does not exist.")
    default_source = data_source_of(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise QAFormatError(f"{path}: not a readable parquet file ({e}).") from None
        numbered = [(i, f"{path}, row {i}", row) for i, row in enumerate(rows)]
    elif path.suffix == ".json" and path.read_bytes()[:64].lstrip().startswith(b"["):
        rows = read_json(path, list, QAFormatError, "question objects")
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        if bad is not None:
            raise QAFormatError(f"{path}, item {bad}: expected a question object, found {type(rows[bad]).__name__}.")
        numbered = [(i, f"{path}, item {i}", row) for i, row in enumerate(rows)]
    elif path.suffix in (".jsonl", ".json"):
        numbered = [(n, f"{path}, line {n}", row) for n, row in iter_json_lines(path, QAFormatError, QUESTION_ROW)]
    else:
        raise QAFormatError(f"{path}: expected a .parquet (Search-R1) or .jsonl / .json question file.")
    questions = [_question(row, where, default_source) for _, where, row in numbered]
    if not questions:
        raise QAFormatError(f"{path} holds no questions.")
    return questions


def load_split(data_dir: str | Path, split: str) -> list[Question]:
    """The questions of `split` in a folder of `{split}.parquet` / `{split}.jsonl` files."""
    root = Path(data_dir).expanduser()
    for suffix in (".parquet", ".jsonl"):
        if (root / f"{split}{suffix}").is_file():
            return load_questions(root / f"{split}{suffix}")
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
