"""Statistics that tell two policies apart on a fixed panel of tasks (scipy's implementations).

- `wilson_interval`: the 95 % Wilson score interval of a success rate (k wins of n episodes).
- `paired_comparison`: two policies' per-task outcomes on the same panel: the difference in
  success with a paired bootstrap 95 % interval over tasks, and the exact McNemar test on the
  discordant (task, sample) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000


def wilson_interval(wins: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of `wins` successes in `n` trials ((0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(int(wins), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: `only_a` pairs won by A alone, `only_b` by B alone (1.0 with none)."""
    if only_a + only_b == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(only_a), int(only_a + only_b), 0.5).pvalue)


@dataclass(frozen=True)
class Comparison:
    """B against A on one panel: success rates, their difference with its interval, and McNemar's test."""

    tasks: int
    samples: int  # per task and policy (avg@k)
    success_a: float
    success_b: float
    difference: float  # success_b - success_a
    difference_low: float  # paired bootstrap interval over tasks
    difference_high: float
    only_a: int  # (task, sample) pairs won by A alone
    only_b: int  # ... by B alone
    mcnemar_p: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def paired_comparison(a: Mapping[str, Sequence[bool]], b: Mapping[str, Sequence[bool]], seed: int = 0,
                      confidence: float = CONFIDENCE) -> Comparison:
    """Compare B with A from their outcomes per task id (each a list of k wins / losses, the same k and panel).

    The difference of the per-task mean success (B - A) gets a percentile bootstrap interval that
    resamples tasks, keeping each task's pair together. McNemar's exact test pairs sample i of a
    task under A with sample i under B (with k = 1, the classic paired test of two classifiers).
    """
    if set(a) != set(b):
        raise ValueError(f"the two evaluations cover other tasks ({len(set(a) ^ set(b))} differ): compare "
                         "evaluations of the same panel (same split, tasks and env data)")
    panel = sorted(a)
    if not panel:
        raise ValueError("no tasks to compare")
    k = {len(a[t]) for t in panel} | {len(b[t]) for t in panel}
    if len(k) != 1:
        raise ValueError(f"every task needs the same number of samples under both policies; got {sorted(k)}")
    wins_a = np.array([a[t] for t in panel], dtype=float)  # (tasks, k)
    wins_b = np.array([b[t] for t in panel], dtype=float)
    mean_a, mean_b = wins_a.mean(axis=1), wins_b.mean(axis=1)  # (tasks,)
    diff = float(mean_b.mean() - mean_a.mean())
    low, high = diff, diff
    if len(panel) > 1 and np.any(mean_b != mean_a):
        from scipy.stats import bootstrap

        result = bootstrap((mean_a, mean_b), lambda x, y, axis: np.mean(y - x, axis=axis), paired=True,
                           vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                           method="percentile", random_state=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    only_a = int(((wins_a == 1) & (wins_b == 0)).sum())
    only_b = int(((wins_b == 1) & (wins_a == 0)).sum())
    return Comparison(len(panel), k.pop(), float(mean_a.mean()), float(mean_b.mean()), diff, low, high, only_a,
                      only_b, mcnemar_exact(only_a, only_b))
