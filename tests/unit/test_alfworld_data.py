"""The json_2.1.1 loader: discovery, skipping rules, and errors that name the bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdar_envs.alfworld.data import GameDataError, discover_games, read_game, resolve_root

GAME = {"pddl_domain": "(define (domain alfred))", "grammar": "grammar", "pddl_problem": "(define)", "solvable": True}


def make_trial(root: Path, split: str, folder: str, task_type: str = "pick_and_place_simple", game=GAME) -> Path:
    trial = root / "json_2.1.1" / split / folder / "trial_T20190907_000000_000001"
    trial.mkdir(parents=True)
    traj = {
        "task_type": task_type,
        "task_id": trial.name,
        "pddl_params": {"object_target": "Apple", "parent_target": "Fridge", "toggle_target": "",
                        "mrecep_target": "", "object_sliced": False},
        "turk_annotations": {"anns": [{"task_desc": "put an apple in the fridge."}]},
    }
    (trial / "traj_data.json").write_text(json.dumps(traj))
    if game is not None:
        (trial / "game.tw-pddl").write_text(game if isinstance(game, str) else json.dumps(game))
    return trial


def test_discovers_games_sorted_with_stable_ids(tmp_path):
    make_trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-10")
    make_trial(tmp_path, "train", "look_at_obj_in_light-Book-None-DeskLamp-301", "look_at_obj_in_light")
    games = discover_games(resolve_root(tmp_path), "train")
    assert [g.task_id for g in games] == [
        "look_at_obj_in_light-Book-None-DeskLamp-301/trial_T20190907_000000_000001",
        "pick_and_place_simple-Apple-None-Fridge-10/trial_T20190907_000000_000001",
    ]
    assert games[1].params["parent_target"] == "Fridge"
    only = discover_games(resolve_root(tmp_path), "train", ("look_at_obj_in_light",))
    assert [g.task_type for g in only] == ["look_at_obj_in_light"]


def test_skips_movable_sliced_and_unsolvable_like_alfworld(tmp_path):
    make_trial(tmp_path, "train", "pick_and_place_with_movable_recep-Apple-Bowl-Fridge-10")
    make_trial(tmp_path, "train", "pick_heat_then_place_in_recep-AppleSliced-None-Fridge-10")
    make_trial(tmp_path, "train", "pick_and_place_simple-Egg-None-Fridge-10", game=dict(GAME, solvable=False))
    keep = make_trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-10")
    assert [g.game_file.parent for g in discover_games(tmp_path / "json_2.1.1", "train")] == [keep]


def test_root_may_be_the_json_folder_or_its_parent_or_the_env_var(tmp_path, monkeypatch):
    make_trial(tmp_path, "valid_seen", "pick_and_place_simple-Apple-None-Fridge-10")
    assert resolve_root(tmp_path) == resolve_root(tmp_path / "json_2.1.1") == tmp_path / "json_2.1.1"
    assert resolve_root(None) is None
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    assert resolve_root(None) == tmp_path / "json_2.1.1"


def test_a_folder_without_games_is_reported(tmp_path):
    with pytest.raises(GameDataError, match="holds no ALFWorld games.*generate"):
        resolve_root(tmp_path)
    make_trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-10")
    with pytest.raises(GameDataError, match="no 'valid_unseen' split"):
        discover_games(tmp_path / "json_2.1.1", "valid_unseen")
    with pytest.raises(ValueError, match="unknown ALFWorld split 'test'"):
        discover_games(tmp_path / "json_2.1.1", "test")
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        discover_games(tmp_path / "json_2.1.1", "train", ("pick_and_fly",))


@pytest.mark.parametrize(
    "game, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object .* found a list"),
        ({"pddl_domain": "x", "grammar": "y"}, r"missing or empty key\(s\) \['pddl_problem'\]"),
        (None, "has traj_data.json but no game.tw-pddl"),
    ],
)
def test_corrupt_or_missing_game_files_name_the_file(tmp_path, game, message):
    trial = make_trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-10", game=game)
    with pytest.raises(GameDataError, match=message) as err:
        discover_games(tmp_path / "json_2.1.1", "train")
    assert str(trial) in str(err.value)


def test_bad_traj_data_names_the_file(tmp_path):
    trial = make_trial(tmp_path, "train", "pick_and_place_simple-Apple-None-Fridge-10")
    (trial / "traj_data.json").write_text(json.dumps({"task_type": "juggle", "pddl_params": {}}))
    with pytest.raises(GameDataError, match=r"traj_data.json: task_type is 'juggle'"):
        discover_games(tmp_path / "json_2.1.1", "train")


def test_read_game_reports_missing_file(tmp_path):
    with pytest.raises(GameDataError, match="does not exist"):
        read_game(tmp_path / "game.tw-pddl")
