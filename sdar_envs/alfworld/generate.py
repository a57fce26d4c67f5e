"""Generate offline ALFWorld game sets, and the embedded default set `gym.make` plays.

    python -m sdar_envs.alfworld.generate --out games/ --train 600 --valid-seen 60 --valid-unseen 60

writes `games/json_2.1.1/{train,valid_seen,valid_unseen}/...`, which `gym.make("sdar/ALFWorld-v0",
data_dir="games/")` (or `ALFWORLD_DATA=games/`) then plays. Task types take turns, so each split
holds the six types in equal numbers. Games are generated in worker processes; the result depends
only on the seed and the settings, never on the number of workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from sdar_envs.alfworld.data import JSON_DIR, SPLITS
from sdar_envs.alfworld.engine import AlfredEngine
from sdar_envs.alfworld.generator import GENERATOR_VERSION, Difficulty, generate_one, plan_split
from sdar_envs.cache import cache_dir

MANIFEST = "sdar_manifest.json"
#: The embedded default set: small enough to generate in about a minute on two cores.
DEFAULT_COUNTS = {"train": 120, "valid_seen": 24, "valid_unseen": 24}
DEFAULT_SEED = 0
#: Embedded sets by name: (games per split, difficulty). `small` has 4-receptacle rooms with few
#: objects and short prompts, for training small models on a CPU; `easy` keeps two receptacles
#: (three when the task needs an appliance) and no distractors: short games a 135M model learns from a few
#: demonstrations (the CPU demo); `easy-wide` is `easy` with 96 held-out games (its train split and
#: first 24 valid_unseen games are `easy`'s, as every game depends only on its split and number): a
#: panel large enough to tell two policies apart (docs/experiments).
EMBEDDED_SETS = {
    "default": (DEFAULT_COUNTS, Difficulty()),
    "small": ({"train": 60, "valid_seen": 12, "valid_unseen": 24}, Difficulty(4, 2, 1)),
    "easy": ({"train": 120, "valid_seen": 12, "valid_unseen": 24}, Difficulty(2, 0, 1)),
    "easy-wide": ({"train": 120, "valid_seen": 12, "valid_unseen": 96}, Difficulty(2, 0, 1)),
}

_ENGINE: AlfredEngine | None = None


def _worker_init() -> None:
    global _ENGINE
    _ENGINE = AlfredEngine()


def _work(job: tuple[str, str, str, int, int, Difficulty]) -> str:
    root, split, task_type, index, seed, difficulty = job
    assert _ENGINE is not None
    return str(generate_one(Path(root) / split, split, task_type, index, seed, difficulty, _ENGINE))


def generate_set(
    out: Path,
    counts: dict[str, int],
    seed: int = DEFAULT_SEED,
    difficulty: Difficulty | None = None,
    workers: int | None = None,
    log=print,
) -> Path:
    """Write a game set under `out/json_2.1.1/` and return that folder."""
    difficulty = difficulty or Difficulty()
    for split, n in counts.items():
        if split not in SPLITS or not isinstance(n, int) or n < 0:
            raise ValueError(f"counts[{split!r}]={n!r}: expected a split in {list(SPLITS)} and an int >= 0.")
    root = Path(out) / JSON_DIR
    jobs = [
        (str(root), split, task_type, index, seed, difficulty)
        for split, n in counts.items()
        for task_type, index in plan_split(split, n, seed)
    ]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if multiprocessing.current_process().daemon:  # a daemon (e.g. an env worker) may not start processes
        workers = 1
    start = time.perf_counter()
    log(f"Generating {len(jobs)} ALFWorld games into {root} with {workers} worker(s)...")
    if workers == 1:
        _worker_init()
        folders = [_work(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, initializer=_worker_init) as pool:
            folders = list(pool.map(_work, jobs, chunksize=4))
    games: dict[str, list[str]] = {split: [] for split in counts}
    for job, folder in zip(jobs, folders, strict=True):
        games[job[1]].append(Path(folder).relative_to(root / job[1]).as_posix())
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "difficulty": asdict(difficulty),
        "counts": counts,
        "games": games,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log(f"Generated {len(folders)} games in {time.perf_counter() - start:.1f}s.")
    return root


def default_games_root(log=None, embedded: str = "default") -> Path:
    """An embedded game set (see `EMBEDDED_SETS`), generated into the cache on first use."""
    if embedded not in EMBEDDED_SETS:
        raise ValueError(f"embedded={embedded!r}: expected one of {sorted(EMBEDDED_SETS)}.")
    counts, difficulty = EMBEDDED_SETS[embedded]
    key = json.dumps([GENERATOR_VERSION, DEFAULT_SEED, asdict(difficulty), counts], sort_keys=True)
    name = f"v{GENERATOR_VERSION}-{embedded}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    final = cache_dir() / "alfworld" / name
    if (final / JSON_DIR / MANIFEST).is_file():
        return final / JSON_DIR
    log = log or (lambda msg: print(msg, file=sys.stderr))
    log(f"sdar/ALFWorld: no data configured (data_dir= or $ALFWORLD_DATA); building the embedded "
        f"{embedded!r} game set once.")
    tmp = final.with_name(f"{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_set(tmp, counts, DEFAULT_SEED, difficulty, log=log)
    try:
        tmp.rename(final)
    except OSError:  # another process finished first; its set is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return final / JSON_DIR


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sdar_envs.alfworld.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write json_2.1.1/ into")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    for split in SPLITS:
        flag = "--" + split.replace("_", "-")
        parser.add_argument(flag, type=int, default=DEFAULT_COUNTS[split], help=f"games in {split}")
    defaults = Difficulty()
    parser.add_argument("--max-receptacles", type=int, default=defaults.max_receptacles)
    parser.add_argument("--distractors", type=int, default=defaults.distractors)
    parser.add_argument("--max-targets", type=int, default=defaults.max_targets)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    try:
        difficulty = Difficulty(args.max_receptacles, args.distractors, args.max_targets)
    except ValueError as err:
        parser.error(str(err))
    counts = {split: getattr(args, split) for split in SPLITS}
    if (args.out / JSON_DIR).exists():
        parser.error(f"{args.out / JSON_DIR} already exists; choose another --out or remove it.")
    generate_set(args.out, counts, args.seed, difficulty, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
