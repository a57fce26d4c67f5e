"""The teacher-advantage figures on a hand-made case."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'sdar[train]')")

from sdar_agent.premise import gap_statistics  # noqa: E402


def test_gap_statistics_by_hand():
    student = [torch.tensor([math.log(0.5), math.log(0.25)]), torch.tensor([math.log(0.1)])]
    teacher = [torch.tensor([math.log(0.5), math.log(0.5)]), torch.tensor([math.log(0.05)])]
    stats = gap_statistics(student, teacher)
    # gaps: 0, log 2, -log 2: mean 0 over 3 tokens; one token of three where the teacher is ahead
    assert stats["answers"] == 2 and stats["tokens"] == 3
    assert stats["teacher_gap_mean"] == pytest.approx(0.0, abs=1e-12)
    assert stats["positive_share"] == pytest.approx(1 / 3)
    assert stats["answer_gap_mean"] == pytest.approx((math.log(2) - math.log(2)) / 2, abs=1e-12)
    ahead = gap_statistics([torch.tensor([-2.0, -1.0])], [torch.tensor([-1.0, -0.5])])
    assert (ahead["teacher_gap_mean"], ahead["positive_share"], ahead["answer_gap_mean"]) == (0.75, 1.0, 1.5)
    with pytest.raises(ValueError, match="pair up"):
        gap_statistics([torch.zeros(2)], [torch.zeros(3)])
