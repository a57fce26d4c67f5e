"""THOR floor plans and ALFRED's object rules, as shipped in the `alfworld` wheel.

`alfworld/gen/layouts/FloorPlan<N>-openable.json` lists a scene's receptacle instances (THOR ids
with the agent's pose to interact with each); `FloorPlan<N>-objects.json` lists the object and
receptacle classes present. `alfworld/gen/constants.py` says which objects fit in which receptacle
(`VAL_RECEPTACLE_OBJECTS`), which can be cleaned, heated, cooled or toggled (`VAL_ACTION_OBJECTS`),
which receptacles open, which rooms allow which task types (`GOALS_VALID`), and which scenes
ALFRED holds out of training (`TEST_SCENE_NUMBERS`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

#: Classes that appear in object lists but are placed on a surface by us (no rule ships for them).
LAMPS = ("DeskLamp", "FloorLamp")
LAMP_SURFACES = ("Desk", "SideTable", "Dresser", "Shelf", "DiningTable", "CoffeeTable", "TVStand", "Sofa", "ArmChair")
#: Instances to add for receptacle classes that a floor plan lists but its openable file lacks.
EXTRA_RECEPTACLE_COUNTS = {"StoveBurner": 4}
#: THOR names the sink's basin, not the sink, as the receptacle.
BASINS = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}


@functools.lru_cache(maxsize=1)
def constants() -> ModuleType:
    """The `alfworld.gen.constants` module (imported lazily: it pulls in numpy only)."""
    from sdar_envs.alfworld.data import keep_data_setting

    with keep_data_setting():
        import alfworld.gen.constants as module

    return module


def layouts_dir() -> Path:
    """The folder of THOR floor-plan files inside the alfworld wheel."""
    return Path(constants().__file__).parent / "layouts"


@dataclass(frozen=True)
class Receptacle:
    """One receptacle instance of a floor plan."""

    thor_id: str  # e.g. "Cabinet|+00.68|+00.50|-02.20" or "Sink|-01.99|+01.14|-00.98|SinkBasin"
    rtype: str  # e.g. "Cabinet", "SinkBasin"
    pose: tuple[float, float, int, int]  # agent x, z, rotation (deg), camera horizon (deg)


@dataclass(frozen=True)
class Scene:
    """What a floor plan offers the generator."""

    number: int
    room: str  # Kitchen | LivingRoom | Bedroom | Bathroom
    receptacles: tuple[Receptacle, ...]
    object_types: tuple[str, ...]  # pickupable classes present (incl. movable receptacles)
    lamps: tuple[str, ...]

    def receptacle_types(self) -> set[str]:
        return {r.rtype for r in self.receptacles}


def room_of(number: int) -> str:
    """The room type of floor plan `number` (Kitchen, LivingRoom, Bedroom, Bathroom)."""
    for room, numbers in constants().SCENE_TYPE.items():
        if number in numbers:
            return room
    raise ValueError(f"FloorPlan{number} is not an ALFRED scene number.")


def scene_numbers(held_out: bool) -> list[int]:
    """ALFRED's training scenes, or the scenes it holds out (valid_unseen / test)."""
    c = constants()
    numbers = c.TEST_SCENE_NUMBERS if held_out else c.TRAIN_SCENE_NUMBERS
    return sorted(n for n in numbers if (layouts_dir() / f"FloorPlan{n}-openable.json").is_file())


def can_hold(rtype: str, otype: str) -> bool:
    """Whether ALFRED allows objects of class `otype` in receptacles of class `rtype`."""
    return otype in constants().VAL_RECEPTACLE_OBJECTS.get(rtype, ())


def action_classes(kind: str) -> frozenset[str]:
    """Classes for `kind` in Heatable | Coolable | Cleanable | Toggleable | Sliceable."""
    return frozenset(constants().VAL_ACTION_OBJECTS[kind])


@functools.cache
def load_scene(number: int) -> Scene:
    """The receptacles and object classes of floor plan `number` (cached)."""
    c = constants()
    base = layouts_dir() / f"FloorPlan{number}"
    openable = json.loads((base.parent / f"{base.name}-openable.json").read_text())
    classes = json.loads((base.parent / f"{base.name}-objects.json").read_text())

    static = set(c.RECEPTACLES) - set(c.MOVABLE_RECEPTACLES)
    receptacles = []
    for thor_id, (x, z, rot, hor) in sorted(openable.items()):
        cls = thor_id.split("|")[0]
        rtype = BASINS.get(cls, cls)
        if rtype not in static:
            continue
        if cls in BASINS and not thor_id.endswith(rtype):
            thor_id = f"{thor_id}|{rtype}"
        receptacles.append(Receptacle(thor_id, rtype, (float(x), float(z), int(rot), int(hor))))

    present = {r.rtype for r in receptacles}
    for i, cls in enumerate(sorted(set(classes))):
        rtype = BASINS.get(cls, cls)
        if rtype in static and rtype not in present and rtype in c.VAL_RECEPTACLE_OBJECTS:
            for k in range(EXTRA_RECEPTACLE_COUNTS.get(rtype, 1)):
                # No pose ships for these: place them on a ring around the room's centre.
                x, z = round(-2.0 + 0.25 * i, 2), round(1.0 + 0.5 * k, 2)
                suffix = f"|{rtype}" if cls in BASINS else ""
                receptacles.append(Receptacle(f"{cls}|{x:+06.2f}|+00.90|{z:+06.2f}{suffix}", rtype, (x, z, 0, 30)))
            present.add(rtype)

    placeable = set().union(*c.VAL_RECEPTACLE_OBJECTS.values())
    objects = sorted(o for o in set(classes) if o in placeable and o in c.OBJECTS and "Sliced" not in o)
    lamps = tuple(sorted(lamp for lamp in LAMPS if lamp in classes))
    return Scene(number, room_of(number), tuple(receptacles), tuple(objects), lamps)
