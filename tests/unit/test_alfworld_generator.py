"""The offline generator's pure parts: scenes, task choice, layouts and PDDL problems."""

from __future__ import annotations

import random
import re

import pytest

pytest.importorskip("alfworld", reason="the generator reads alfworld's layouts (pip install 'sdar[alfworld]')")

from sdar_envs.alfworld import scenes  # noqa: E402
from sdar_envs.alfworld.data import TASK_TYPES  # noqa: E402
from sdar_envs.alfworld.generator import Difficulty, build_game, feasible_specs, mangle  # noqa: E402


def test_mangle_matches_alfworld_naming():
    assert mangle("Apple|+00.47|-01.05|+02.10") == "Apple_bar__plus_00_dot_47_bar__minus_01_dot_05_bar__plus_02_dot_10"
    assert mangle("Sink|-01.99|+01.14|-00.98|SinkBasin").endswith("_bar_SinkBasin")


def test_scene_from_floor_plan():
    kitchen = scenes.load_scene(1)
    assert kitchen.room == "Kitchen"
    types = kitchen.receptacle_types()
    assert {"Cabinet", "Fridge", "Microwave", "SinkBasin", "StoveBurner"} <= types
    assert sum(r.rtype == "Cabinet" for r in kitchen.receptacles) == 8  # as FloorPlan1 has
    assert "Apple" in kitchen.object_types and "Fridge" not in kitchen.object_types
    assert scenes.load_scene(301).lamps == ("DeskLamp",)


def test_held_out_scenes_are_disjoint_from_training_scenes():
    train, held_out = set(scenes.scene_numbers(False)), set(scenes.scene_numbers(True))
    assert train and held_out and not train & held_out
    assert {1, 201, 301, 401} <= held_out


def test_task_choice_follows_alfred_rules():
    kitchen, bedroom = scenes.load_scene(7), scenes.load_scene(301)
    heat = feasible_specs(kitchen, "pick_heat_then_place_in_recep")
    assert heat and all(s.object_target in scenes.action_classes("Heatable") for s in heat)
    assert all(s.parent_target != "Microwave" for s in heat)
    assert feasible_specs(bedroom, "pick_heat_then_place_in_recep") == []  # no kitchen, no heating
    assert feasible_specs(kitchen, "look_at_obj_in_light") == []  # ALFRED looks only in bed/living rooms
    look = feasible_specs(bedroom, "look_at_obj_in_light")
    assert look and {s.toggle_target for s in look} == {"DeskLamp"}
    for spec in feasible_specs(kitchen, "pick_and_place_simple"):
        assert scenes.can_hold(spec.parent_target, spec.object_target)


def _facts(problem: str, predicate: str) -> list[list[str]]:
    init = problem[problem.index("(:init") : problem.index("(:goal")]
    return [m.split() for m in re.findall(rf"\({predicate} ([^()]*)\)", init)]


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_layout_is_deterministic_and_well_formed(task_type):
    room = 301 if task_type == "look_at_obj_in_light" else 7
    spec = feasible_specs(scenes.load_scene(room), task_type)[0]
    difficulty = Difficulty(max_receptacles=6, distractors=5, max_targets=3)
    game = build_game(spec, "trial_x", random.Random(3), difficulty)
    assert game.problem == build_game(spec, "trial_x", random.Random(3), difficulty).problem
    assert game.problem != build_game(spec, "trial_x", random.Random(4), difficulty).problem

    for constant in ("SinkBasinType", "MicrowaveType", "FridgeType", "KnifeType", "ButterKnifeType"):
        assert f"{constant} - " in game.problem
    receptacles = {name: kind for name, kind in _facts(game.problem, "receptacleType")}
    assert 3 <= len(receptacles) <= 6
    target = f"{spec.object_target}Type"
    targets = [name for name, kind in _facts(game.problem, "objectType") if kind == target]
    assert len(targets) >= (2 if task_type == "pick_two_obj_and_place" else 1)
    homes = dict(_facts(game.problem, "inReceptacle"))
    if spec.parent_target:  # never solved at the start
        assert all(receptacles[homes[t]] != f"{spec.parent_target}Type" for t in targets)
    assert "{" not in game.task_desc and spec.object_target.lower() in game.task_desc


def test_difficulty_validates_its_knobs():
    with pytest.raises(ValueError, match="max_receptacles=1: expected an int >= 2"):
        Difficulty(max_receptacles=1)
    with pytest.raises(ValueError, match="distractors=-1"):
        Difficulty(distractors=-1)
