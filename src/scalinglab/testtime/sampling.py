"""Repeated sampling and the strategies that choose among the samples.

`draw` samples n completions per problem in ONE engine call: the engine prefills each
prompt once and decodes its n samples against that shared prefix (cascade attention), so
n samples cost one prefill plus n decodes. Each sample's decode FLOPs are
`sequence_flops(cfg, prompt_len, sample_len)`, the engine's own formula, so the costs of the
samples add up exactly to the call's `generated_flops`.

A sweep over n = 1, 2, 4, …, N samples ONCE with N and evaluates each smaller n on the
first n samples of every problem: its cost is the prompt once plus the decodes of those n
samples, which is what running with n alone would have cost.

Selectors (`SELECTORS`) turn the first n samples of an attempt into a Solution:
- `sample`: no selection; the score is the fraction of the n samples that are correct
  (plain sampling accuracy; coverage is reported as pass@k next to it);
- `majority`: self-consistency vote over extracted answers (vote.py);
- `best-of-n`: the highest verifier score (best_of_n.py);
- `weighted`: reward-weighted vote (vote.py with the verifier scores as weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from scalinglab.engine import Engine, SamplingParams, sequence_flops
from scalinglab.tasks.base import Problem
from scalinglab.testtime.base import Attempt, Cost, Sample, Solution, SolveResult
from scalinglab.testtime.best_of_n import best_index, score_attempts
from scalinglab.testtime.vote import majority_vote, weighted_vote


def draw(
    engine: Engine, task, problems: Sequence[Problem], n: int, params: SamplingParams, progress=None
) -> tuple[list[Attempt], Cost]:
    """n judged samples per problem from one engine call, and that call's cost."""
    params = replace(params, n=n)
    res = engine.generate([p.prompt for p in problems], params, progress=progress)
    cfg = engine.cfg
    attempts = []
    for p, g in zip(problems, res.generations):
        plen = len(g.prompt_ids)
        samples = [
            Sample(
                text=c.text,
                answer=task.extract_answer(c.text),
                correct=bool(task.check(p, c.text).correct),
                tokens=len(c.token_ids),
                flops=sequence_flops(cfg, plen, len(c.token_ids)),
            )
            for c in g.completions
        ]
        attempts.append(Attempt(p, plen, cfg.prefill_flops(plen), samples))
    return attempts, Cost.of(res)


def _sample(a: Attempt, n: int, task) -> Solution:
    head = a.samples[:n]
    good = sum(s.correct for s in head)
    return Solution(a.problem.id, head[0].answer if head else None, good / max(1, len(head)), len(head), good)


def _majority(a: Attempt, n: int, task) -> Solution:
    head = a.samples[:n]
    v = majority_vote([s.answer for s in head], task.equivalent)
    return _chosen(a, head, v.index)


def _best_of_n(a: Attempt, n: int, task) -> Solution:
    head = a.samples[:n]
    return _chosen(a, head, best_index([s.score for s in head]))


def _weighted(a: Attempt, n: int, task) -> Solution:
    head = a.samples[:n]
    v = weighted_vote([s.answer for s in head], task.equivalent, [s.score for s in head])
    return _chosen(a, head, v.index)


def _chosen(a: Attempt, head: list[Sample], i: int | None) -> Solution:
    good = sum(s.correct for s in head)
    if i is None:  # no sample had an answer: nothing to submit
        return Solution(a.problem.id, None, 0.0, len(head), good)
    return Solution(a.problem.id, head[i].answer, float(head[i].correct), len(head), good)


SELECTORS: dict[str, Callable[[Attempt, int, object], Solution]] = {
    "sample": _sample,
    "majority": _majority,
    "best-of-n": _best_of_n,
    "weighted": _weighted,
}
NEEDS_SCORES = {"best-of-n", "weighted"}


def select(attempts: Sequence[Attempt], n: int, how: str, task, prefix_kv_bytes: int = 0) -> SolveResult:
    """Apply a selector to the first n samples of each attempt; cost = prompt once + n decodes.

    `prefix_kv_bytes` is the drawing call's shared-prompt cache (it does not depend on n)."""
    sols = [SELECTORS[how](a, n, task) for a in attempts]
    cost = sum((a.cost(n) for a in attempts), Cost(prefix_kv_bytes=prefix_kv_bytes))
    return SolveResult(sols, cost)


@dataclass
class SampledStrategy:
    """Draw n samples per problem and choose among them (the `Strategy` interface)."""

    engine: Engine
    task: object
    name: str = "majority"  # a key of SELECTORS
    params: SamplingParams = field(default_factory=SamplingParams)
    verifier: str = "functional"
    reward_model: object = None
    aggregation: str = "min"

    def draw(self, problems: Sequence[Problem], n: int, progress=None) -> tuple[list[Attempt], Cost]:
        """n scored samples per problem and the engine call's cost."""
        attempts, cost = draw(self.engine, self.task, problems, n, self.params, progress)
        if self.name in NEEDS_SCORES:
            score_attempts(attempts, self.task, self.verifier, self.reward_model, self.aggregation)
        return attempts, cost

    def solve(self, problems: Sequence[Problem], n: int) -> SolveResult:
        attempts, cost = self.draw(problems, n)
        return select(attempts, n, self.name, self.task, cost.prefix_kv_bytes)
