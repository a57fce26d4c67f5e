"""sdar/ALFWorld-v0: ALFWorld's household tasks on alfworld's own TextWorld engine."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from sdar_envs.alfworld import data
from sdar_envs.alfworld.engine import AlfredEngine, EngineState, normalize
from sdar_envs.alfworld.expert import World, demonstration_step, next_action
from sdar_envs.answers import PromptTemplate
from sdar_envs.core import ExpertStep, TaskStart, TextEnv, Transition

NOTHING_HAPPENS = "Nothing happens."
_TASK_RE = re.compile(r"Your task is to:?\s*(.+?)\s*$", re.S)


class ALFWorldEnv(TextEnv):
    """ALFWorld (Shridhar et al., 2021): text household tasks in THOR rooms.

    ## Description
    The agent is in a room with numbered receptacles ("cabinet 3", "fridge 1") and must complete
    one of six task types: pick_and_place_simple, look_at_obj_in_light,
    pick_clean_then_place_in_recep, pick_heat_then_place_in_recep,
    pick_cool_then_place_in_recep, pick_two_obj_and_place. Games run on alfworld's TextWorld
    engine (its PDDL domain and grammar): observations, admissible commands and the win condition
    are the engine's.

    ## Action Space
    A command string, e.g. `go to fridge 1`, `open fridge 1`, `take apple 1 from fridge 1`,
    `heat apple 1 with microwave 1`, `move apple 1 to countertop 1`, `use desklamp 1`,
    `examine drawer 2`, `inventory`, `look`. Case and spacing are normalised. Anything not
    admissible gets the engine's answer, "Nothing happens.", with `action_valid=False`.

    ## Observation Space
    The engine's text. At reset:

        -= Welcome to TextWorld, ALFRED! =-

        You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a
        cabinet 1, a fridge 1, a microwave 1, and a sinkbasin 1.

        Your task is to: heat some mug and put it in cabinet.

    ## Rewards
    1.0 on the step that completes the task, 0 otherwise (the trainer scales it).

    ## Starting State
    The task chosen by `reset(options={"task_id": ...})`, `{"task_index": i}`, or drawn from the
    seed; every task starts from its fixed initial state.

    ## Episode End
    Terminated when the task is won; truncated after 50 steps (`max_episode_steps`).

    ## Information
    `task` the instruction ("heat some mug and put it in cabinet."), `task_id` the game's
    "<task folder>/<trial>" path, `task_type` one of the six types, `admissible_actions` the
    engine's admissible commands without `help`, `won`, `score` (1.0 once won, else 0.0),
    `action_valid`, `step`.

    ## Arguments
    - `split`: "train" | "valid_seen" | "valid_unseen" (valid_unseen uses rooms held out of train).
    - `data_dir`: a folder holding `json_2.1.1/` (or that folder itself). Default: `$ALFWORLD_DATA`,
      else the embedded set generated offline (`sdar_envs.alfworld.generate`) into the cache.
    - `task_types`: restrict the split to these types.
    - `embedded`: which embedded set to play when no data is configured (train/valid_seen/valid_unseen
      games): "default" (rooms of up to 10 receptacles, 120/24/24), "small" (4 receptacles, few
      objects, 60/12/24), "easy" (two receptacles, three when the task needs an appliance, no
      distractors: the CPU demo's set, 120/12/24) or "easy-wide" (`easy` with 96 held-out games,
      the first 24 of them `easy`'s).
    - `render_mode`: "ansi" renders the transcript.

    ## Version History
    - v0: initial version (alfworld 0.4.2 engine, `move X to Y` verb).
    """

    splits = data.SPLITS
    skill_bank = "alfworld"
    prompt_template = PromptTemplate(
        "alfworld",
        "You are an agent in a text-based household simulator (ALFWorld). You move between "
        "receptacles and use objects by typing commands.",
    )

    def __init__(
        self,
        split: str = "train",
        data_dir: str | os.PathLike | None = None,
        task_types: Sequence[str] | None = None,
        render_mode: str | None = None,
        embedded: str = "default",
    ) -> None:
        super().__init__(split=split, render_mode=render_mode)
        root = data.resolve_root(data_dir)
        if root is None:
            from sdar_envs.alfworld.generate import default_games_root

            root = default_games_root(embedded=embedded)
        self.data_root = root
        self.games = data.discover_games(root, split, tuple(task_types) if task_types else None)
        if not self.games:
            raise data.GameDataError(
                f"{root / split} holds no playable games"
                + (f" of types {list(task_types)}" if task_types else "")
                + "; check the folder (json_2.1.1/<split>/<task>/<trial>/game.tw-pddl)."
            )
        self.set_tasks([g.task_id for g in self.games], [g.task_type for g in self.games])
        self._engine: AlfredEngine | None = None
        self._state: EngineState | None = None
        self._searched: set[str] = set()  # receptacles whose contents an observation showed (the demonstrator's memory)

    def _start(self, index: int) -> TaskStart:
        game = self.games[index]
        if self._engine is None:
            self._engine = AlfredEngine()
        if self._engine.game_file != game.game_file:
            self._engine.load(game.game_file)
        self._state = self._engine.reset()
        self._searched = set()
        match = _TASK_RE.search(self._state.feedback)
        task = match.group(1) if match else ""
        return TaskStart(self._state.feedback, task, game.task_type, self._state.admissible_commands)

    def _act(self, action: str) -> Transition:
        if self._state is None or self._engine is None:
            raise RuntimeError(f"{type(self).__name__}.step() called after close(): reset() starts a new episode.")
        command = normalize(action)
        if command in self._state.admissible_commands:
            self._state = self._engine.step(command)
            self._note_searched(command)
            valid = True
            observation = self._state.feedback
        else:  # exactly what the engine answers, without a round trip
            valid = False
            observation = NOTHING_HAPPENS
        won = self._state.won
        return Transition(
            observation=observation,
            reward=1.0 if won and valid else 0.0,
            terminated=won,
            won=won,
            score=1.0 if won else 0.0,
            action_valid=valid,
            admissible_actions=self._state.admissible_commands,
        )

    def expert_action(self) -> str:
        """The oracle expert's next command in the current state (see `sdar_envs.alfworld.expert`)."""
        if self._state is None or self._task_index is None:
            raise RuntimeError("expert_action() needs a reset() first.")
        game = self.games[self._task_index]
        return next_action(World.from_state(self._state.raw), game.task_type, game.params)

    def expert_step(self) -> ExpertStep:
        """The demonstrator's next command and thought: the oracle's plan over the receptacles searched so far.

        Unlike `expert_action` (which knows where everything is) it looks for what it has not seen,
        receptacle by receptacle, so a policy that sees only the observations can imitate it: it
        takes only objects an observation showed, and its thoughts say only what was shown.
        """
        if self._state is None or self._task_index is None:
            raise RuntimeError("expert_step() needs a reset() first.")
        game = self.games[self._task_index]
        world = World.from_state(self._state.raw)
        command, thought = demonstration_step(world, game.task_type, game.params, self._searched, self.thought_rng())
        return ExpertStep(command, thought)

    def _note_searched(self, command: str) -> None:
        """Remember the receptacle whose contents `command`'s observation showed (go to, open, examine)."""
        assert self._state is not None
        verb, _, rest = command.partition(" ")
        receptacle = rest.removeprefix("to ") if verb == "go" else rest if verb in ("open", "examine") else ""
        world = World.from_state(self._state.raw)
        if receptacle in world.location_of and (receptacle not in world.openable or receptacle in world.opened):
            self._searched.add(receptacle)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self._state = None
        super().close()
