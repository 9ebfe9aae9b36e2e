"""Majority vote (self-consistency; Wang et al. 2023, "Self-Consistency Improves Chain of
Thought Reasoning") and reward-weighted vote (Uesato et al. 2022; Li et al. 2023).

Answers are grouped by the task's equivalence (`task.equivalent`, e.g. `0.5` ≡ `1/2` for
math), not by string equality: each answer joins the first group whose representative (its
first member) it is equivalent to. Unparseable samples (answer None) do not vote. The
group with the largest total weight wins (weight 1 per sample for the plain vote); ties go
to the group that appeared first, a deterministic rule that is recorded in `Vote.tied`.
Pure and torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Vote:
    answer: str | None  # the winner, as first spelled (None when no sample had an answer)
    index: int | None  # the first sample giving the winning answer
    weight: float  # the winner's total weight (its vote count for the plain vote)
    tied: tuple[str, ...] = ()  # other answers with exactly the winner's weight
    groups: int = 0  # distinct answers


def group_answers(answers: Sequence[str | None], equivalent: Callable[[str, str], bool]) -> list[list[int]]:
    """Indices of equivalent answers, groups in order of first appearance; None is skipped."""
    groups: list[list[int]] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        for g in groups:
            if equivalent(answers[g[0]], a):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def weighted_vote(
    answers: Sequence[str | None], equivalent: Callable[[str, str], bool], weights: Sequence[float] | None = None
) -> Vote:
    """The answer with the largest total weight; `weights=None` is the plain majority vote."""
    w = [1.0] * len(answers) if weights is None else [float(x) for x in weights]
    groups = group_answers(answers, equivalent)
    if not groups:
        return Vote(None, None, 0.0)
    totals = [sum(w[i] for i in g) for g in groups]
    best = max(range(len(groups)), key=lambda j: (totals[j], -j))  # first group wins a tie
    tied = tuple(answers[groups[j][0]] for j in range(len(groups)) if j != best and totals[j] == totals[best])
    return Vote(answers[groups[best][0]], groups[best][0], totals[best], tied, len(groups))


def majority_vote(answers: Sequence[str | None], equivalent: Callable[[str, str], bool]) -> Vote:
    return weighted_vote(answers, equivalent, None)
