"""Budget control: cap the chain of thought at B tokens, then force the answer.

The "budget forcing" of Muennighoff et al. 2025 ("s1: Simple test-time scaling"), cap side
only: decode at most B thinking tokens; a completion that has not answered by then (or that
stopped without an answer) is cut back to its last complete line and the answer prefix
(`A: ` for the built-in tasks, `task.answer_prefix` when a task defines one) is appended;
a short greedy decode after it yields the forced answer. Sweeping B traces accuracy
against reasoning length. B = 0 asks for the answer straight away.

Deviation from s1: we do not extend thinking by suppressing the end (appending "Wait"); the
built-in tasks have fixed-length solutions. Cost: the forced decode is a second engine call
that prefills prompt + thinking again (no cross-call KV reuse); both calls are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from scalinglab.engine import Engine, SamplingParams
from scalinglab.tasks.base import Problem
from scalinglab.testtime.base import Cost, Solution, SolveResult


def answer_prefix(task) -> str:
    return getattr(task, "answer_prefix", "A: ")


def _answered(task, text: str, finish_reason: str) -> bool:
    # An answer line cut by the budget ("A: 13" of 132) is not an answer: require a finished sample.
    return finish_reason != "length" and task.extract_answer(text) is not None


def _thinking_kept(text: str) -> str:
    """The thinking up to its last complete line (a half-written line is dropped)."""
    cut = text.rfind("\n")
    return text[: cut + 1] if cut >= 0 else ""


@dataclass
class BudgetStrategy:
    """`solve(problems, budget)`: think at most `budget` tokens, then answer."""

    engine: Engine
    task: object
    params: SamplingParams = field(default_factory=lambda: SamplingParams(greedy=True))
    answer_tokens: int = 16  # room for the forced answer line
    name: str = "budget"

    def solve(self, problems: Sequence[Problem], n: int) -> SolveResult:
        budget, task, cost = int(n), self.task, Cost()
        texts = [""] * len(problems)
        reasons = ["length"] * len(problems)
        if budget > 0:
            res = self.engine.generate(
                [p.prompt for p in problems], replace(self.params, n=1, max_new_tokens=budget, stop=tuple(task.stop))
            )
            cost += Cost.of(res)
            texts = [g.completions[0].text for g in res.generations]
            reasons = [g.completions[0].finish_reason for g in res.generations]
        final = list(texts)
        force = [i for i in range(len(problems)) if not _answered(task, texts[i], reasons[i])]
        if force:
            heads = [_thinking_kept(texts[i]) + answer_prefix(task) for i in force]
            res = self.engine.generate(
                [problems[i].prompt + h for i, h in zip(force, heads)],
                SamplingParams(n=1, greedy=True, max_new_tokens=self.answer_tokens, stop=("\n",)),
            )
            cost += Cost.of(res)
            for i, h, g in zip(force, heads, res.generations):
                final[i] = h + g.completions[0].text
        sols = []
        for p, text in zip(problems, final):
            ok = bool(task.check(p, text).correct)
            sols.append(Solution(p.id, task.extract_answer(text), float(ok), 1, int(ok)))
        return SolveResult(sols, cost)
