"""Whole generated sets: determinism, the CLI, the cached embedded default, the demo."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

pytest.importorskip("alfworld", reason="the ALFWorld engine is not installed (pip install 'sdar[alfworld]')")

from sdar_envs.alfworld import generate, play  # noqa: E402
from sdar_envs.alfworld.generator import Difficulty  # noqa: E402


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files_whatever_the_worker_count(tmp_path):
    def gen(name, seed, workers):
        counts = {"train": 6, "valid_unseen": 2}
        return generate.generate_set(tmp_path / name, counts, seed, Difficulty(5, 3), workers, log=lambda _: None)

    a, b, c = gen("a", 11, 1), gen("b", 11, 2), gen("c", 12, 2)
    assert snapshot(a) == snapshot(b)
    assert snapshot(a) != snapshot(c)
    manifest = json.loads((a / generate.MANIFEST).read_text())
    assert len(manifest["games"]["train"]) == 6 and manifest["seed"] == 11
    game = json.loads(next((a / "train").rglob("game.tw-pddl")).read_text())
    assert game["solvable"] is True and game["walkthrough"]


def test_unseen_split_uses_only_held_out_scenes(alfworld_games):
    from sdar_envs.alfworld.scenes import scene_numbers

    held_out = set(scene_numbers(True))
    for split, expect in (("valid_unseen", True), ("train", False), ("valid_seen", False)):
        scenes_used = {int(p.parent.name.rsplit("-", 1)[1]) for p in (alfworld_games / split).glob("*/*")}
        assert scenes_used and all((n in held_out) == expect for n in scenes_used), split


def test_cli_writes_a_playable_set(tmp_path, capsys):
    out = tmp_path / "games"
    args = ["--out", str(out), "--train", "6", "--valid-seen", "0", "--valid-unseen", "0",
            "--max-receptacles", "4", "--distractors", "2", "--workers", "1"]
    assert generate.main(args) == 0
    env = gym.make("sdar/ALFWorld-v0", data_dir=out)
    assert env.unwrapped.num_tasks == 6
    with pytest.raises(SystemExit):  # refuses to overwrite
        generate.main(args)
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        generate.main(["--out", str(tmp_path / "x"), "--max-receptacles", "1"])
    assert "max_receptacles=1" in capsys.readouterr().err


def test_embedded_default_is_generated_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SDAR_CACHE_DIR", str(tmp_path / "cache"))
    small = {"train": 6, "valid_seen": 0, "valid_unseen": 6}
    monkeypatch.setitem(generate.EMBEDDED_SETS, "default", (small, generate.EMBEDDED_SETS["default"][1]))
    messages = []
    root = generate.default_games_root(log=messages.append)
    assert root.is_relative_to(tmp_path / "cache") and messages
    assert generate.default_games_root(log=messages.append) == root and len(messages) == 3  # cached
    env = gym.make("sdar/ALFWorld-v0", split="valid_unseen")  # no data_dir, no $ALFWORLD_DATA
    assert env.unwrapped.data_root == root and env.unwrapped.num_tasks == 6


def test_demo_prints_success_by_task_type(alfworld_games, capsys):
    assert play.main(["--data-dir", str(alfworld_games), "--split", "train", "--episodes", "12"]) == 0
    out = capsys.readouterr().out
    assert "pick_two_obj_and_place" in out and out.rstrip().splitlines()[-1].split()[:3] == ["all", "12", "100.0%"]


def _generate_in_daemon(out: str, queue) -> None:
    from sdar_envs.alfworld.generate import generate_set

    try:
        generate_set(__import__("pathlib").Path(out), {"train": 2}, seed=3, workers=2, log=lambda _: None)
        queue.put("ok")
    except Exception as err:  # reported to the test
        queue.put(repr(err))


def test_generation_works_inside_a_daemon_process(tmp_path):
    """Env workers are daemons; building the embedded set there must not need child processes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_generate_in_daemon, args=(str(tmp_path / "d"), queue), daemon=True)
    proc.start()
    assert queue.get(timeout=120) == "ok"
    proc.join(timeout=30)
    assert len(list((tmp_path / "d" / "json_2.1.1" / "train").rglob("game.tw-pddl"))) == 2
