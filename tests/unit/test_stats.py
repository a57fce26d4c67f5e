"""The evaluation's statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("scipy", reason="the evaluation's statistics need scipy (pip install 'sdar[train]')")

from sdar_agent.stats import mcnemar_exact, paired_comparison, wilson_interval  # noqa: E402


def test_wilson_interval_by_hand():
    # p = 0.3, n = 10, z = 1.96: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    z = 1.959963984540054
    centre = (0.3 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.3 * 0.7 / 10 + z * z / 400) / (1 + z * z / 10)
    low, high = wilson_interval(3, 10)
    assert low == pytest.approx(centre - half, abs=1e-9) and high == pytest.approx(centre + half, abs=1e-9)
    assert wilson_interval(0, 16)[0] == 0.0 and wilson_interval(0, 16)[1] == pytest.approx(z * z / (16 + z * z))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(1, 8) == pytest.approx(2 * (1 + 9) / 2**9)  # 2 P(X <= 1), X ~ Bin(9, 1/2)
    assert mcnemar_exact(0, 4) == pytest.approx(2 / 2**4)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_paired_comparison_of_two_policies_on_one_panel():
    panel = [f"t{i}" for i in range(10)]
    a = {t: [i < 4] for i, t in enumerate(panel)}  # A wins t0-t3
    b = {t: [i < 8] for i, t in enumerate(panel)}  # B wins t0-t7
    result = paired_comparison(a, b)
    assert (result.success_a, result.success_b, result.difference) == (0.4, 0.8, pytest.approx(0.4))
    assert (result.only_a, result.only_b) == (0, 4) and result.mcnemar_p == pytest.approx(0.125)
    assert 0.0 < result.difference_low < 0.4 < result.difference_high <= 0.8  # 4 of 10 tasks differ, all for B
    same = paired_comparison(a, a)
    assert (same.difference, same.difference_low, same.difference_high, same.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)


def test_paired_comparison_with_several_samples_per_task():
    a = {"x": [True, False], "y": [False, False]}
    b = {"x": [True, True], "y": [True, False]}
    result = paired_comparison(a, b)
    assert result.samples == 2 and result.success_a == 0.25 and result.success_b == 0.75
    assert (result.only_a, result.only_b) == (0, 2)


def test_paired_comparison_refuses_other_panels():
    with pytest.raises(ValueError, match="other tasks"):
        paired_comparison({"x": [True]}, {"y": [True]})
    with pytest.raises(ValueError, match="same number of samples"):
        paired_comparison({"x": [True]}, {"x": [True, False]})
