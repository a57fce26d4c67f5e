"""ALFWorld games on disk: the standard `json_2.1.1/{train,valid_seen,valid_unseen}` tree.

A game is a trial folder holding two files (the layout ALFWorld's own download uses, and the one
`sdar_envs.alfworld.generator` writes):

    json_2.1.1/<split>/<task_type>-<Obj>-<MRecep|None>-<Recep>-<scene>/<trial>/
        game.tw-pddl     JSON: pddl_domain, grammar, pddl_problem, solvable (+ optional walkthrough)
        traj_data.json   JSON: task_type, task_id, pddl_params{object_target, parent_target,
                         mrecep_target, toggle_target, object_sliced}, turk_annotations.anns[].task_desc

As in ALFWorld, folders whose path contains `movable` or `Sliced` are skipped (those tasks need
actions the text engine does not have), and so are games marked `"solvable": false`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdar_envs.datafiles import read_json, require

logger = logging.getLogger(__name__)

DATA_ENV_VAR = "ALFWORLD_DATA"
ALFWORLD_DEFAULT = Path("~/.cache/alfworld").expanduser()  # what alfworld/info.py puts in $ALFWORLD_DATA
JSON_DIR = "json_2.1.1"
SPLITS = ("train", "valid_seen", "valid_unseen")
GAME_FILE = "game.tw-pddl"
TRAJ_FILE = "traj_data.json"
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
GAME_KEYS = ("pddl_domain", "grammar", "pddl_problem")
PARAM_KEYS = ("object_target", "parent_target", "toggle_target")


class GameDataError(ValueError):
    """A game or trajectory file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class GameRecord:
    """One playable game: where it is and what it asks."""

    task_id: str  # "<task folder>/<trial folder>", unique and stable within a split
    task_type: str
    game_file: Path
    params: dict[str, Any]  # traj_data's pddl_params


@contextlib.contextmanager
def keep_data_setting() -> Iterator[None]:
    """Import alfworld inside this: `$ALFWORLD_DATA` is left as the user set it (or unset).

    alfworld/info.py sets `os.environ["ALFWORLD_DATA"]` to its own cache folder the first time
    alfworld is imported; every later env in the process would then take that for the user's
    setting (and find no games there). Every import of alfworld in sdar goes through here.
    """
    before = os.environ.get(DATA_ENV_VAR)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DATA_ENV_VAR, None)
        else:
            os.environ[DATA_ENV_VAR] = before


def resolve_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The `json_2.1.1` folder from `data_dir` or `$ALFWORLD_DATA`, or None when neither is set.

    Either the `json_2.1.1` folder itself or the folder holding it may be given. `$ALFWORLD_DATA`
    equal to alfworld's own default (`~/.cache/alfworld`, which importing alfworld writes into the
    environment) with no games in it counts as unset.
    """
    raw = data_dir if data_dir is not None else os.environ.get(DATA_ENV_VAR) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    for candidate in (path / JSON_DIR, path):
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate
    if data_dir is None and path == ALFWORLD_DEFAULT:
        logger.info("$ALFWORLD_DATA=%s is alfworld's own default (set by importing alfworld) and holds no games; "
                    "playing the embedded games", raw)
        return None
    source = "data_dir" if data_dir is not None else f"${DATA_ENV_VAR}"
    raise GameDataError(
        f"{source}={str(raw)!r} holds no ALFWorld games: expected {path}/{JSON_DIR}/<split>/ with split "
        f"in {list(SPLITS)}. Point it at ALFWorld's data folder, or generate games with "
        f"`python -m sdar_envs.alfworld.generate --out {path}`."
    )


def discover_games(root: Path, split: str, task_types: tuple[str, ...] | None = None) -> list[GameRecord]:
    """All playable games of one split under `root` (a `json_2.1.1` folder), sorted by task id."""
    if split not in SPLITS:
        raise ValueError(f"unknown ALFWorld split {split!r}; expected one of {list(SPLITS)}.")
    wanted = set(task_types or TASK_TYPES)
    unknown = wanted - set(TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown ALFWorld task type(s) {sorted(unknown)}; expected some of {list(TASK_TYPES)}.")
    split_dir = root / split
    if not split_dir.is_dir():
        raise GameDataError(f"{split_dir} does not exist: this data has no {split!r} split.")
    records = []
    for traj_file in sorted(split_dir.rglob(TRAJ_FILE)):
        rel = traj_file.parent.relative_to(split_dir).as_posix()
        if "movable" in rel or "Sliced" in rel:
            continue
        traj = read_traj(traj_file)
        if traj["task_type"] not in wanted:
            continue
        game_file = traj_file.parent / GAME_FILE
        if not game_file.is_file():
            raise GameDataError(
                f"{traj_file.parent} has {TRAJ_FILE} but no {GAME_FILE}: the ALFRED trajectory alone is "
                "not playable. Use ALFWorld's data release (which ships the game files) or regenerate."
            )
        if not _is_solvable(game_file):
            continue
        records.append(GameRecord(rel, traj["task_type"], game_file, dict(traj["pddl_params"])))
    return records


def read_traj(path: Path) -> dict[str, Any]:
    """Read and check a `traj_data.json` (an ALFRED trial: task type, PDDL parameters, annotations)."""
    data = read_json(path, dict, GameDataError, "an ALFRED trial (task_type, pddl_params, turk_annotations)")
    task_type = require(data, "task_type", str, str(path), GameDataError, "the trial's task type")
    if task_type not in TASK_TYPES:
        raise GameDataError(f"{path}: task_type is {task_type!r}; expected one of {list(TASK_TYPES)}.")
    params = require(data, "pddl_params", dict, str(path), GameDataError, "the goal's objects")
    require(params, "object_target", str, f"{path}: pddl_params", GameDataError)
    annotations = data.get("turk_annotations", {"anns": []})
    anns = annotations.get("anns") if isinstance(annotations, dict) else None
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise GameDataError(f"{path}: 'turk_annotations' must be an object whose 'anns' is a list of objects "
                            "with a 'task_desc' string.")
    return data


def read_game(path: Path) -> dict[str, Any]:
    """Read and check a `game.tw-pddl` (JSON with the PDDL domain, grammar and problem)."""
    data = read_json(path, dict, GameDataError, "a TextWorld PDDL game (pddl_domain, grammar, pddl_problem)")
    missing = [key for key in GAME_KEYS if not isinstance(data.get(key), str) or not data[key].strip()]
    if missing:
        raise GameDataError(f"{path}: missing or empty key(s) {missing}; a game needs {list(GAME_KEYS)}.")
    return data


def _is_solvable(game_file: Path) -> bool:
    # Discovery reads each game once, so a corrupt file fails here, before training starts.
    solvable = read_game(game_file).get("solvable")
    if solvable is None:
        logger.warning("%s has no 'solvable' flag; skipped as ALFWorld does.", game_file)
        return False
    return bool(solvable)
