"""Offline ALFWorld games, generated from the THOR floor plans and rules in the alfworld wheel.

A game is built the way ALFWorld's own are: a room from a real floor plan (its receptacle instances
and THOR ids), objects of the classes that room holds placed where ALFRED's rules allow them, a
goal from alfworld's goal library (`alfworld/gen/goal_library.py`: the PDDL goal and the task
templates), and alfworld's PDDL domain and grammar. Games are written in the `json_2.1.1` layout
(see `sdar_envs.alfworld.data`) so one loader reads ALFWorld's release and these alike.

Every game is played to a win by the oracle expert on the real engine before it is kept; the
winning commands are stored as the game's `walkthrough`. Splits follow ALFWorld: `train` and
`valid_seen` use ALFRED's training scenes, `valid_unseen` only the scenes ALFRED holds out.

Everything is a function of the seed: the same seed and settings give byte-identical files.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sdar_envs.alfworld import scenes
from sdar_envs.alfworld.data import GAME_FILE, SPLITS, TASK_TYPES, TRAJ_FILE, keep_data_setting
from sdar_envs.alfworld.engine import AlfredEngine
from sdar_envs.alfworld.expert import ExpertError, World, next_action

GENERATOR_VERSION = 1
APPLIANCE = {  # task type -> (appliance receptacle class, object rule in VAL_ACTION_OBJECTS)
    "pick_clean_then_place_in_recep": ("SinkBasin", "Cleanable"),
    "pick_heat_then_place_in_recep": ("Microwave", "Heatable"),
    "pick_cool_then_place_in_recep": ("Fridge", "Coolable"),
}
OBJECT_FLAGS = {"Cleanable": "cleanable", "Heatable": "heatable", "Coolable": "coolable", "Sliceable": "sliceable"}
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Difficulty:
    """Knobs that size a game. Smaller rooms and fewer objects make games easier to learn."""

    max_receptacles: int = 10
    """Receptacles kept from the floor plan (those the task needs are always kept)."""
    distractors: int = 8
    """Objects placed besides the task's own (and the lamp)."""
    max_targets: int = 2
    """Instances of the target object class (at least 2 for pick_two_obj_and_place)."""
    expert_max_steps: int = 60
    """A game the expert cannot win in this many steps is rejected."""

    def __post_init__(self) -> None:
        for name, low in (("max_receptacles", 2), ("distractors", 0), ("max_targets", 1), ("expert_max_steps", 5)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Difficulty.{name}={value!r}: expected an int >= {low}.")


@dataclass(frozen=True)
class TaskSpec:
    """What a game asks, in ALFRED's terms (class names as in THOR: "Apple", "SinkBasin")."""

    task_type: str
    scene: int
    object_target: str
    parent_target: str = ""  # empty for look_at_obj_in_light
    toggle_target: str = ""  # only for look_at_obj_in_light

    @property
    def folder(self) -> str:
        return f"{self.task_type}-{self.object_target}-None-{self.parent_target or self.toggle_target}-{self.scene}"

    def pddl_params(self) -> dict[str, Any]:
        return {
            "object_target": self.object_target,
            "parent_target": self.parent_target,
            "mrecep_target": "",
            "toggle_target": self.toggle_target,
            "object_sliced": False,
        }


@dataclass
class Game:
    """A laid-out game before it is written and verified."""

    spec: TaskSpec
    trial: str
    task_desc: str
    problem: str

    def traj_data(self, seed: int, difficulty: Difficulty) -> dict[str, Any]:
        return {
            "task_type": self.spec.task_type,
            "task_id": self.trial,
            "scene": {"floor_plan": f"FloorPlan{self.spec.scene}", "scene_num": self.spec.scene},
            "pddl_params": self.spec.pddl_params(),
            "turk_annotations": {"anns": [{"task_desc": self.task_desc, "high_descs": [], "votes": []}]},
            "generator": {"name": "sdar", "version": GENERATOR_VERSION, "seed": seed, "difficulty": asdict(difficulty)},
        }


# --------------------------------------------------------------------------- task choice
def feasible_specs(scene: scenes.Scene, task_type: str) -> list[TaskSpec]:
    """Every task of `task_type` that the scene's classes and ALFRED's rules allow."""
    c = scenes.constants()
    if scene.room not in c.GOALS_VALID[task_type]:
        return []
    rtypes = sorted(scene.receptacle_types())
    if task_type == "look_at_obj_in_light":
        if not any(r in scenes.LAMP_SURFACES for r in rtypes):
            return []
        return [
            TaskSpec(task_type, scene.number, obj, toggle_target=lamp)
            for lamp in scene.lamps
            for obj in scene.object_types
            if any(scenes.can_hold(r, obj) for r in rtypes)
        ]
    objects, excluded = list(scene.object_types), set()
    if task_type in APPLIANCE:
        appliance, rule = APPLIANCE[task_type]
        if appliance not in rtypes:
            return []
        objects = [o for o in objects if o in scenes.action_classes(rule)]
        excluded = {appliance}
    return [
        TaskSpec(task_type, scene.number, obj, parent_target=parent)
        for obj in objects
        for parent in rtypes
        if parent not in excluded
        and scenes.can_hold(parent, obj)
        and any(scenes.can_hold(r, obj) for r in rtypes if r != parent)  # somewhere else to start
    ]


# --------------------------------------------------------------------------- building a game
def build_game(spec: TaskSpec, trial: str, rng: random.Random, difficulty: Difficulty) -> Game:
    """Lay out the room for `spec` and write its PDDL problem."""
    scene = scenes.load_scene(spec.scene)
    kept = _choose_receptacles(scene, spec, rng, difficulty)
    placements = _place_objects(scene, spec, kept, rng, difficulty)
    problem = _problem_text(kept, placements, spec)
    template = rng.choice(_goal_entry(spec.task_type)["templates"])
    task_desc = template.format(
        obj=spec.object_target.lower(), recep=spec.parent_target.lower(), toggle=spec.toggle_target.lower(), mrecep=""
    )
    return Game(spec, trial, task_desc, problem)


def _choose_receptacles(
    scene: scenes.Scene, spec: TaskSpec, rng: random.Random, difficulty: Difficulty
) -> list[scenes.Receptacle]:
    pool = list(scene.receptacles)
    rng.shuffle(pool)
    obj = spec.object_target
    required = []
    if spec.parent_target:
        required.append(next(r for r in pool if r.rtype == spec.parent_target))
        start_ok = [r for r in pool if r.rtype != spec.parent_target and scenes.can_hold(r.rtype, obj)]
    else:
        required.append(next(r for r in pool if r.rtype in scenes.LAMP_SURFACES))
        start_ok = [r for r in pool if scenes.can_hold(r.rtype, obj)]
    required.append(start_ok[0])
    if spec.task_type in APPLIANCE:
        required.append(next(r for r in pool if r.rtype == APPLIANCE[spec.task_type][0]))
    kept = list(dict.fromkeys(required))
    for r in pool:
        if len(kept) >= max(difficulty.max_receptacles, len(required)):
            break
        if r not in kept:
            kept.append(r)
    return sorted(kept, key=lambda r: r.thor_id)


def _place_objects(
    scene: scenes.Scene,
    spec: TaskSpec,
    kept: list[scenes.Receptacle],
    rng: random.Random,
    difficulty: Difficulty,
) -> list[tuple[str, scenes.Receptacle]]:
    """(object class, receptacle) pairs: targets first, then the lamp, then distractors."""
    obj = spec.object_target
    low = 2 if spec.task_type == "pick_two_obj_and_place" else 1
    homes = [r for r in kept if r.rtype != spec.parent_target and scenes.can_hold(r.rtype, obj)]
    placements = [(obj, rng.choice(homes)) for _ in range(rng.randint(low, max(low, difficulty.max_targets)))]
    if spec.toggle_target:
        surfaces = [r for r in kept if r.rtype in scenes.LAMP_SURFACES]
        placements.append((spec.toggle_target, rng.choice(surfaces)))
    others = [o for o in scene.object_types if o != obj]
    for _ in range(difficulty.distractors if others else 0):
        cls = rng.choice(others)
        spots = [r for r in kept if scenes.can_hold(r.rtype, cls)]
        if spots:
            placements.append((cls, rng.choice(spots)))
    return placements


def mangle(thor_id: str) -> str:
    """A THOR id as a PDDL name, the way ALFWorld writes them ("Apple|+00.47|..." -> "Apple_bar__plus_00_dot_47...")."""
    for old, new in (("|", "_bar_"), ("-", "_minus_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_")):
        thor_id = thor_id.replace(old, new)
    return thor_id


def _location(pose: tuple[float, float, int, int], used: set[str]) -> str:
    x, z, rot, hor = round(pose[0] / 0.25), round(pose[1] / 0.25), pose[2] // 90, pose[3]
    name = mangle(f"loc|{x}|{z}|{rot}|{hor}")
    while name in used:  # two receptacles seen from one pose: give each its own spot
        hor += 1
        name = mangle(f"loc|{x}|{z}|{rot}|{hor}")
    used.add(name)
    return name


def _problem_text(
    kept: list[scenes.Receptacle], placements: list[tuple[str, scenes.Receptacle]], spec: TaskSpec
) -> str:
    c = scenes.constants()
    used_locs: set[str] = set()
    start = _location((0.0, 0.0, 0, 30), used_locs)
    rec_names = {r: mangle(r.thor_id) for r in kept}
    rec_locs = {r: _location(r.pose, used_locs) for r in kept}

    objects: list[tuple[str, str, scenes.Receptacle]] = []  # (pddl name, class, receptacle)
    seen: set[str] = set()
    for cls, rec in placements:
        x, z = rec.pose[0], rec.pose[1]
        k = 0
        while True:
            name = mangle(f"{cls}|{x + 0.07 * k:+06.2f}|{0.9 + 0.01 * len(seen):+06.2f}|{z - 0.05 * k:+06.2f}")
            if name not in seen:
                break
            k += 1
        seen.add(name)
        objects.append((name, cls, rec))

    rtypes = sorted(set(c.RECEPTACLES) - set(c.MOVABLE_RECEPTACLES))
    otypes = sorted((set(c.OBJECTS) | set(scenes.LAMPS)) - set(rtypes))
    decl = ["agent1 - agent"]
    decl += [f"{t}Type - otype" for t in otypes if "Sliced" not in t]
    decl += [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{name} - object" for name, _, _ in objects]
    decl += [f"{rec_names[r]} - receptacle" for r in kept]
    decl += [f"{loc} - location" for loc in [start, *rec_locs.values()]]

    init = [f"(atLocation agent1 {start})"]
    for r in kept:
        init.append(f"(receptacleType {rec_names[r]} {r.rtype}Type)")
        init.append(f"(receptacleAtLocation {rec_names[r]} {rec_locs[r]})")
        if r.rtype in c.OPENABLE_CLASS_SET:
            init.append(f"(openable {rec_names[r]})")
    flags = {rule: scenes.action_classes(rule) for rule in OBJECT_FLAGS}
    for name, cls, rec in objects:
        init += [
            f"(objectType {name} {cls}Type)",
            f"(objectAtLocation {name} {rec_locs[rec]})",
            f"(inReceptacle {name} {rec_names[rec]})",
        ]
        if cls in scenes.LAMPS:
            init.append(f"(toggleable {name})")
            continue
        init.append(f"(pickupable {name})")
        if cls in c.MOVABLE_RECEPTACLES:
            init.append(f"(isReceptacleObject {name})")
        init += [f"({pred} {name})" for rule, pred in OBJECT_FLAGS.items() if cls in flags[rule]]
    object_classes = sorted({cls for _, cls, _ in objects})
    init += [
        f"(canContain {rt}Type {ot}Type)"
        for rt in sorted({r.rtype for r in kept})
        for ot in object_classes
        if scenes.can_hold(rt, ot)
    ]

    goal = _goal_entry(spec.task_type)["pddl"].format(
        obj=spec.object_target, recep=spec.parent_target, toggle=spec.toggle_target, mrecep=""
    )
    goal = goal.replace("#", "-").strip()
    indent = "\n        "
    return (
        f"(define (problem plan_{spec.folder.replace('-', '_').lower()})\n"
        "    (:domain alfred)\n"
        f"    (:objects{indent}{indent.join(decl)}\n    )\n"
        f"    (:init{indent}{indent.join(init)}\n    )\n"
        f"    {goal}\n"
    )


def _goal_entry(task_type: str) -> dict[str, Any]:
    with keep_data_setting():
        import alfworld.gen.goal_library as goal_library

    return goal_library.gdict[task_type]


# --------------------------------------------------------------------------- verification
def solve(engine: AlfredEngine, game_file: Path, task_type: str, params: dict[str, Any], max_steps: int) -> list[str]:
    """Play `game_file` with the oracle expert; return the winning commands or raise ExpertError."""
    engine.load(game_file)
    state = engine.reset()
    commands: list[str] = []
    while not state.won:
        if len(commands) >= max_steps:
            raise ExpertError(f"not won after {max_steps} steps")
        command = next_action(World.from_state(state.raw), task_type, params)
        if command not in state.admissible_commands:
            raise ExpertError(f"expert command {command!r} is not admissible")
        commands.append(command)
        state = engine.step(command)
    return commands


def _engine_files() -> tuple[str, str]:
    with keep_data_setting():
        import alfworld

    data = Path(alfworld.__file__).parent / "data"
    return (data / "alfred.pddl").read_text(), (data / "alfred.twl2").read_text()


def write_game(game: Game, split_dir: Path, seed: int, difficulty: Difficulty, engine: AlfredEngine) -> Path | None:
    """Write a game, verify it with the expert, and keep it only if won. Returns its folder or None."""
    domain, grammar = _engine_files()
    folder = split_dir / game.spec.folder / game.trial
    folder.mkdir(parents=True, exist_ok=True)
    game_file, traj_file = folder / GAME_FILE, folder / TRAJ_FILE
    traj = game.traj_data(seed, difficulty)
    payload = {
        "pddl_domain": domain,
        "grammar": grammar.replace("UNKNOWN GOAL", game.task_desc),
        "pddl_problem": game.problem,
        "solvable": False,
    }
    game_file.write_text(json.dumps(payload))
    traj_file.write_text(json.dumps(traj, indent=2))
    try:
        walkthrough = solve(engine, game_file, game.spec.task_type, traj["pddl_params"], difficulty.expert_max_steps)
    except ExpertError:
        game_file.unlink()
        traj_file.unlink()
        folder.rmdir()
        if not any(folder.parent.iterdir()):
            folder.parent.rmdir()
        return None
    payload.update(solvable=True, walkthrough=walkthrough)
    game_file.write_text(json.dumps(payload))
    return folder


# --------------------------------------------------------------------------- whole sets
def plan_split(split: str, count: int, seed: int) -> list[tuple[str, int]]:
    """(task type, trial number) for `count` games, the six types in turn."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}.")
    return [(TASK_TYPES[i % len(TASK_TYPES)], i) for i in range(count)]


def generate_one(
    split_dir: Path, split: str, task_type: str, index: int, seed: int, difficulty: Difficulty, engine: AlfredEngine
) -> Path:
    """Generate game number `index` of a split; deterministic in (seed, split, index)."""
    held_out = split == "valid_unseen"
    for attempt in range(MAX_ATTEMPTS):
        rng = random.Random(f"sdar-alfworld/{GENERATOR_VERSION}/{seed}/{split}/{index}/{attempt}")
        numbers = scenes.scene_numbers(held_out)
        rng.shuffle(numbers)
        specs = next((s for n in numbers if (s := feasible_specs(scenes.load_scene(n), task_type))), None)
        if specs is None:
            break
        spec = rng.choice(specs)
        if split == "valid_seen":  # seen scenes, unseen games: a different trial namespace
            trial = f"trial_S{seed:05d}_{index:06d}"
        else:
            trial = f"trial_G{seed:05d}_{index:06d}"
        folder = write_game(build_game(spec, trial, rng, difficulty), split_dir, seed, difficulty, engine)
        if folder is not None:
            return folder
    raise RuntimeError(f"could not generate a solvable {task_type} game for split {split!r} (index {index}).")
