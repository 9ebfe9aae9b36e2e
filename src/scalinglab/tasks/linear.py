"""Linear equations a*x+b=c*x+d, solved for x; exact rational answers.

The model sees (prompt, then the worked completion it is trained on):

    3x+5=-1x+2
    3x+1x=2-5
    4x=-3
    x=-3/4
    A: -3/4

Every coefficient is written, including 1 (`1x`, `-1x`), so the format never varies.
Steps: move the x term to the left and the constant to the right (signs flipped), collect
both sides, divide; the `x=p/q` line is left out when q is 1. The answer is the reduced
fraction (`str(Fraction)`: `-3/4`, `2`); the check accepts any equal rational, including
`-0.75` and `6/-8`. Difficulty is the number of digits of the coefficients (default 1:
a, b, c, d in -9..9, a != c, a and c nonzero).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

from scalinglab.tasks.base import Problem
from scalinglab.verify.verdict import Verdict

_ANSWER = re.compile(r"A:[ \t]*([^\n]*)")
_RATIONAL = re.compile(r"^[+-]?\d+(?:\.\d+)?(?:/[+-]?\d+)?$")


def parse_rational(s: str) -> Fraction | None:
    s = s.strip().replace(" ", "")
    if s.startswith("x="):
        s = s[2:]
    if not _RATIONAL.match(s):
        return None
    num, _, den = s.partition("/")
    try:
        return Fraction(num) / Fraction(den) if den else Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None


def _signed(n: int) -> str:
    return f"{n:+d}"


@dataclass(frozen=True)
class Linear:
    """a*x+b=c*x+d with `difficulty`-digit integer coefficients."""

    default_difficulty: int = 1
    name: str = "linear"
    stop: tuple[str, ...] = ()

    def make(self, a: int, b: int, c: int, d: int, id: str = "") -> Problem:
        if a == c:
            raise ValueError("a == c: no unique solution")
        k, m = a - c, d - b
        x = Fraction(m, k)
        lines = [f"{a}x{_signed(-c)}x={d}{_signed(-b)}", f"{k}x={m}"]
        if x.denominator != 1 or k != 1:
            lines.append(f"x={x}")
        lines.append(f"A: {x}")
        steps = tuple(s + "\n" for s in lines)
        prompt = f"{a}x{_signed(b)}={c}x{_signed(d)}\n"
        return Problem(
            id=id or prompt.strip(),
            task=self.name,
            prompt=prompt,
            answer=str(x),
            solution="".join(steps),
            steps=steps,
            meta={"a": a, "b": b, "c": c, "d": d},
        )

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        digits = difficulty or self.default_difficulty
        if digits < 1:
            raise ValueError(f"linear difficulty is the coefficient digits, at least 1; got {digits}")
        rng = random.Random(f"{self.name}:{digits}:{seed}")
        hi = 10**digits - 1
        nonzero = [v for v in range(-hi, hi + 1) if v != 0]
        out = []
        for i in range(n):
            a = rng.choice(nonzero)
            c = rng.choice([v for v in nonzero if v != a])
            b, d = rng.randint(-hi, hi), rng.randint(-hi, hi)
            out.append(self.make(a, b, c, d, id=f"{self.name}-s{seed}-{i}"))
        return out

    def extract_answer(self, completion: str) -> str | None:
        m = _ANSWER.findall(completion)
        return m[-1].strip() if m else None

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = self.extract_answer(completion)
        if got is None:
            return Verdict.wrong("no 'A: <number>' answer line")
        value = parse_rational(got)
        if value is None:
            return Verdict.wrong(f"not a rational number: {got!r}")
        if value == Fraction(problem.answer):
            return Verdict.right()
        return Verdict.wrong(f"answered {got}, expected {problem.answer}")

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        fa, fb = parse_rational(a), parse_rational(b)
        if fa is None or fb is None:
            return a.strip() == b.strip()
        return fa == fb
