"""Math word problems from a user's JSONL file (GSM8K style), judged by the math verifier.

A line of the file needs only `prompt` and `answer`; `id`, `solution`, `steps` and
`meta` are optional (the JSONL format of DESIGN.md). For example:

    {"id": "g1", "prompt": "Tom has 3 boxes of 4 pens. How many pens?\\n", "answer": "12"}

and a worked completion the model could be trained on:

    3*4=12
    A: 12

GSM8K's own format, an `answer` holding the worked solution ending `#### 12`, is split on
load: the text before `####` becomes `solution` (with `A: 12` appended) and `answer`
becomes `12`. Completions are judged with `scalinglab.verify.math` (last `\\boxed{}`,
`A:`/`Answer:` lines, or the last number; equivalence by math-verify + SymPy in worker
processes with a hard timeout, so `0.5`, `1/2` and `\\frac{1}{2}` agree). A timeout is a
verifier error (`Verdict.error`), not a wrong answer.

`generate(n, seed)` draws n problems from the file in a seeded order, without
replacement; `difficulty`, when given, keeps problems whose `meta.difficulty` (or
`meta.level`) equals it. With no file (`MathFile()`), the task still judges problems
passed in by the caller (e.g. `eval --problems FILE`) but cannot generate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem, load_problems, seeded_subset
from scalinglab.verify.answer import extract_answer
from scalinglab.verify.verdict import Verdict

_GSM8K = re.compile(r"\n?####\s*(.+?)\s*$", re.DOTALL)


def normalise(p: Problem) -> Problem:
    """Split a GSM8K-style `answer` ('...#### 72') into solution and final answer."""
    m = _GSM8K.search(p.answer)
    if not m:
        return p
    final = m.group(1).replace(",", "").strip()
    work = p.answer[: m.start()].strip()
    solution = p.solution if p.solution is not None else (work + "\n" if work else "") + f"A: {final}\n"
    return replace(p, answer=final, solution=solution)


@dataclass(frozen=True)
class MathFile:
    """Problems with free-form numeric/LaTeX answers read from `path` (JSONL)."""

    path: str | None = None
    timeout_s: float = 5.0  # hard limit per verification
    name: str = "math"
    stop: tuple[str, ...] = ()

    def load(self) -> list[Problem]:
        if self.path is None:
            raise UserError(f"task {self.name!r} reads its problems from a JSONL file: pass one (e.g. --problems FILE)")
        return [normalise(p) for p in load_problems(self.path, default_task=self.name)]

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        problems = self.load()
        if difficulty is not None:
            problems = [p for p in problems if str(p.meta.get("difficulty", p.meta.get("level"))) == str(difficulty)]
        return seeded_subset(
            problems,
            n,
            f"{self.name}:{self.path}:{difficulty}:{seed}",
            str(self.path),
            f"at difficulty {difficulty}" if difficulty is not None else "",
        )

    def extract_answer(self, completion: str) -> str | None:
        return extract_answer(completion)

    def check(self, problem: Problem, completion: str) -> Verdict:
        return self.check_batch([problem], [completion])[0]

    def check_batch(self, problems: list[Problem], completions: list[str]) -> list[Verdict]:
        """Judge many completions at once, spread over the verifier's worker pool."""
        from scalinglab.verify.math import verify_batch

        verdicts: list[Verdict | None] = [None] * len(problems)
        todo = []
        for i, c in enumerate(completions):
            if self.extract_answer(c) is None:
                verdicts[i] = Verdict.wrong("no answer found in the completion")
            else:
                todo.append(i)
        judged = verify_batch([(completions[i], problems[i].answer) for i in todo], timeout_s=self.timeout_s)
        for i, v in zip(todo, judged):
            verdicts[i] = v
        return verdicts  # type: ignore[return-value]

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        from scalinglab.verify.math import equivalent

        return equivalent(a, b, self.timeout_s)
