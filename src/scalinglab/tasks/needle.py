"""Needle in a haystack: retrieve the value of one key from a long list of key=value facts.

The model sees (prompt, then the worked completion it is trained on):

    qvk=3071
    bmd=5542
    rtz=0918
    bmd?
    bmd=5542
    A: 5542

The context is `key=value` lines (keys: 3 distinct lowercase letters; values: 4 digits,
9 characters a line). Every line but one is a distractor; the question line `key?` asks
for the planted fact, whose position is uniform over the context (`meta["depth"]`: 0.0 is
the first line, 1.0 the last). The worked completion copies the matching line (the
retrieval step) and answers the value. Difficulty is the context length in characters
(default 128, i.e. 14 lines; rounded down to whole lines, at least one): the knob for
long-context data, and a workload whose KV cache grows with the context.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from scalinglab.tasks.base import Problem
from scalinglab.verify.verdict import Verdict

_ANSWER = re.compile(r"A:[ \t]*([^\n]*)")
_LINE_CHARS = 9  # "abc=1234\n"
_MAX_LINES = 26**3


@dataclass(frozen=True)
class Needle:
    """Key-value retrieval from a `difficulty`-character context."""

    default_difficulty: int = 128
    name: str = "needle"
    stop: tuple[str, ...] = ()

    def make(self, facts: list[tuple[str, str]], ask: int, id: str = "") -> Problem:
        key, value = facts[ask]
        context = "".join(f"{k}={v}\n" for k, v in facts)
        steps = (f"{key}={value}\n", f"A: {value}\n")
        depth = ask / (len(facts) - 1) if len(facts) > 1 else 0.0
        return Problem(
            id=id or f"{key}@{ask}",
            task=self.name,
            prompt=f"{context}{key}?\n",
            answer=value,
            solution="".join(steps),
            steps=steps,
            meta={"key": key, "position": ask, "depth": round(depth, 4), "context_chars": len(context)},
        )

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        chars = difficulty or self.default_difficulty
        lines = max(1, chars // _LINE_CHARS)
        if lines > _MAX_LINES:
            raise ValueError(f"needle context of {chars} characters needs more than {_MAX_LINES} distinct keys")
        rng = random.Random(f"{self.name}:{lines}:{seed}")
        out = []
        for i in range(n):
            keys: set[str] = set()
            while len(keys) < lines:
                keys.add("".join(rng.choices(string.ascii_lowercase, k=3)))
            order = sorted(keys)
            rng.shuffle(order)
            facts = [(k, f"{rng.randrange(10_000):04d}") for k in order]
            out.append(self.make(facts, rng.randrange(lines), id=f"{self.name}-s{seed}-{i}"))
        return out

    def extract_answer(self, completion: str) -> str | None:
        m = _ANSWER.findall(completion)
        return m[-1].strip() if m else None

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = self.extract_answer(completion)
        if got is None:
            return Verdict.wrong("no 'A: <value>' answer line")
        if got == problem.answer.strip():
            return Verdict.right()
        return Verdict.wrong(f"answered {got!r}, expected {problem.answer!r}")

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        return a.strip() == b.strip()
