"""Every loader answers a malformed file with its own error, naming the file (and the row or key).

One table per loader: eight kinds of bad file (wrong top-level type, missing key, wrong value
type, empty, truncated, binary garbage, one huge line, wrong encoding) written over one of the
loader's files; the loader must raise its own error type, whose message names the file. No other
exception (AttributeError, KeyError, UnicodeDecodeError, ...) may escape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sdar_agent.config import ConfigError, load_config
from sdar_envs.alfworld.data import GameDataError, read_game, read_traj
from sdar_envs.searchqa.data import QAFormatError, load_corpus, load_questions
from sdar_envs.webshop.catalog import CatalogError, load_real
from skillbank import SkillBank, SkillBankError

GENERIC = {
    "empty": b"",
    "binary garbage": bytes(range(256)) * 8,
    "one huge line": b'{"x": "' + b"y" * 5_000_000,  # 5 MB, no end
}


def kinds(good: str, wrong_type: str, missing_key: str, wrong_value: str) -> dict[str, bytes]:
    """The eight kinds of bad file for a loader whose valid file is `good`."""
    return {
        "wrong top-level type": wrong_type.encode(),
        "missing key": missing_key.encode(),
        "wrong value type": wrong_value.encode(),
        "truncated": good.rstrip().encode()[:-3],  # the file ends inside its last line
        "wrong encoding": good.encode("utf-16"),
        **GENERIC,
    }


def check(loader, path: Path, error: type[Exception], content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(error) as caught:
        loader(path)
    assert path.name in str(caught.value), str(caught.value)[:300]


# ------------------------------------------------------------------ ALFWorld
TRAJ = json.dumps({"task_type": "pick_and_place_simple", "task_id": "t1",
                   "pddl_params": {"object_target": "Mug", "parent_target": "Desk"},
                   "turk_annotations": {"anns": [{"task_desc": "put a mug on the desk."}]}})
GAME = json.dumps({"pddl_domain": "(define (domain d))", "grammar": "{}", "pddl_problem": "(define (problem p))",
                   "solvable": True})


@pytest.mark.parametrize("kind, content", kinds(
    TRAJ, "[1, 2]", '{"task_type": "pick_and_place_simple"}',
    '{"task_type": "pick_and_place_simple", "pddl_params": ["Mug"]}').items())
def test_alfworld_trial(tmp_path, kind, content):
    check(read_traj, tmp_path / "traj_data.json", GameDataError, content)


@pytest.mark.parametrize("kind, content", kinds(
    GAME, '"a game"', '{"pddl_domain": "(d)", "grammar": "{}"}',
    '{"pddl_domain": 3, "grammar": "{}", "pddl_problem": "(p)"}').items())
def test_alfworld_game(tmp_path, kind, content):
    check(read_game, tmp_path / "game.tw-pddl", GameDataError, content)


# ------------------------------------------------------------------ WebShop
PRODUCTS = json.dumps([{"asin": "B0001", "name": "green tea bags", "full_description": "Tea.",
                        "pricing": "$4.99", "category": "grocery", "query": "tea",
                        "product_category": "Grocery › Tea", "customization_options": {}}])
INSTRUCTIONS = json.dumps({"B0001": {"instruction": "i want green tea", "instruction_attributes": ["green"]}})
HUMAN = json.dumps({"B0001": [{"instruction": "find green tea", "instruction_attributes": ["green"],
                               "instruction_options": []}]})
WEBSHOP_FILES = {
    "items_shuffle_1k.json": (PRODUCTS, '{"asin": "B0001"}', '[{"name": "tea"}]', '[{"asin": ["B0001"]}]'),
    "items_ins_v2_1k.json": (INSTRUCTIONS, '["i want tea"]', '{"B0001": {"instruction_attributes": 3}}',
                             '{"B0001": "i want tea"}'),
    "items_human_ins.json": (HUMAN, '[{"instruction": "find tea"}]', '{"B0001": [{"instruction_attributes": []}]}',
                             '{"B0001": {"instruction": "x"}}'),
}


@pytest.mark.parametrize("name", list(WEBSHOP_FILES))
@pytest.mark.parametrize("kind", ["wrong top-level type", "missing key", "wrong value type", "truncated",
                                  "wrong encoding", *GENERIC])
def test_webshop_data_files(tmp_path, name, kind):
    for file_name, (good, *_) in WEBSHOP_FILES.items():
        (tmp_path / file_name).write_text(good)
    assert load_real(tmp_path).goals  # the valid set loads
    content = kinds(*WEBSHOP_FILES[name])[kind]
    check(lambda _: load_real(tmp_path), tmp_path / name, CatalogError, content)


def test_a_human_goals_list_says_what_it_is(tmp_path):
    for file_name, (good, *_) in WEBSHOP_FILES.items():
        (tmp_path / file_name).write_text(good)
    (tmp_path / "items_human_ins.json").write_text(json.dumps(["find tea", "buy a lamp"]))  # human_goals.json's shape
    with pytest.raises(CatalogError, match="human_goals.json"):
        load_real(tmp_path)


def test_webshop_processed_products(tmp_path):
    rows = "\n".join([json.dumps({"id": "B1", "contents": "tea", "product": json.loads(PRODUCTS)[0]})])
    for kind, content in kinds(rows, "[1, 2]", '{"id": "B1", "contents": "tea"}',
                               '{"id": "B1", "product": "tea"}').items():
        folder = tmp_path / kind.replace(" ", "-")
        folder.mkdir()
        (folder / "items_ins_v2_1k.json").write_text(INSTRUCTIONS)
        check(lambda _, folder=folder: load_real(folder), folder / "products.jsonl", CatalogError, content)


# ------------------------------------------------------------------ Search-QA
QUESTIONS = "\n".join(json.dumps({"id": f"q{i}", "question": f"who founded x{i}?", "golden_answers": ["Ann"]})
                      for i in range(4))
CORPUS = "\n".join(json.dumps({"id": str(i), "contents": f'"Title {i}"\ntext {i}'}) for i in range(4))


@pytest.mark.parametrize("kind, content", kinds(
    QUESTIONS, '["who founded x?"]', '{"id": "q1", "question": "who?"}', '{"question": "who?", "answer": 3}').items())
def test_searchqa_questions(tmp_path, kind, content):
    check(load_questions, tmp_path / "nq_test.jsonl", QAFormatError, content)


@pytest.mark.parametrize("kind, content", kinds(
    CORPUS, '"a passage"', '{"id": "1"}', '{"id": "1", "contents": ["text"]}').items())
def test_searchqa_corpus(tmp_path, kind, content):
    check(load_corpus, tmp_path / "wiki-18.jsonl", QAFormatError, content)


def test_searchqa_parquet(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet needs pyarrow (pip install 'sdar[searchqa]')")
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "test.parquet"
    pq.write_table(pa.table({"id": ["a"], "question": ["who?"], "golden_answers": [[]]}), path)
    with pytest.raises(QAFormatError, match=r"test.parquet, row 0: 'golden_answers' must be a non-empty"):
        load_questions(path)
    for content in (b"", b"PAR1garbage", "x".encode("utf-16")):
        check(load_questions, path, QAFormatError, content)


# ------------------------------------------------------------------ skill banks and configs
BANK = json.dumps({"format": "sdar-skillbank", "version": 1, "name": "b",
                   "general": [{"id": "g", "title": "t", "principle": "p", "when": "w"}]})


@pytest.mark.parametrize("kind, content", kinds(
    BANK, "[]", '{"format": "sdar-skillbank", "version": 1}',
    '{"format": "sdar-skillbank", "version": 1, "name": "b", "general": "p"}').items())
def test_skill_bank(tmp_path, kind, content):
    check(SkillBank.load, tmp_path / "bank.json", (SkillBankError, ValueError), content)


PRESET = "name: x\nsteps: 3\nrollout:\n  group_size: 2\n"


@pytest.mark.parametrize("kind, content", kinds(
    PRESET, "- steps\n- 3\n", "rollout:\n  groupsize: 2\n", "steps: many\n").items())
def test_config_preset(tmp_path, kind, content):
    check(lambda path: load_config(str(path)), tmp_path / "preset.yaml", ConfigError, content)


@pytest.mark.parametrize("override, message", [
    ("model.device=tpu9", "model.device='tpu9'"),
    ("model.device=cuda", "no CUDA GPU is visible"),
    ("env.kwargs={bogus_kw: 1}", "env.kwargs: sdar/ALFWorld-v0 takes no 'bogus_kw'"),
])
def test_preflight_refuses_bad_devices_and_env_arguments_in_one_line(override, message):
    pytest.importorskip("torch", reason="the trainer's checks need torch")
    import torch

    from sdar_agent.config import ConfigError, load_config
    from sdar_agent.preflight import check_runnable

    if "cuda" in override and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_runnable(load_config("demo", [override, "model.name=tiny"]))


def test_preflight_loads_the_skill_bank_and_reads_the_model_config(tmp_path):
    pytest.importorskip("torch", reason="the trainer's checks need torch")
    from sdar_agent.config import ConfigError, load_config
    from sdar_agent.preflight import check_runnable

    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"name": "x", "general_skills": "not a list"}))
    with pytest.raises(ConfigError, match="is malformed"):
        check_runnable(load_config("demo", [f"skills.bank={bank}", "model.name=tiny"]), uses_skills=True)
    for text, message in (("{}", "names no model_type"), ("{not json", "is not valid JSON")):
        model = tmp_path / f"model{len(text)}"
        model.mkdir()
        (model / "config.json").write_text(text)
        with pytest.raises(ConfigError, match=message):
            check_runnable(load_config("demo", [f"model.name={model}"]))
    preset = tmp_path / "preset.yaml"
    preset.write_text("base: demo\nrollout:\n  group_sise: 4\n")
    with pytest.raises(ConfigError, match=r"'group_sise' is not a key of rollout\)\. Did you mean 'group_size'"):
        load_config(str(preset))
