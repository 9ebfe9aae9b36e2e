"""Countdown: reach a target from given numbers with + - * /, answered as an expression.

The model sees (prompt, then the worked completion it is trained on):

    25 3 7 50>182
    50*3=150
    25+7=32
    150+32=182
    A: 50*3+25+7

(each step writes the larger number first).

The prompt lists the numbers, then `>` and the target. Each step combines two available
numbers (given, or made by an earlier step) into a new one; the last line is
`A: <expression>`. Rules, as in the TV game: each given number is used AT MOST ONCE
(set `use_all=True` to demand exactly once, the TinyZero variant); only + - * / and
parentheses; no unary minus, no other digits. Intermediate values may be any rational
(the check evaluates with exact `Fraction`s), only the final value must equal the target.

Checking is safe: the expression is parsed with `ast` and only integer literals, the four
binary operators and parentheses are accepted (no names, calls, attributes, powers); it
is evaluated exactly; a division by zero is a wrong answer. An answer line of the form
`expr=target` is judged on `expr`.

Worked solutions come from `solve`, an exhaustive search over pairs that returns a
solution with the fewest steps (so it may use fewer numbers than the generator did).
Difficulty is how many numbers are given (default 4, 2 to 6); targets are built by
combining all of them, so every problem is solvable.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from scalinglab.tasks.base import Problem
from scalinglab.verify.verdict import Verdict

_ANSWER = re.compile(r"A:[ \t]*([^\n]*)")
_MAX_EXPR_CHARS = 200
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_AST_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def evaluate(expr: str) -> tuple[Fraction, list[int]]:
    """Value and the integer literals of a +-*/ expression; ValueError if anything else."""
    if len(expr) > _MAX_EXPR_CHARS:
        raise ValueError(f"expression longer than {_MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an expression: {expr!r}") from None
    used: list[int] = []

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _AST_OPS:
            a, b = ev(node.left), ev(node.right)
            r = _apply(_AST_OPS[type(node.op)], a, b)
            if r is None:
                raise ValueError("divides by zero")
            return r
        raise ValueError(f"only numbers, + - * / and parentheses are allowed, found {type(node).__name__}")

    return ev(tree.body), used


def _expr(node) -> tuple[str, int]:
    """Render a (value, op, left, right) tree with only the parentheses it needs."""
    if isinstance(node, int):
        return str(node), 3
    _, op, left, right = node
    ls, lp = _expr(left)
    rs, rp = _expr(right)
    p = _PREC[op]
    if lp < p:
        ls = f"({ls})"
    # The right operand of - and / needs brackets at equal precedence: a-(b+c), a/(b*c).
    if rp < p or (rp == p and op in "-/"):
        rs = f"({rs})"
    return f"{ls}{op}{rs}", p


@lru_cache(maxsize=4096)
def solve(numbers: tuple[int, ...], target: int, use_all: bool = False) -> tuple | int | None:
    """A fewest-steps solution tree `(value, op, left, right)`, a bare int, or None.

    Searches positive-integer intermediates first (the game's rule, and far faster), then
    falls back to exact rationals, which finds solutions like 8/(3-8/3)=24.
    """
    if not use_all and target in numbers:
        return target
    if use_all and len(numbers) == 1:
        return numbers[0] if numbers[0] == target else None
    for integers in (True, False):
        start = [(Fraction(n), n) for n in numbers]
        depths = [len(numbers) - 1] if use_all else range(1, len(numbers))
        for depth in depths:
            found = _search(start, Fraction(target), depth, use_all, set(), integers)
            if found is not None:
                return found
    return None


def _moves(a: Fraction, b: Fraction, integers: bool):
    """(op, result, swap) for combining a and b; swap means the tree reads b op a."""
    if integers:  # positive integers only; the larger operand is always written first
        hi, lo, swap = (a, b, False) if a >= b else (b, a, True)
        yield "+", a + b, swap
        yield "*", a * b, swap
        if hi > lo:
            yield "-", hi - lo, swap
        if lo > 0 and hi % lo == 0:
            yield "/", hi / lo, swap
        return
    yield "+", a + b, False
    yield "*", a * b, False
    yield "-", a - b, False
    yield "-", b - a, True
    if b != 0:
        yield "/", a / b, False
    if a != 0:
        yield "/", b / a, True


def _search(items: list, goal: Fraction, steps_left: int, use_all: bool, dead: set, integers: bool):
    # `dead` holds multisets of values already shown to miss the goal in this many steps:
    # many orders of combining reach the same multiset (the search stays exhaustive).
    key = (tuple(sorted(v for v, _ in items)), steps_left)
    if steps_left == 0 or key in dead:
        return None
    n = len(items)
    for i in range(n):
        for j in range(i + 1, n):
            (a, ta), (b, tb) = items[i], items[j]
            for op, r, swap in _moves(a, b, integers):
                node = (r, op, tb, ta) if swap else (r, op, ta, tb)
                if r == goal and (not use_all or n == 2):
                    return node
                rest = [items[k] for k in range(n) if k != i and k != j] + [(r, node)]
                found = _search(rest, goal, steps_left - 1, use_all, dead, integers)
                if found is not None:
                    return found
    dead.add(key)
    return None


def steps_of(node) -> list[str]:
    """One line per combination, innermost first: `50*3=150`."""
    if isinstance(node, int):
        return []
    value, op, left, right = node
    lines = steps_of(left) + steps_of(right)
    lv = left if isinstance(left, int) else left[0]
    rv = right if isinstance(right, int) else right[0]
    return lines + [f"{lv}{op}{rv}={value}"]


@dataclass(frozen=True)
class Countdown:
    """Countdown with `difficulty` given numbers from 1..`max_number`."""

    default_difficulty: int = 4
    max_number: int = 25
    use_all: bool = False
    name: str = "countdown"
    stop: tuple[str, ...] = ()

    def make(self, numbers: list[int], target: int, id: str = "") -> Problem:
        tree = solve(tuple(numbers), target, self.use_all)
        if tree is None:
            raise ValueError(f"no solution for {numbers} -> {target}")
        answer = _expr(tree)[0]
        steps = tuple(s + "\n" for s in steps_of(tree)) + (f"A: {answer}\n",)
        return Problem(
            id=id or f"{'-'.join(map(str, numbers))}>{target}",
            task=self.name,
            prompt=f"{' '.join(map(str, numbers))}>{target}\n",
            answer=answer,
            solution="".join(steps),
            steps=steps,
            meta={"numbers": list(numbers), "target": target, "use_all": self.use_all},
        )

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        k = difficulty or self.default_difficulty
        if not 2 <= k <= 6:
            raise ValueError(f"countdown difficulty is the count of numbers, 2 to 6; got {k}")
        rng = random.Random(f"{self.name}:{self.max_number}:{self.use_all}:{k}:{seed}")
        out = []
        while len(out) < n:
            numbers = [rng.randint(1, self.max_number) for _ in range(k)]
            target = self._random_target(rng, numbers)
            if target is None:
                continue
            out.append(self.make(numbers, target, id=f"{self.name}-s{seed}-{len(out)}"))
        return out

    @staticmethod
    def _random_target(rng: random.Random, numbers: list[int]) -> int | None:
        # Combine all numbers in a random order with random operators, keeping every
        # intermediate a positive integer (so the problem reads like the game).
        pool = list(numbers)
        while len(pool) > 1:
            a, b = pool.pop(rng.randrange(len(pool))), pool.pop(rng.randrange(len(pool)))
            a, b = max(a, b), min(a, b)
            choices = [a + b, a * b] + ([a - b] if a > b else []) + ([a // b] if b > 1 and a % b == 0 else [])
            pool.append(rng.choice(choices))
        t = pool[0]
        return t if 1 <= t <= 999 and t not in numbers else None

    def extract_answer(self, completion: str) -> str | None:
        m = _ANSWER.findall(completion)
        if not m:
            return None
        ans = m[-1].strip()
        return ans.split("=")[0].strip() if "=" in ans else ans

    def _judge(self, problem: Problem, expr: str) -> Verdict:
        try:
            value, used = evaluate(expr)
        except ValueError as e:
            return Verdict.wrong(f"bad expression {expr!r}: {e}")
        given = Counter(int(x) for x in problem.meta["numbers"])
        extra = Counter(used) - given
        if extra:
            return Verdict.wrong(f"uses numbers not available: {sorted(extra.elements())}")
        if problem.meta.get("use_all", self.use_all) and Counter(used) != given:
            return Verdict.wrong(
                f"must use every number exactly once; unused: {sorted((given - Counter(used)).elements())}"
            )
        target = int(problem.meta["target"])
        if value != target:
            return Verdict.wrong(f"{expr} = {value}, target {target}")
        return Verdict.right()

    def check(self, problem: Problem, completion: str) -> Verdict:
        expr = self.extract_answer(completion)
        if expr is None:
            return Verdict.wrong("no 'A: <expression>' answer line")
        return self._judge(problem, expr)

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        """Same value from the same multiset of numbers (e.g. `3*4+2` and `2+4*3`)."""
        try:
            va, ua = evaluate(a)
            vb, ub = evaluate(b)
        except ValueError:
            return a.strip() == b.strip()
        return va == vb and sorted(ua) == sorted(ub)
