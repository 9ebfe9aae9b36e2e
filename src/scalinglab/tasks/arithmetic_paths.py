"""Sums of several numbers whose worked solutions take different routes to one answer.

The model sees (prompt, then one worked completion it is trained on):

    7+1+6+2=?
    7+6=13
    13+1=14
    14+2=16
    A: 16

The solution adds the terms one at a time, keeping a running total, in an ORDER drawn at
random per example (`route`, a permutation of the terms: 4 terms give 4! = 24 routes, whose
running totals differ), so the same problem has many valid worked solutions. Every route
ends in the same `A: <integer>` line, checked like `arithmetic`. Defaults: 4 terms of
`difficulty` = 1 digit. `one_route=True` is the control: always left to right, one
canonical chain of thought per problem like `arithmetic` (same problems, same checker).

Why this task exists: self-consistency (Wang et al. 2023, "Self-Consistency Improves Chain
of Thought Reasoning in Language Models") marginalises over diverse reasoning paths and
gains only when the paths' errors are not the same error. `arithmetic` has ONE chain of
thought per problem, so a small model's mistakes are systematic and greedy is already the
mode of its samples (docs/testtime.md: majority@16 ≈ greedy). A model trained here samples
many routes; a slip in one route's running total (`13+1=15`) does not occur on routes that
never compute it, so wrong answers scatter while the right one collects the votes.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import permutations

from scalinglab.tasks.arithmetic import IntegerAnswer
from scalinglab.tasks.base import Problem


def route_steps(terms: tuple[int, ...], route: tuple[int, ...]) -> list[str]:
    """Running-sum lines adding `terms` in the order of the indices in `route`."""
    total = terms[route[0]]
    steps = []
    for i in route[1:]:
        steps.append(f"{total}+{terms[i]}={total + terms[i]}")
        total += terms[i]
    return steps


@dataclass(frozen=True)
class ArithmeticPaths(IntegerAnswer):
    """Sum of `terms` numbers of `difficulty` digits; each worked solution follows a random order."""

    terms: int = 4
    default_difficulty: int = 1
    name: str = "arithmetic-paths"
    stop: tuple[str, ...] = ()
    one_route: bool = False  # the control: always add left to right (a single path, like `arithmetic`)

    def routes(self) -> list[tuple[int, ...]]:
        """Every order of the terms (the routes a worked solution can take)."""
        return list(permutations(range(self.terms)))

    def make(self, terms: tuple[int, ...], route: tuple[int, ...] | None = None, id: str = "") -> Problem:
        terms = tuple(int(t) for t in terms)
        route = tuple(route) if route is not None else tuple(range(len(terms)))
        if sorted(route) != list(range(len(terms))):
            raise ValueError(f"route {route} is not an order of {len(terms)} terms")
        answer = sum(terms)
        steps = tuple(s + "\n" for s in route_steps(terms, route)) + (f"A: {answer}\n",)
        expr = "+".join(map(str, terms))
        return Problem(
            id=id or expr,
            task=self.name,
            prompt=f"{expr}=?\n",
            answer=str(answer),
            solution="".join(steps),
            steps=steps,
            meta={"terms": list(terms), "route": list(route)},
        )

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        digits = difficulty or self.default_difficulty
        rng = random.Random(f"{self.name}:{self.terms}:{digits}:{seed}")
        lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
        routes = self.routes()
        out = []
        for i in range(n):
            terms = tuple(rng.randint(lo, hi) for _ in range(self.terms))
            route = rng.choice(routes)  # drawn even for one_route, so both variants pose the same problems
            out.append(self.make(terms, None if self.one_route else route, id=f"{self.name}-s{seed}-{i}"))
        return out

    def first_pair(self, problem: Problem, completion: str) -> tuple[int, int] | None:
        """Indices of the two terms a completion adds first (which route it took), or None."""
        terms = list(problem.meta.get("terms") or ())
        m = re.match(r"\s*(\d+)\+(\d+)=", completion)
        if not m:
            return None
        x, y = int(m.group(1)), int(m.group(2))
        if x not in terms or y not in terms:
            return None
        i = terms.index(x)
        j = next((k for k, t in enumerate(terms) if t == y and k != i), None)
        return None if j is None else (i, j)
