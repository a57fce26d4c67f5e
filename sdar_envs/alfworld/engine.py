"""alfworld's own TextWorld engine, one game at a time.

The engine is TextWorld's PDDL backend (`textworld.envs.PddlEnv`, planning library from
`fast-downward-textworld`) wrapped in alfworld's `AlfredDemangler`, which names THOR objects the
way ALFWorld does ("cabinet 3", "sinkbasin 1"). Observations, admissible commands and the win
condition all come from it; this module only loads games and reads its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdar_envs.alfworld.data import keep_data_setting, read_game, read_traj

UNFILLED_GOAL = "UNKNOWN GOAL"
INSTALL_HINT = 'pip install "sdar[alfworld]"  (alfworld==0.4.2, textworld, fast-downward-textworld)'


def _textworld():
    try:
        import textworld
        from textworld.envs.pddl import PddlEnv

        with keep_data_setting():
            from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
    except ImportError as err:
        raise ImportError(f"sdar/ALFWorld needs alfworld's TextWorld engine ({err}); run: {INSTALL_HINT}") from err

    class Demangler(AlfredDemangler):
        """alfworld's demangler, minus the trailing space it leaves on names without a number.

        ALFWorld data numbers every object ("desk 1"); hand-written games may not, and then the
        engine lists "go to desk " yet, stripping commands, can never match it.
        """

        def load(self, *args, **kwargs):
            super().load(*args, **kwargs)
            for info in self._entity_infos.values():
                info.name = info.name.strip()

    return textworld, PddlEnv, Demangler


@dataclass
class EngineState:
    """The engine's view after a reset or step."""

    feedback: str
    won: bool
    admissible_commands: list[str]  # the engine's commands, `help` removed, whitespace normalised
    raw: Any  # textworld GameState: `_facts`, `_entity_infos` for experts


class AlfredEngine:
    """Plays ALFWorld games on alfworld's TextWorld engine; `load` a game, then `reset`/`step`."""

    def __init__(self) -> None:
        textworld, pddl_env, demangler = _textworld()
        infos = textworld.EnvInfos(won=True, admissible_commands=True)
        self._env = demangler()(pddl_env(infos))
        self.game_file: Path | None = None
        self._raw_commands: dict[str, str] = {}

    def load(self, game_file: Path, traj_file: Path | None = None) -> None:
        """Load a `game.tw-pddl`; its `traj_data.json` fills the goal text if the grammar lacks it."""
        data = read_game(game_file)
        if UNFILLED_GOAL in data["grammar"]:
            traj_file = traj_file or game_file.parent / "traj_data.json"
            anns = read_traj(traj_file).get("turk_annotations", {}).get("anns") or [{}]
            goal = str(anns[0].get("task_desc", "")).strip().rstrip(".")
            data = dict(data, grammar=data["grammar"].replace(UNFILLED_GOAL, goal or "complete the task"))
        try:
            self._env.load(data)
        except (Exception, SystemExit) as err:  # fast-downward's translator exits on bad PDDL
            reason = f"{type(err).__name__}: {err}"
            raise ValueError(f"{game_file}: the engine could not load this game ({reason}).") from err
        self.game_file = Path(game_file)

    def reset(self) -> EngineState:
        return self._wrap(self._env.reset())

    def step(self, command: str) -> EngineState:
        """Apply `command`; an admissible command may be given in normalised form."""
        state, _, _ = self._env.step(self._raw_commands.get(command, command))
        return self._wrap(state)

    def close(self) -> None:
        self._env.close()

    def _wrap(self, state: Any) -> EngineState:
        self._raw_commands = {normalize(c): c for c in state["admissible_commands"] if c != "help"}
        return EngineState(state["feedback"], bool(state["won"]), list(self._raw_commands), state)


def normalize(command: str) -> str:
    """Lower-case and single-space a command, the form in which admissible commands are listed."""
    return " ".join(command.lower().split())
