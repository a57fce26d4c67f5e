"""A fast oracle expert for ALFWorld games.

The expert reads the engine's full state (its PDDL facts) and the task's `pddl_params`, and returns
the next command of a shortest-minded plan: fetch a target object (go to its receptacle, open it,
take it), treat it (clean with a sinkbasin, heat with a microwave, cool with a fridge), and put it
in a receptacle of the target type (or, for `look_at_obj_in_light`, carry it to the lamp and use the
lamp). It re-plans from the current state at every step, so it also recovers after other moves.

It is the generator's solvability check (the bundled PDDL planner takes minutes on large games)
and the scripted policy of the demo. Unlike ALFWorld's hand-coded expert it sees everything, so it
never searches: it is an upper bound, not a model of a careful human.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

TREATMENTS = {  # task type -> (verb, appliance type, state predicate)
    "pick_clean_then_place_in_recep": ("clean", "sinkbasin", "isclean"),
    "pick_heat_then_place_in_recep": ("heat", "microwave", "ishot"),
    "pick_cool_then_place_in_recep": ("cool", "fridge", "iscool"),
}


class ExpertError(RuntimeError):
    """The expert found no way forward: the game is unsolvable from this state."""


@dataclass
class World:
    """The facts the expert needs, with objects under their displayed names ("apple 1")."""

    agent_at: str = ""
    held: str | None = None
    type_of: dict[str, str] = field(default_factory=dict)  # object/receptacle -> "apple", "fridge"
    location_of: dict[str, str] = field(default_factory=dict)  # receptacle -> location
    inside: dict[str, str] = field(default_factory=dict)  # object -> receptacle
    openable: set[str] = field(default_factory=set)
    opened: set[str] = field(default_factory=set)
    can_contain: set[tuple[str, str]] = field(default_factory=set)  # (receptacle type, object type)
    flags: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # predicate -> objects

    @classmethod
    def from_state(cls, raw_state: Any) -> World:
        names = {key: info.name.strip() for key, info in raw_state["_entity_infos"].items()}
        world = cls()
        for fact in raw_state["_facts"]:
            args = [names.get(v.name, v.name) for v in fact.arguments]
            world._add(fact.name.lower(), args)
        return world

    def _add(self, pred: str, args: list[str]) -> None:
        if pred == "atlocation":
            self.agent_at = args[1]
        elif pred == "holds":
            self.held = args[1]
        elif pred in ("objecttype", "receptacletype"):
            self.type_of[args[0]] = _type_name(args[1])
        elif pred == "receptacleatlocation":
            self.location_of[args[0]] = args[1]
        elif pred == "inreceptacle":
            self.inside[args[0]] = args[1]
        elif pred == "openable":
            self.openable.add(args[0])
        elif pred == "opened":
            self.opened.add(args[0])
        elif pred == "cancontain":
            self.can_contain.add((_type_name(args[0]), _type_name(args[1])))
        elif len(args) == 1:
            self.flags[pred].add(args[0])

    def at(self, receptacle: str) -> bool:
        return self.location_of.get(receptacle) == self.agent_at

    def of_type(self, kind: str) -> list[str]:
        return sorted(name for name, t in self.type_of.items() if t == kind)


def _type_name(pddl_type: str) -> str:
    name = pddl_type.strip().lower()
    return name[: -len("type")] if name.endswith("type") else name


def next_action(world: World, task_type: str, params: dict[str, Any]) -> str:
    """The expert's next command for `task_type` with traj_data `params` in state `world`."""
    target = params["object_target"].lower()
    if task_type == "look_at_obj_in_light":
        if world.held is not None and world.type_of.get(world.held) == target:
            return _use_lamp(world, params["toggle_target"].lower())
        return _empty_hands_or(world, lambda: _fetch(world, _candidates(world, target)))

    parent = params["parent_target"].lower()
    treatment = TREATMENTS.get(task_type)

    def done(obj: str) -> bool:
        placed = world.type_of.get(world.inside.get(obj, "")) == parent
        return placed and (treatment is None or obj in world.flags[treatment[2]])

    if world.held is not None and world.type_of.get(world.held) == target:
        if treatment and world.held not in world.flags[treatment[2]]:
            verb, appliance, _ = treatment
            return _use_appliance(world, verb, appliance)
        return _put(world, world.held, world.of_type(parent))
    return _empty_hands_or(
        world, lambda: _fetch(world, [o for o in _candidates(world, target) if not done(o)])
    )


def _candidates(world: World, kind: str) -> list[str]:
    return [o for o in world.of_type(kind) if o in world.inside]


def _empty_hands_or(world: World, then) -> str:
    """Put down anything irrelevant that is held, else do `then()`."""
    if world.held is None:
        return then()
    held_type = world.type_of.get(world.held, "")
    spots = [r for r in sorted(world.location_of) if (world.type_of.get(r), held_type) in world.can_contain]
    return _put(world, world.held, spots)


def _closest(world: World, receptacles: list[str]) -> str:
    if not receptacles:
        raise ExpertError("no receptacle to go to")
    here = [r for r in receptacles if world.at(r)]
    return (here or receptacles)[0]


def _reach(world: World, receptacle: str) -> str | None:
    """The command that brings the agent to an open `receptacle`, or None when it is there."""
    if not world.at(receptacle):
        return f"go to {receptacle}"
    if receptacle in world.openable and receptacle not in world.opened:
        return f"open {receptacle}"
    return None


