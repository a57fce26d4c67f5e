"""The trainer on sdar/WebShop-v0, unchanged: a 2-step SDAR run with the tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
pytest.importorskip("pyserini", reason="WebShop's extras are not installed (pip install 'sdar[webshop]')")

from tests.helpers import run_preset  # noqa: E402


def test_two_sdar_steps_on_webshop(tmp_path):
    rows, changed = run_preset(tmp_path, "webshop_sdar_qwen2.5-3b", "ws")
    assert changed and [r["step"] for r in rows] == [1, 2]
    for key in ("sdar/gate_mean", "sdar/teacher_gap_mean", "episode/score", "episode/success_rate", "val/score",
                "val/success_rate"):
        assert key in rows[-1] and rows[-1][key] == rows[-1][key], key
    types = {k.rsplit("/", 1)[1] for k in rows[-1] if k.startswith("episode/success_rate/")}
    assert types and types <= {"beauty", "electronics", "fashion", "garden", "grocery"}
