r"""Search-QA questions and corpora: Search-R1 parquet, FlashRAG JSON lines, the embedded set.

Questions, from a file the user names:

- Search-R1 parquet (`id, question, golden_answers, data_source, prompt, ability, reward_model,
  extra_info`): the golden answers are `golden_answers`, else `reward_model.ground_truth.target`;
- FlashRAG JSON lines (`{"id", "question", "golden_answers"}`, optionally `"data_source"`); a
  file without data sources takes the file's stem before the first `_` (`nq_test.jsonl` -> `nq`).

Each question keeps its `data_source` (nq, hotpotqa, ...), which is the env's `task_type`.
Corpora are wiki-18 style JSON lines, `{"id", "contents": "\\"Title\\"\\ntext"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdar_envs.lucene import iter_jsonl


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


def _answers(value: Any, where: str) -> tuple[str, ...]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
        raise QAFormatError(f"{where}: 'golden_answers' must be a non-empty list of strings, got {value!r:.80}.")
    return tuple(value)


def _question(row: dict[str, Any], where: str, default_source: str) -> Question:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        raise QAFormatError(f"{where}: every row needs a 'question' string.")
    answers = row.get("golden_answers")
    if answers is None:
        answers = ((row.get("reward_model") or {}).get("ground_truth") or {}).get("target")
    return Question(
        qid=str(row.get("id", where)),
        question=row["question"].strip(),
        golden_answers=_answers(answers, where),
        data_source=str(row.get("data_source") or default_source),
        hops=tuple(row.get("hops") or ()),
    )


def load_questions(path: str | Path) -> list[Question]:
    """Questions from a Search-R1 parquet file or a FlashRAG-style JSON-lines file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise QAFormatError(f"question file {path} does not exist.")
    default_source = path.stem.split("_")[0].lower()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise QAFormatError(f"{path}: not a readable parquet file ({e}).") from None
        iterator = enumerate(rows)
    elif path.suffix in (".jsonl", ".json"):
        try:
            iterator = enumerate(list(iter_jsonl(path)))
        except ValueError as e:
            raise QAFormatError(str(e)) from None
    else:
        raise QAFormatError(f"{path}: expected a .parquet (Search-R1) or .jsonl (FlashRAG) question file.")
    questions = [_question(row, f"{path}, row {i}", default_source) for i, row in iterator]
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


def load_corpus(path: str | Path) -> list[dict[str, str]]:
    """A wiki-18 style JSON-lines corpus as `[{"id", "contents"}]` (checked row by row)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise QAFormatError(f"corpus file {path} does not exist.")
    docs = []
    try:
        for i, row in enumerate(iter_jsonl(path)):
            if not isinstance(row, dict) or "contents" not in row:
                raise QAFormatError(f"{path}, row {i}: expected {{'id', 'contents'}}, got keys {list(row)[:5]}.")
            docs.append({"id": str(row.get("id", i)), "contents": str(row["contents"])})
    except ValueError as e:
        if isinstance(e, QAFormatError):
            raise
        raise QAFormatError(str(e)) from None
    return docs


def dump_jsonl(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSON lines (used to save the embedded set in the user's layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
