"""Code: write a small Python function from a description; judged on hidden test cases.

The model sees (prompt, then the worked completion it is trained on):

    # add 3, times 2, mod 7
    def f(x):
        x=x+3
        x=x*2
        x=x%7
        return x

The prompt is one comment line naming the operations, applied in order to an integer
`x`; the completion is the whole function, one operation per line, ending in
`return x` (no `A:` line: the program is the answer). Difficulty is the number of
operations (default 2). Each problem carries hidden test cases in
`meta["cases"]` as `{"input": [args...], "output": expected}` (`n_cases` distinct inputs in -20..20,
including 0), and `meta["entry_point"]` (`f`); `answer` is the reference program.

`check` runs the candidate in the code sandbox (`scalinglab.verify.code.judge`,
imported only when a check happens) and returns its verdict; outputs are compared in the
trusted parent, never by the program. Any JSONL problem with `meta.entry_point` and
`meta.cases` can be judged the same way (bring your own code problems).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from scalinglab.tasks.base import Problem
from scalinglab.verify.verdict import Verdict

# name -> (description, line of code, function); `k` is the operation's constant.
_OPS = {
    "add": ("add {k}", "x=x+{k}", lambda x, k: x + k),
    "sub": ("minus {k}", "x=x-{k}", lambda x, k: x - k),
    "mul": ("times {k}", "x=x*{k}", lambda x, k: x * k),
    "div": ("floor div {k}", "x=x//{k}", lambda x, k: x // k),
    "mod": ("mod {k}", "x=x%{k}", lambda x, k: x % k),
    "square": ("square", "x=x*x", lambda x, k: x * x),
    "neg": ("negate", "x=-x", lambda x, k: -x),
    "abs": ("abs", "x=abs(x)", lambda x, k: abs(x)),
    "max": ("at least {k}", "x=max(x,{k})", lambda x, k: max(x, k)),
}
_CODE_START = ("def ", "class ", "import ", "from ", "@")
_FENCE = re.compile(r"```(?:python|py)?\n(.*?)```", re.DOTALL)


def extract_program(completion: str) -> str | None:
    """The program in a completion: the last ```python block, else the code from the first
    top-level `def`/`import` line up to the first line of prose after it."""
    fenced = _FENCE.findall(completion)
    if fenced:
        return fenced[-1].rstrip() + "\n"
    lines = completion.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(_CODE_START)), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t" or lines[end].startswith(_CODE_START)):
        end += 1
    program = "\n".join(lines[start:end]).rstrip() + "\n"
    return program if "def " in program else None


@dataclass(frozen=True)
class Code:
    """Integer pipelines of `difficulty` operations, written as `def f(x)`."""

    default_difficulty: int = 2
    n_cases: int = 8
    timeout_s: float = 5.0  # the sandbox's wall-time limit per program
    name: str = "code"
    stop: tuple[str, ...] = ("\n\n",)

    def make(self, ops: list[tuple[str, int]], id: str = "", inputs: list[int] | None = None) -> Problem:
        desc = ", ".join(_OPS[op][0].format(k=k) for op, k in ops)
        body = [_OPS[op][1].format(k=k) for op, k in ops]
        lines = ["def f(x):"] + ["    " + b for b in body] + ["    return x"]
        steps = tuple(line + "\n" for line in lines)
        cases = []
        for x in inputs if inputs is not None else list(range(-3, 5)):
            y = x
            for op, k in ops:
                y = _OPS[op][2](y, k)
            cases.append({"input": [x], "output": y})
        program = "".join(steps)
        return Problem(
            id=id or desc,
            task=self.name,
            prompt=f"# {desc}\n",
            answer=program,
            solution=program,
            steps=steps,
            meta={"entry_point": "f", "cases": cases, "ops": [list(o) for o in ops]},
        )

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        k_ops = difficulty or self.default_difficulty
        if k_ops < 1:
            raise ValueError(f"code difficulty is the number of operations, at least 1; got {k_ops}")
        rng = random.Random(f"{self.name}:{k_ops}:{self.n_cases}:{seed}")
        names = sorted(_OPS)
        out = []
        for i in range(n):
            ops = []
            for _ in range(k_ops):
                op = rng.choice(names)
                ops.append((op, rng.randint(2, 9)))
            inputs = sorted([0] + rng.sample([v for v in range(-20, 21) if v != 0], self.n_cases - 1))
            out.append(self.make(ops, id=f"{self.name}-s{seed}-{i}", inputs=inputs))
        return out

    def extract_answer(self, completion: str) -> str | None:
        return extract_program(completion)

    def check(self, problem: Problem, completion: str) -> Verdict:
        program = self.extract_answer(completion)
        if program is None:
            return Verdict.wrong("no function definition in the completion")
        cases, entry = problem.meta.get("cases"), problem.meta.get("entry_point")
        if not cases or not entry:
            return Verdict.failed(f"problem {problem.id!r} has no meta.cases / meta.entry_point to test against")
        try:
            from scalinglab.verify.code import judge
        except ImportError as e:
            return Verdict.failed(f"code sandbox unavailable: {e}")
        return judge(program, entry, cases, timeout_s=self.timeout_s).to_verdict()

    def split_steps(self, completion: str) -> list[str]:
        return code_steps(completion)

    def equivalent(self, a: str, b: str) -> bool:
        return same_code(a, b)


def code_steps(completion: str) -> list[str]:
    """A program's reasoning steps for a PRM: its non-blank lines."""
    return [line + "\n" for line in completion.split("\n") if line.strip()]


def same_code(a: str, b: str) -> bool:
    """Same program text up to blank lines and trailing spaces (behaviour is not compared)."""

    def norm(s: str) -> list[str]:
        return [line.rstrip() for line in s.split("\n") if line.strip()]

    return norm(a) == norm(b)
