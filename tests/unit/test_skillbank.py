"""skillbank: the format's validation, the importers, rendering and the four strategies."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest

from skillbank import SkillBank, SkillBankError, bundled_banks
from skillbank.retrieval import render
from skillbank.schema import Skill


def skill(i, prefix="s"):
    return {"id": f"{prefix}{i}", "title": f"Title {prefix}{i}", "principle": f"Do {prefix}{i}.", "when": "Always."}


BANK = {
    "format": "sdar-skillbank",
    "version": 1,
    "name": "toy",
    "general": [skill(1, "g"), skill(2, "g")],
    "task_types": {
        "heat": {"keywords": ["hot", "heat"], "skills": [skill(1, "h"), skill(2, "h"), skill(3, "h")]},
        "place": {"keywords": ["put"], "skills": [skill(1, "p")]},
    },
    "mistakes": [skill(1, "m")],
    "aliases": {"pick_heat_then_place_in_recep": "heat"},
}


def bank_with(**changes):
    data = copy.deepcopy(BANK)
    data.update(changes)
    return data


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["general"][0].pop("principle"), "general[0]: missing field 'principle'"),
        (lambda d: d["general"].append(skill(1, "h")),
         "task_types['heat'].skills[0]: duplicate id 'h1' (first used at general[2])"),
        (lambda d: d["general"][1].update(title=3), "general[1].title: expected a non-empty string, found 3"),
        (lambda d: d["task_types"]["heat"].update(skills="h1"),
         "task_types['heat'].skills: expected a list of skills, found str"),
        (lambda d: d["mistakes"][0].update(extra="x"), "mistakes[0]: unknown field(s) ['extra']"),
        (lambda d: d.update(version=2), "key 'version': expected 1, found 2"),
        (lambda d: d["aliases"].update(cook="bake"), "aliases['cook']: 'bake' is not a key of 'task_types'"),
        (lambda d: d["task_types"]["place"].update(keywords=[""]), "task_types['place'].keywords: expected a list"),
    ],
)
def test_validation_names_each_problem_and_its_location(mutate, message, tmp_path):
    data = bank_with()
    mutate(data)
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SkillBankError) as err:
        SkillBank.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_every_problem_is_reported_at_once():
    data = bank_with(name="")
    data["general"][0].pop("id")
    data["mistakes"][0]["when"] = ""
    with pytest.raises(SkillBankError) as err:
        SkillBank.from_dict(data)
    assert len(err.value.problems) == 3


def test_corrupt_file_and_missing_bank(tmp_path):
    path = tmp_path / "bank.json"
    path.write_text("{oops")
    with pytest.raises(SkillBankError, match="not valid JSON"):
        SkillBank.load(path)
    with pytest.raises(FileNotFoundError, match="bundled banks"):
        SkillBank.load("no-such-bank")


def test_round_trip_and_bundled_banks(tmp_path):
    bank = SkillBank.from_dict(bank_with())
    bank.save(tmp_path / "b.json")
    assert SkillBank.load(tmp_path / "b.json").spec == bank.spec
    assert "alfworld" in bundled_banks()
    alf = SkillBank.load("alfworld")
    assert set(alf.spec.task_types) == {
        "pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
        "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place",
    }
    assert alf.spec.general and alf.spec.mistakes


# ------------------------------------------------------------------ importers
SKILLRL = {
    "general_skills": [{"skill_id": "gen_001", "title": "Explore", "principle": "Look everywhere once.",
                        "when_to_apply": "When searching."}],
    "task_specific_skills": {
        "heat": [{"skill_id": "heat_001", "title": "Microwave", "principle": "Heat with it.", "when_to_apply": "Hot."}],
        "clean": [{"skill_id": "clean_001", "title": "Sink", "principle": "Clean at the sink."}],
    },
    "common_mistakes": [{"mistake_id": "err_001", "description": "Repeating actions.",
                         "why_it_happens": "No memory.", "how_to_avoid": "Try another action."}],
}


def test_imports_skillrl_json_with_alfworld_aliases(tmp_path):
    path = tmp_path / "claude_style_skills.json"
    path.write_text(json.dumps(SKILLRL))
    bank = SkillBank.load(path)
    assert [s.id for s in bank.spec.all_skills()] == ["gen_001", "heat_001", "clean_001", "err_001"]
    assert bank.spec.mistakes[0] == Skill("err_001", "Repeating actions.", "Try another action.", "No memory.")
    got = bank.retrieve("pick_heat_then_place_in_recep")
    assert got.task_type == "heat" and got.ids == ("gen_001", "heat_001", "err_001")
    heat_skills = SKILLRL["task_specific_skills"]["heat"]
    search = {"general_skills": [], "query_type_skills": {"multi_hop_reasoning": heat_skills}}
    path.write_text(json.dumps(search))
    assert list(SkillBank.load(path).spec.task_types) == ["multi_hop_reasoning"]


def test_skillrl_import_errors_name_the_entry(tmp_path):
    broken = copy.deepcopy(SKILLRL)
    del broken["common_mistakes"][0]["how_to_avoid"]
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(SkillBankError, match=r"common_mistakes\[0\]: missing 'how_to_avoid'"):
        SkillBank.load(path)


def write_sdar_folder(folder, mapping):
    (folder / "general_skills.md").write_text("### GENERAL SKILLS ###\n\n1. Explore: visit each receptacle once.\n")
    (folder / "heat.md").write_text("### TASK: heat ###\n\n1. Open then heat: open the microwave first.\n")
    (folder / "skill_mapping.json").write_text(json.dumps(mapping))


SDAR_MAPPING = {"skill_files": {"general_skills": "general_skills.md", "heat": "heat.md"},
                "task_to_skill": {"pick_heat_then_place_in_recep": "heat", "heat": "heat"},
                "task_keywords": {"pick_heat_then_place_in_recep": ["heat", "hot"]}}


def test_imports_an_sdar_skill_folder_in_the_reference_layout(tmp_path):
    write_sdar_folder(tmp_path, SDAR_MAPPING)
    bank = SkillBank.load(tmp_path)
    assert bank.spec.layout == "verbatim" and [s.id for s in bank.spec.general] == ["general_skills"]
    heat = bank.spec.task_types["pick_heat_then_place_in_recep"]
    assert heat.keywords == ("heat", "hot") and heat.skills[0].title == "TASK: heat"
    assert bank.spec.task_types["heat"].skills == heat.skills  # one file may serve several task types
    got = bank.retrieve("pick_heat_then_place_in_recep")
    # the reference's teacher text: general_skills.md, a blank line, the task type's file, both verbatim
    assert got.text == (tmp_path / "general_skills.md").read_text().strip() + "\n\n" + (
        tmp_path / "heat.md").read_text().strip()
    assert bank.retrieve(None, task="put a hot mug in the cabinet").task_type == "pick_heat_then_place_in_recep"


@pytest.mark.parametrize("mapping, message", [
    ({"skill_files": ["heat.md"], "task_to_skill": {}}, r"\['skill_files'\]: expected an object of skill name"),
    ({"skill_files": {"heat": "heat.md"}}, r"\['task_to_skill'\]: expected an object of task type -> skill name"),
    ({"skill_files": {"heat": "nope.md"}, "task_to_skill": {}}, r"nope.md does not exist"),
    ({"skill_files": {"heat": "heat.md"}, "task_to_skill": {"x": "cool"}}, r"'cool' is not a key of 'skill_files'"),
    ({"skill_files": {"heat": "heat.md"}, "task_to_skill": {}, "task_keywords": {"x": "hot"}},
     r"\['task_keywords'\]: expected an object of task type -> list of keywords"),
])
def test_malformed_sdar_folders_name_the_key(tmp_path, mapping, message):
    write_sdar_folder(tmp_path, mapping)
    with pytest.raises(SkillBankError, match=message):
        SkillBank.load(tmp_path)


@pytest.mark.parametrize("env, task_type, skill", [
    ("alfworld", "pick_heat_then_place_in_recep", "heat"), ("alfworld", "pick_and_place_simple", "pick_and_place"),
    ("alfworld", "pick_two_obj_and_place", "pick_and_place"), ("search", "nq", "direct_retrieval"),
    ("search", "hotpotqa", "multi_hop_reasoning"), ("search", "popqa", "entity_attribute_lookup"),
    ("search", "comparison", "compare"), ("webshop", "apparel", "apparel"),
])
def test_the_official_sdar_folders_import_and_retrieve_as_the_reference(env, task_type, skill, monkeypatch):
    from tests.conftest import shared_path

    root = shared_path("sdar_skills")
    monkeypatch.setenv("SDAR_SKILLS_DIR", str(root))
    bank = SkillBank.load(f"sdar:{env}")
    got = bank.retrieve(task_type, budget=100_000)
    mapping = json.loads((root / env / "skill_mapping.json").read_text())
    files = [mapping["skill_files"]["general_skills"], mapping["skill_files"][skill]]
    assert got.ids == ("general_skills", skill)
    assert got.text == "\n\n".join((root / env / f).read_text(encoding="utf-8").strip() for f in files)


def test_official_folder_needs_its_location(monkeypatch):
    monkeypatch.delenv("SDAR_SKILLS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="set \\$SDAR_SKILLS_DIR"):
        SkillBank.load("sdar:alfworld")


# ------------------------------------------------------------------ retrieval
def test_keyword_uses_the_explicit_type_first_then_whole_word_rules():
    bank = SkillBank.from_dict(bank_with())
    assert bank.retrieve("heat", task="put it there").task_type == "heat"  # explicit wins over text
    assert bank.retrieve(None, task="put a hot mug in the cabinet").task_type == "heat"  # file order
    assert bank.retrieve(None, task="output that hat").task_type is None  # no 'put' in 'output'/'that'
    assert bank.retrieve("unknown", task="Put it away.").task_type == "place"
    got = bank.retrieve("heat", k=2)
    assert got.ids == ("g1", "g2", "h1", "h2", "m1")
    assert got.text.index("General principles:") < got.text.index("Skills for heat tasks:") < got.text.index(
        "Common mistakes to avoid:")


def test_full_gives_every_skill():
    assert SkillBank.from_dict(bank_with()).retrieve("place", strategy="full").ids == (
        "g1", "g2", "p1", "h1", "h2", "h3", "m1")  # the task's own type right after the general skills


def test_random_is_reproducible_by_seed_and_uniform():
    bank = SkillBank.from_dict(bank_with())
    draw = [bank.retrieve("heat", strategy="random", k=3, rng=np.random.default_rng(s)).ids for s in range(200)]
    again = [bank.retrieve("heat", strategy="random", k=3, rng=np.random.default_rng(s)).ids for s in range(200)]
    assert draw == again and all(len(ids) == 3 for ids in draw)
    counts = {i: sum(i in ids for ids in draw) for i in ("g1", "g2", "h1", "h2", "h3", "p1", "m1")}
    assert all(50 < c < 120 for c in counts.values()), counts  # each about 200 * 3/7 = 86
    assert bank.retrieve("heat", strategy="random", k=2, rng=random.Random(1)).ids == bank.retrieve(
        "heat", strategy="random", k=2, rng=random.Random(1)).ids


def test_ucb_explores_untried_arms_then_prefers_rewarded_ones():
    bank = SkillBank.from_dict(bank_with())
    seen = []
    for _ in range(4):  # 7 arms, 2 per round: all are tried before any repeats
        got = bank.retrieve("heat", strategy="ucb", k=2)
        seen += got.ids
        bank.feedback(got.ids, 1.0 if "h2" in got.ids else 0.0, got.task_type)
    assert set(seen) == {"g1", "g2", "h1", "h2", "h3", "p1", "m1"} and len(seen) == 8
    for _ in range(30):
        got = bank.retrieve("heat", strategy="ucb", k=1)
        bank.feedback(got.ids, 1.0 if got.ids == ("h2",) else 0.0, got.task_type)
    picks = [bank.retrieve("heat", strategy="ucb", k=1).ids for _ in range(1)]
    assert picks == [("h2",)]
    assert bank.bandit.stats["heat"]["h2"][0] > 10  # exploited far more than the others
    assert "place" not in bank.bandit.stats  # one bandit per task type


def test_ucb_state_round_trips_through_a_checkpoint():
    bank = SkillBank.from_dict(bank_with())
    bank.feedback(["h1", "g1"], 1.0, "pick_heat_then_place_in_recep")  # alias -> 'heat'
    state = json.loads(json.dumps(bank.state_dict()))
    fresh = SkillBank.from_dict(bank_with())
    fresh.load_state_dict(state)
    assert fresh.bandit.stats == {"heat": {"h1": [1, 1.0], "g1": [1, 1.0]}}
    assert fresh.retrieve("heat", strategy="ucb", k=3).ids == bank.retrieve("heat", strategy="ucb", k=3).ids
    with pytest.raises(ValueError, match="belongs to skill bank 'alfworld'"):
        fresh.load_state_dict({"bank": "alfworld", "ucb": {}})
    with pytest.raises(ValueError, match="unknown skill id"):
        fresh.feedback(["nope"], 1.0)


def test_budget_is_never_exceeded_and_task_skills_go_first():
    bank = SkillBank.from_dict(bank_with())
    full_text = bank.retrieve("heat").text
    for budget in range(0, len(full_text) + 10, 7):
        got = bank.retrieve("heat", budget=budget)
        assert len(got.text) <= budget
    tight = bank.retrieve("heat", budget=120)
    assert tight.ids and tight.ids[0].startswith("h")
    words = bank.retrieve("heat", budget=25, measure=lambda t: len(t.split()))
    assert 0 < len(words.text.split()) <= 25


def test_render_layout_is_stable():
    sections = [("General principles", [Skill("a", "A", "Do a.", "Now.")]), ("Empty", [])]
    assert render(sections, 1000) == ("General principles:\n- A: Do a. (When: Now.)", ["a"])


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "best"}, "strategy='best'"), ({"k": -1}, "k=-1"), ({"budget": -5}, "budget=-5"),
    ({"strategy": "random", "rng": "seed"}, "rng='seed'"),
])
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        SkillBank.from_dict(bank_with()).retrieve("heat", **kwargs)


def test_docstring_examples_run():
    import doctest

    import skillbank.bank

    assert doctest.testmod(skillbank.bank).failed == 0