def _fetch(world: World, objects: list[str]) -> str:
    if not objects:
        raise ExpertError("no target object left to take")
    by_place = {world.inside[o]: o for o in reversed(objects)}
    place = _closest(world, sorted(by_place))
    return _reach(world, place) or f"take {by_place[place]} from {place}"


def _put(world: World, obj: str, receptacles: list[str]) -> str:
    place = _closest(world, receptacles)
    return _reach(world, place) or f"move {obj} to {place}"


def _use_appliance(world: World, verb: str, appliance: str) -> str:
    place = _closest(world, world.of_type(appliance))
    if not world.at(place):
        return f"go to {place}"
    return f"{verb} {world.held} with {place}"


def _use_lamp(world: World, lamp_type: str) -> str:
    lamps = [lamp for lamp in world.of_type(lamp_type) if lamp in world.inside]
    if not lamps:
        raise ExpertError(f"no {lamp_type} in the scene")
    by_place = {world.inside[lamp]: lamp for lamp in reversed(lamps)}
    place = _closest(world, sorted(by_place))
    if not world.at(place):
        return f"go to {place}"
    return f"use {by_place[place]}"


# --------------------------------------------------------------------------- demonstrations
def demonstration_step(world: World, task_type: str, params: dict[str, Any], searched: set[str],
                       rng: Any) -> tuple[str, str]:
    """The demonstrating expert's next (command, thought): the oracle's plan over what has been *seen*.

    The oracle above knows where every object is; a student that sees only the observations cannot
    imitate that. This expert acts on the objects in receptacles already searched (`searched`: those
    whose contents an observation showed: gone to, opened or examined), and while the object it
    needs has not been seen it searches the next receptacle in a fixed order (by name), opening
    closed ones and examining those that share the agent's spot (real scenes put several
    receptacles at one navigation point, and arriving shows only the one gone to). Each command
    comes with a short thought that says why, phrased one of a few ways (`rng`).
    """
    seen = World(world.agent_at, world.held, world.type_of, world.location_of,
                 {o: r for o, r in world.inside.items() if r in searched}, world.openable, world.opened,
                 world.can_contain, world.flags)
    try:
        command = next_action(seen, task_type, params)
        exploring = False
    except ExpertError:
        command, exploring = _explore(world, searched), True
    return command, _thought(command, world, task_type, params, searched, exploring, rng)


def _natural(name: str) -> tuple[str, int]:
    kind, _, number = name.rpartition(" ")
    return (kind, int(number)) if number.isdigit() else (name, 0)


def _explore(world: World, searched: set[str]) -> str:
    for receptacle in sorted(world.location_of, key=_natural):
        if receptacle in searched:
            continue
        # at its location already (alfworld puts several receptacles at one spot): look at it there
        return _reach(world, receptacle) or f"examine {receptacle}"
    raise ExpertError("every receptacle is searched and the object is nowhere")


def _go_thought(place: str, world: World, task_type: str, target: str, searched_any: bool, exploring: bool,
                pick: Any) -> str:
    a_target = f"{'an' if target[0] in 'aeiou' else 'a'} {target}"
    if exploring:
        if not searched_any:
            return pick([f"I need {a_target} first; I will start at the {place}.",
                         f"First I look for {a_target}, beginning with the {place}."])
        return pick([f"No {target} here; the {place} is next.", f"The {target} is not here; I will check the "
                     f"{place}.", f"I have not seen {a_target} yet; next is the {place}."])
    if world.held is None:
        return pick([f"I saw a {target} at the {place}; I go there.", f"The {target} is at the {place}."])
    treatment = TREATMENTS.get(task_type)
    if treatment and world.type_of.get(place) == treatment[1]:
        return pick([f"I take the {world.held} to the {place} to {treatment[0]} it.",
                     f"Now the {world.held} must be {treatment[0]}ed: the {place} is next."])
    return pick([f"I bring the {world.held} to the {place}.",
                 f"With the {world.held} in hand, I go to the {place}."])


def _thought(command: str, world: World, task_type: str, params: dict[str, Any], searched: set[str],
             exploring: bool, rng: Any) -> str:
    target = params["object_target"].lower()
    verb, _, rest = command.partition(" ")
    pick = rng.choice
    if command.startswith("go to "):
        return _go_thought(command[len("go to "):], world, task_type, target, bool(searched), exploring, pick)
    if verb == "examine":
        return pick([f"No {target} seen yet; the {rest} is right here, so I look at it.",
                     f"I have not looked at the {rest} yet; I examine it."])
    if verb == "open":
        return pick([f"The {rest} is closed; I open it to look inside.", f"I open the {rest} to see what is in it."])
    if verb == "take":
        obj, _, place = rest.partition(" from ")  # the thought names both, as the action must
        return pick([f"The {obj} is in the {place}; I take it.", f"I see the {obj} at the {place}, so I pick it up."])
    if verb in ("heat", "cool", "clean"):
        obj, _, appliance = rest.partition(" with ")
        return pick([f"I {verb} the {obj} with the {appliance}.", f"The {appliance} will {verb} the {obj}."])
    if verb == "move":
        obj, _, place = rest.partition(" to ")
        if world.type_of.get(obj) == target:
            return pick([f"I put the {obj} in the {place}, as the task asks.", f"The {obj} goes into the {place}."])
        return pick([f"I put the {obj} down in the {place} to free my hands."])
    if verb == "use":
        return pick([f"I turn on the {rest} to look at the {world.held} in its light.",
                     f"With the {world.held} in hand I switch on the {rest}."])
    return f"I {command}."
