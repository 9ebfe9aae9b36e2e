"""Best-of-N: score every sample with a verifier and keep the best (Cobbe et al. 2021,
"Training Verifiers to Solve Math Word Problems"; Lightman et al. 2023, "Let's Verify
Step by Step" for process reward models).

Verifiers, chosen by name from `SCORERS`:
- `functional`: the task's checker against the reference answer (1 correct, 0 not). With it
  best-of-N is exactly coverage (pass@N on the same samples): an oracle upper bound.
- `orm`: an outcome reward model, `rm.score_outcomes(prompts, completions) -> [float]`.
- `prm`: a process reward model, `rm.score_steps(prompt, steps) -> [float]` per step of
  `task.split_steps(completion)`, aggregated by `min` (the weakest step; Lightman et al.),
  `prod` (all steps right, if scores are probabilities) or `last` (Snell et al. 2024).

Scores are computed once per sample (`score_attempts`) so that best-of-n for every n of a
sweep reuses them. Ties go to the earliest sample.

Compute: an ORM/PRM is a model too. Each scored sample records what the RM read and spent
(`Sample.score_tokens` / `score_flops`, one RM forward over prompt + completion, from the
RM's `last_cost` after the call), and the point's cost adds it for the first n samples.
An RM object that does not report `last_cost` (a test double) is counted as free.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from scalinglab.errors import UserError
from scalinglab.testtime.base import Attempt

AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": lambda s: min(s),
    "prod": lambda s: math.prod(s),
    "last": lambda s: s[-1],
}


def aggregate(step_scores: Sequence[float], how: str = "min") -> float:
    """One score from a PRM's step scores; a completion with no steps scores -inf."""
    if how not in AGGREGATIONS:
        raise UserError(f"unknown PRM aggregation {how!r} (known: {', '.join(AGGREGATIONS)})")
    return AGGREGATIONS[how](step_scores) if len(step_scores) else -math.inf


def _functional(attempts: list[Attempt], task, rm, how: str) -> None:
    for a in attempts:
        for s in a.samples:
            s.score = 1.0 if s.correct else 0.0


def _orm(attempts: list[Attempt], task, rm, how: str) -> None:
    prompts = [a.problem.prompt for a in attempts for _ in a.samples]
    texts = [s.text for a in attempts for s in a.samples]
    scores = list(rm.score_outcomes(prompts, texts)) if texts else []
    if len(scores) != len(texts):
        raise ValueError(f"reward model returned {len(scores)} scores for {len(texts)} completions")
    it, costs = iter(scores), iter(last_costs(rm, len(texts)))
    for a in attempts:
        for s in a.samples:
            s.score = float(next(it))
            s.score_tokens, s.score_flops = next(costs)


def _prm(attempts: list[Attempt], task, rm, how: str) -> None:
    for a in attempts:
        for s in a.samples:
            s.score, (s.score_tokens, s.score_flops) = prm_score_cost(rm, task, a.problem.prompt, s.text, how)


def last_costs(rm, k: int) -> list[tuple[int, float]]:
    """(tokens, FLOPs) of each of the `k` texts the RM's last call scored; zeros when it does not say."""
    costs = list(getattr(rm, "last_cost", None) or [])
    return costs if len(costs) == k else [(0, 0.0)] * k


def prm_score_cost(rm, task, prompt: str, completion: str, how: str = "min") -> tuple[float, tuple[int, float]]:
    """The aggregated PRM score of one completion and the (tokens, FLOPs) the PRM spent on it."""
    steps = task.split_steps(completion)
    if not steps:  # nothing to score: the RM is not called
        return aggregate([], how), (0, 0.0)
    score = aggregate([float(x) for x in rm.score_steps(prompt, steps)], how)
    return score, last_costs(rm, 1)[0]


def prm_score(rm, task, prompt: str, completion: str, how: str = "min") -> float:
    return prm_score_cost(rm, task, prompt, completion, how)[0]


SCORERS = {"functional": _functional, "orm": _orm, "prm": _prm}


def score_attempts(
    attempts: list[Attempt], task, verifier: str = "functional", rm=None, aggregation: str = "min"
) -> None:
    """Fill `sample.score` for every sample of every attempt."""
    if verifier not in SCORERS:
        raise UserError(f"unknown verifier {verifier!r} (known: {', '.join(SCORERS)})")
    if verifier != "functional" and rm is None:
        raise UserError(f"verifier {verifier!r} needs a reward model (--reward-model)")
    if aggregation not in AGGREGATIONS:
        raise UserError(f"unknown PRM aggregation {aggregation!r} (known: {', '.join(AGGREGATIONS)})")
    SCORERS[verifier](attempts, task, rm, aggregation)


def best_index(scores: Sequence[float]) -> int | None:
    """Index of the highest score, the earliest on ties; None for no samples."""
    if not scores:
        return None
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def load_reward_model(path, device):
    """The reward model of `scalinglab train reward-model` (imported lazily: it needs torch)."""
    try:
        from scalinglab.train.reward_model import load_reward_model as load
    except ImportError as e:
        raise UserError(f"reward models are not available in this install ({e})") from None
    return load(path, device)
