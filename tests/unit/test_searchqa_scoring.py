"""Search-QA: answer normalisation, EM and F1, action parsing, request validation, the generator."""

import json

import pytest

from sdar_envs.searchqa.scoring import exact_match, normalize_answer, token_f1


@pytest.mark.parametrize("raw, normal", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  a   Tale of Two  Cities. ", "tale of two cities"),
    ("Wilhelm Conrad Röntgen", "wilhelm conrad röntgen"),
    ("U.S.A.", "usa"),
    ("an apple and the pear", "apple and pear"),
    ("theatre", "theatre"),  # articles only as whole words
    ("1,843", "1843"),
])
def test_normalisation(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_against_any_golden_answer():
    assert exact_match("the Beatles", ["Beatles", "The Fab Four"])
    assert exact_match("fab four", ["Beatles", "The Fab Four"])
    assert not exact_match("Beatles band", ["Beatles"])
    assert not exact_match("", ["Beatles"])


def test_token_f1():
    assert token_f1("Paris", ["Paris"]) == 1.0
    assert token_f1("Paris France", ["Paris"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("London", ["Paris"]) == 0.0
    assert token_f1("the", ["Paris"]) == 0.0  # nothing left after normalisation
    assert token_f1("New York City", ["York", "New York City"]) == 1.0  # the best golden answer


def test_parse_action_forms():
    from sdar_envs.searchqa.protocol import parse_action

    def kind_and_argument(text, **kwargs):
        found = parse_action(text, **kwargs)
        return None if found is None else (found.kind, found.argument)

    assert kind_and_argument("<search> who founded x </search>") == ("search", "who founded x")
    assert kind_and_argument("<think>hmm</think>\n<answer> Paris </answer>") == ("answer", "Paris")
    assert parse_action("<think>hmm</think>\n<answer> Paris </answer>").start == len("<think>hmm</think>\n")
    assert kind_and_argument("search[red river]") == ("search", "red river")
    assert kind_and_argument("Answer[1843]") == ("answer", "1843")
    assert kind_and_argument("search[red river]", brackets=False) is None  # the trainer reads tags only
    assert parse_action("<search>  a   b </search>").tagged == "<search> a b </search>"
    # the first complete action counts; the prompt's own example never reaches the env
    assert kind_and_argument("<search>a</search> then <answer>b</answer>") == ("search", "a")
    assert parse_action("<search>unterminated") is None
    assert parse_action("I think it is Paris") is None


def test_retrieve_request_validation():
    pytest.importorskip("flask", reason="the retrieval server needs flask (pip install 'sdar[searchqa]')")
    from sdar_envs.searchqa.server import parse_request

    assert parse_request({"queries": ["a", "b"], "topk": 5, "return_scores": True}, 3) == (["a", "b"], 5, True)
    assert parse_request({"query": "a"}, 3) == (["a"], 3, False)
    assert parse_request({"queries": [], "topk": None}, 3) == ([], 3, False)
    for body, why in [
        ([1], "JSON object"), ({}, "needs 'queries'"), ({"queries": "a"}, "list of strings"),
        ({"query": 3}, "'query' must be a string"), ({"query": "a", "queries": ["b"]}, "not both"),
        ({"query": "a", "topk": 0}, "'topk'"), ({"query": "a", "topk": True}, "'topk'"),
        ({"query": "a", "return_scores": "yes"}, "return_scores"), ({"queries": ["a"] * 600}, "at most"),
        ({"query": "x" * 3000}, "longer than"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_request(body, 3)


def test_generated_set_is_deterministic_and_shaped():
    from sdar_envs.searchqa.generator import KINDS, generate, split_questions

    a, b = generate(), generate()
    assert a.passages == b.passages and a.questions == b.questions
    assert 3000 <= len(a.passages) <= 5000
    assert {q["data_source"] for q in a.questions} == set(KINDS)
    assert all(p["contents"].startswith('"') and "\n" in p["contents"] for p in a.passages)
    splits = {s: {q["id"] for q in split_questions(a.questions, s)} for s in ("train", "valid", "test")}
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    assert not (train & test or train & valid or valid & test)
    assert sum(map(len, splits.values())) == len(a.questions)
    multi = [q for q in a.questions if q["data_source"] == "multi_hop"]
    assert all(len(q["hops"]) == 2 for q in multi)


@pytest.mark.parametrize("row, answers", [
    ({"question": "q?", "golden_answers": ["A", "B"]}, ("A", "B")),  # FlashRAG, Search-R1
    ({"question": "q?", "answer": "Paris"}, ("Paris",)),  # R1-Searcher, Reflexion
    ({"question": "q?", "answer": ["x", "y"]}, ("x", "y")),
    ({"question": "q?", "answers": ["z"]}, ("z",)),
    ({"question": "q?", "reward_model": {"ground_truth": {"target": ["t"]}}}, ("t",)),
])
def test_answer_fields_in_use_are_read(tmp_path, row, answers):
    from sdar_envs.searchqa.data import load_questions

    path = tmp_path / "hotpotqa_500.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert load_questions(path)[0].golden_answers == answers


def test_no_answer_field_names_the_fields_looked_for(tmp_path):
    from sdar_envs.searchqa.data import QAFormatError, load_questions

    path = tmp_path / "qs.jsonl"
    path.write_text(json.dumps({"question": "q?", "label": "x"}) + "\n")
    with pytest.raises(QAFormatError, match=r"qs.jsonl, line 1: no golden answers; looked for \['golden_answers', "
                                            r"'answers', 'answer', 'reward_model.ground_truth.target'\]"):
        load_questions(path)


@pytest.mark.parametrize("relative, source", [
    ("hotpotqa_500.jsonl", "hotpotqa"), ("2wiki_500.jsonl", "2wikimultihopqa"), ("bamboogle.jsonl", "bamboogle"),
    ("nq_search/test.jsonl", "nq"), ("musique/dev.jsonl", "musique"), ("data/test.jsonl", "unknown"),
    ("test/valid.jsonl", "unknown"), ("r1_searcher/test.jsonl", "unknown"), ("tmpvmwu7yx4/x.jsonl", "unknown"),
    ("bamboogle.jsonl/test.jsonl", "bamboogle"), ("flashrag/hotpot_qa_dev.jsonl", "hotpotqa"),
    ("flashrag/test.jsonl", "unknown"), ("natural_questions/dev.jsonl", "nq"), ("TriviaQA-dev.jsonl", "triviaqa"),
    ("2WikiMultihopQA/dev.jsonl", "2wikimultihopqa"), ("trivial_pursuit.jsonl", "unknown"),
])
def test_data_source_from_the_row_then_the_file_or_folder_name(tmp_path, relative, source):
    from sdar_envs.searchqa.data import load_questions

    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n"
                    + json.dumps({"question": "q2?", "answer": "b", "data_source": "PopQA"}) + "\n")
    first, second = load_questions(path)
    assert first.data_source == source and second.data_source == "popqa"


@pytest.mark.parametrize("source, kind", [("2wiki", "multi_hop"), ("hotpot", "multi_hop"), ("musique", "multi_hop"),
                                          ("bamboogle", "multi_hop"), ("popqa", "entity_attribute"),
                                          ("triviaqa", "single_hop"), ("nq", "single_hop")])
def test_the_searchqa_bank_knows_the_data_sources(source, kind):
    from skillbank import SkillBank

    assert SkillBank.load("searchqa").retrieve(source).task_type == kind


def test_explicit_data_source_names_rows_that_name_none_and_a_missing_one_is_said_once(tmp_path, caplog):
    import logging

    from sdar_envs.searchqa.data import load_questions

    path = tmp_path / "r1_searcher" / "test.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n"
                    + json.dumps({"question": "q2?", "answer": "b", "dataset": "hotpot_qa"}) + "\n"
                    + json.dumps({"question": "q3?", "answer": "c", "data_source": "my_set"}) + "\n")
    assert [q.data_source for q in load_questions(path, data_source="Bamboogle")] == [
        "bamboogle", "hotpotqa", "my_set"]  # the row's own first, as the row writes it when not a known set
    with caplog.at_level(logging.WARNING, logger="sdar_envs.searchqa.data"):
        questions = load_questions(path)
    assert [q.data_source for q in questions] == ["unknown", "hotpotqa", "my_set"]
    assert len(caplog.records) == 1 and "1 of 3 questions name no known data set" in caplog.text
    assert "data_source=NAME" in caplog.text


def test_questions_without_an_id_are_named_by_file_and_line_not_by_absolute_path(tmp_path):
    from sdar_envs.searchqa.data import load_questions

    path = tmp_path / "nq.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n"
                    + json.dumps({"id": "own-7", "question": "q2?", "answer": "b"}) + "\n")
    assert [q.qid for q in load_questions(path)] == ["nq.jsonl, line 1", "own-7"]


def test_a_question_file_is_every_split_so_training_refuses_to_validate_on_it(tmp_path):
    pytest.importorskip("torch", reason="the trainer's checks need torch")
    from sdar_agent.config import ConfigError, load_config
    from sdar_agent.preflight import check_held_out

    path = tmp_path / "nq.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n")
    with pytest.raises(ConfigError, match=r"env.kwargs: questions=.*nq.jsonl is one file, played whatever the "
                                          r"split: give a data_dir= folder .* or set val_every=0"):
        check_held_out(load_config("demo_searchqa", [f"env.kwargs.questions={path}"]))
    check_held_out(load_config("demo_searchqa", [f"env.kwargs.data_dir={tmp_path}"]))  # a folder of splits: fine
