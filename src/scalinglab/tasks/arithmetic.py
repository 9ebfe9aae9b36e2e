"""Multi-digit addition, subtraction and multiplication with a written chain of thought.

The model sees (prompt, then the worked completion it is trained on):

    47+85=?
    7+5+0=12
    4+8+1=13
    A: 132

Addition works column by column from the right, carrying; subtraction borrows
(`14-8-1=5` means "borrowed ten, subtracted 8 and the borrow"); multiplication writes one
partial product per digit of the second number, then their sum. The last line is always
`A: <integer>`. Difficulty is the number of digits of each operand (default 2).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from scalinglab.tasks.base import Problem
from scalinglab.verify.verdict import Verdict

_ANSWER = re.compile(r"A:\s*(-?\d+)")


def _add_steps(a: int, b: int) -> list[str]:
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s}")
        carry = s // 10
    return steps


def _sub_steps(a: int, b: int) -> list[str]:
    steps = []
    if a < b:
        steps.append(f"{a}<{b}: -({b}-{a})")
        a, b = b, a
    da, db = str(a)[::-1], str(b)[::-1]
    borrow = 0
    for i in range(len(da)):
        x = int(da[i])
        y = int(db[i]) if i < len(db) else 0
        if x - y - borrow < 0:
            steps.append(f"1{x}-{y}-{borrow}={10 + x - y - borrow}")
            borrow = 1
        else:
            steps.append(f"{x}-{y}-{borrow}={x - y - borrow}")
            borrow = 0
    return steps


def _mul_steps(a: int, b: int) -> list[str]:
    steps, partials = [], []
    for i, d in enumerate(str(b)[::-1]):
        p = a * int(d) * 10**i
        steps.append(f"{a}*{int(d) * 10**i}={p}")
        partials.append(p)
    if len(partials) > 1:
        steps.append("+".join(map(str, partials)) + f"={sum(partials)}")
    return steps


_OPS = {
    "+": (lambda a, b: a + b, _add_steps),
    "-": (lambda a, b: a - b, _sub_steps),
    "*": (lambda a, b: a * b, _mul_steps),
}


class IntegerAnswer:
    """Answer handling for tasks whose worked solutions end in `A: <integer>`, one step per line."""

    def extract_answer(self, completion: str) -> str | None:
        m = _ANSWER.findall(completion)
        return m[-1] if m else None

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = self.extract_answer(completion)
        if got is None:
            return Verdict.wrong("no 'A: <integer>' answer line")
        if int(got) == int(problem.answer):
            return Verdict.right()
        return Verdict.wrong(f"answered {got}, expected {problem.answer}")

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        try:
            return int(a) == int(b)
        except ValueError:
            return a.strip() == b.strip()


@dataclass(frozen=True)
class Arithmetic(IntegerAnswer):
    """Integer arithmetic on `difficulty`-digit operands with operators from `ops`."""

    ops: str = "+-"
    default_difficulty: int = 2
    name: str = "arithmetic"
    stop: tuple[str, ...] = ()

    def make(self, a: int, op: str, b: int, id: str = "") -> Problem:
        fn, steps_fn = _OPS[op]
        answer = fn(a, b)
        steps = tuple(s + "\n" for s in steps_fn(a, b)) + (f"A: {answer}\n",)
        return Problem(
            id=id or f"{a}{op}{b}",
            task=self.name,
            prompt=f"{a}{op}{b}=?\n",
            answer=str(answer),
            solution="".join(steps),
            steps=steps,
            meta={"a": a, "b": b, "op": op},
        )

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        digits = difficulty or self.default_difficulty
        rng = random.Random(f"{self.name}:{self.ops}:{digits}:{seed}")
        lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
        out = []
        for i in range(n):
            op = rng.choice(self.ops)
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            out.append(self.make(a, op, b, id=f"{self.name}-s{seed}-{i}"))
        return out
