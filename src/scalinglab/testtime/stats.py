"""Comparing two strategies on the same problems: per-problem correctness and a paired bootstrap CI.

Two strategies evaluated on the same problems give paired outcomes (1 = right, 0 = wrong).
The 95% interval of the accuracy difference comes from resampling *problems* with
replacement, keeping each problem's pair together. Problems differ in difficulty far more
than the strategies do, so pairing gives a much tighter interval than two independent CIs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from scalinglab.testtime.vote import majority_vote


def paired_bootstrap(
    a: Sequence[int], b: Sequence[int], resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of mean(a) − mean(b), resampling problems (pairs) with replacement."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired outcomes need two equal, non-empty lists; got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    rng, n = random.Random(seed), len(d)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * resamples)], means[int((1 - tail) * resamples) - 1]


def heldout_gain(before: Sequence[int], after: Sequence[int]) -> dict:
    """The held-out gain of a training stage: accuracy after − before on the same problems, with
    the paired-bootstrap 95% interval (`gain_ci95`; None for fewer than 2 problems)."""
    before, after = [int(x) for x in before], [int(x) for x in after]
    n = len(after)
    ci = list(paired_bootstrap(after, before)) if n >= 2 and len(before) == n else None
    return {"gain": (sum(after) - sum(before)) / n if n and len(before) == n else None, "gain_ci95": ci}


def majority_correct(summary: dict, n: int, task, problems) -> list[int]:
    """1/0 per problem for the majority vote over the first n samples of an `evaluate` summary."""
    out = []
    for p, row in zip(problems, summary["per_problem"]):
        v = majority_vote(row["answers"][:n], task.equivalent)
        out.append(int(v.answer is not None and task.equivalent(v.answer, p.answer)))
    return out
