"""GSM8K: grade-school math word problems (Cobbe et al., 2021), judged by the math verifier.

The model sees (prompt, then the worked completion it is trained on; test.jsonl line 1):

    Question: Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?
    Solve it step by step, then give the final answer on its own last line as "#### <number>".
    Janet sells 16 - 3 - 4 = 9 duck eggs a day.
    She makes 9 * 2 = $18 every day at the farmer’s market.
    #### 18

The prompt is `Question: <question>`, then the one-line instruction (it tells an instruct
model the answer form), each ending in a newline. The worked solution is GSM8K's own, with
its `<<16-3-4=9>>` calculator annotations removed, ending in GSM8K's `#### N` line; `answer`
is N without thousands commas (`2,125` -> `2125`). A BASE model gets `few_shot` first: three
worked examples in exactly this format, written for this file (no GSM8K problem, so no
train or test problem leaks into the prefix). Generation stops at `\\nQuestion:`.

Problems come from a JSONL file of `{"question", "answer"}` lines (GSM8K's format; lines
already in the project's format, with `prompt`, are read as they are): `GSM8K(path=FILE)`,
`eval --problems FILE`, or, without a file, `$SCALINGLAB_GSM8K_DIR/{train,test}.jsonl`,
else `../shared/data/gsm8k/` relative to the current directory (`split` picks the file;
default `test`). Held-out hygiene: ids are `gsm8k-<split>-<line>` (the 1-based line of the
file), and `meta["split"]` says `test` (evaluation) or `train`: the `split` setting when
given, else `train` for a file whose name contains "train", else `test` (an unnamed file is
treated as held out). `generate(n, seed)` draws n problems without replacement in a seeded
order; `difficulty`, when given, keeps the problems whose worked solution has exactly that
many reasoning lines (`meta["difficulty"]`; 2-4 for most of GSM8K).

Answer extraction (`extract_answer`): the span of `scalinglab.verify.answer` (the last
`\\boxed{}`, else the last `####` / `Answer:` / `A:` / `Final answer:` line or "the answer
is ...", else the last number of the text; a `####` line that does not start with a number
is a markdown heading and is skipped), then the number in it: `$`, `\\$`, thousands
commas, `%` and units dropped, the part after the last `=` when the span is an equation, the
first number of what is left (`$1,000` -> `1000`, `18.00` -> `18.00`, `The answer is 18.` ->
`18`, `\\boxed{18}`, `#### 18 eggs` -> `18`). A span with a LaTeX fraction is kept whole.
Equivalence is `scalinglab.verify.math` (`18.00` equals `18`; worker processes with a hard
timeout, a timeout is a verifier error); `check_batch` judges many at once.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from scalinglab.errors import UserError
from scalinglab.runs.store import read_jsonl
from scalinglab.tasks.base import Problem, seeded_subset
from scalinglab.verify.answer import extract_answer as answer_span
from scalinglab.verify.verdict import Verdict

INSTRUCTION = 'Solve it step by step, then give the final answer on its own last line as "#### <number>".'
SPLITS = ("train", "test")
DIR_ENV = "SCALINGLAB_GSM8K_DIR"
_CALC = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"\n?####\s*(.+?)\s*$", re.DOTALL)
_HEADER = re.compile(r"^[ \t]*####(?![ \t]*[-−$\\\d.]).*$", re.MULTILINE)  # a markdown heading, not an answer
_NUM = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")

FEW_SHOT = "".join(
    f"Question: {q}\n{INSTRUCTION}\n{s}\n\n"
    for q, s in [
        (
            "A baker makes 4 trays of 12 rolls. She sells all but 7 of them. How many rolls does she sell?",
            "She makes 4 * 12 = 48 rolls.\nShe sells 48 - 7 = 41 rolls.\n#### 41",
        ),
        (
            "Tom reads 15 pages a day for 6 days, then 20 pages on the seventh day. How many pages does he read that week?",
            "In the first 6 days he reads 15 * 6 = 90 pages.\nIn all he reads 90 + 20 = 110 pages.\n#### 110",
        ),
        (
            "A shirt costs $25 and is on sale for 20% off. How much do 3 shirts cost on sale, in dollars?",
            "The discount is 25 * 20 / 100 = $5.\nOne shirt costs 25 - 5 = $20.\nThree cost 3 * 20 = $60.\n#### 60",
        ),
    ]
)


def default_file(split: str) -> Path:
    """`$SCALINGLAB_GSM8K_DIR/<split>.jsonl`, else `../shared/data/gsm8k/<split>.jsonl`."""
    env = os.environ.get(DIR_ENV)
    if env:
        path = Path(env) / f"{split}.jsonl"
        if not path.exists():
            raise UserError(f"${DIR_ENV}={env}: no {split}.jsonl there; pass the file with --problems FILE")
        return path
    path = Path("..") / "shared" / "data" / "gsm8k" / f"{split}.jsonl"
    if not path.exists():
        raise UserError(
            f"task 'gsm8k': no GSM8K {split} file found (set ${DIR_ENV} to the folder of "
            "train.jsonl/test.jsonl, or pass the file with --problems FILE)"
        )
    return path


def split_of(path: str | os.PathLike, declared: str | None = None) -> str:
    """`declared` when given; else `train` for a file named like one, else `test` (held out)."""
    if declared is not None:
        return declared
    return "train" if "train" in Path(path).name.lower() else "test"


def number_in(span: str) -> str:
    """The number a GSM8K answer span states (`$1,000.` -> `1000`), or the span when none."""
    s = span.replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\,", "").replace("−", "-")
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    if "\\frac" in s:
        return s.strip()
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    m = _NUM.search(s)
    return m.group(0).replace(",", "") if m else span.strip()


def parse_row(row: dict, line: int, split: str, task: str = "gsm8k") -> Problem:
    """One GSM8K `{"question", "answer"}` line (or a line in the project's format) as a Problem."""
    if "prompt" in row:
        from scalinglab.tasks.math_file import normalise

        p = normalise(Problem.from_json({"id": f"{task}-{split}-{line}", **row}, default_task=task))
        return p if "split" in p.meta else replace(p, meta={**p.meta, "split": split})
    if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
        raise UserError(f"line {line}: a GSM8K line needs string fields 'question' and 'answer'")
    m = _FINAL.search(row["answer"])
    if not m:
        raise UserError(f"line {line}: the answer has no final '#### N' line")
    final = m.group(1).replace(",", "").strip()
    work = [ln.strip() for ln in _CALC.sub("", row["answer"][: m.start()]).split("\n") if ln.strip()]
    steps = tuple(ln + "\n" for ln in work) + (f"#### {final}\n",)
    return Problem(
        id=f"{task}-{split}-{line}",
        task=task,
        prompt=f"Question: {row['question'].strip()}\n{INSTRUCTION}\n",
        answer=final,
        solution="".join(steps),
        steps=steps,
        meta={"split": split, "line": line, "difficulty": len(work)},
    )


@functools.lru_cache(maxsize=8)
def _load(path: str, split: str, mtime_ns: int, task: str) -> tuple[Problem, ...]:
    out = []
    text = Path(path).read_text().splitlines()
    rows = read_jsonl(path)  # one clear error naming the file and line for bad JSON
    numbered = [i for i, ln in enumerate(text, 1) if ln.strip()]
    for line, row in zip(numbered, rows):
        try:
            out.append(parse_row(row, line, split, task))
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
    if not out:
        raise UserError(f"{path}: no problems in file")
    return tuple(out)


@dataclass(frozen=True)
class GSM8K:
    """GSM8K problems from `path` (JSONL) or from the default folder's `<split>.jsonl`."""

    path: str | None = None  # a JSONL file; None: the default folder (see the module docstring)
    split: str | None = None  # train | test: which default file, or what a given file holds (None: by its name)
    timeout_s: float = 5.0  # hard limit per verification (math verifier worker)
    name: str = "gsm8k"
    stop: tuple[str, ...] = ("\nQuestion:",)
    few_shot: ClassVar[str] = FEW_SHOT
    max_new_tokens: ClassVar[int] = 256  # the default answer room, as lm-eval-harness's gsm8k (max_gen_toks)

    def __post_init__(self):
        if self.split is not None and self.split not in SPLITS:
            raise UserError(f"gsm8k setting split={self.split!r}: expected train or test")

    def file(self) -> Path:
        return Path(self.path) if self.path is not None else default_file(self.split or "test")

    def load(self) -> list[Problem]:
        path = self.file()
        if not path.exists():
            raise UserError(f"{path}: no such file")
        return list(_load(str(path), split_of(path, self.split), path.stat().st_mtime_ns, self.name))

    def load_file(self, path: str | os.PathLike) -> list[Problem]:
        """The problems of a user's file (`--problems FILE`), split declared or by its name."""
        return GSM8K(path=str(path), split=self.split, timeout_s=self.timeout_s, name=self.name).load()

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        problems = self.load()
        if difficulty is not None:
            problems = [p for p in problems if p.meta.get("difficulty") == difficulty]
        return seeded_subset(
            problems,
            n,
            f"{self.name}:{split_of(self.file(), self.split)}:{difficulty}:{seed}",
            str(self.file()),
            f"with {difficulty} solution lines" if difficulty is not None else "",
        )

    def extract_answer(self, completion: str) -> str | None:
        span = answer_span(_HEADER.sub("", completion))
        return None if span is None or not span.strip() else number_in(span)

    def check(self, problem: Problem, completion: str) -> Verdict:
        return self.check_batch([problem], [completion])[0]

    def check_batch(self, problems: list[Problem], completions: list[str]) -> list[Verdict]:
        """Judge many completions at once, over the math verifier's worker pool."""
        from scalinglab.verify.math import verify_batch

        verdicts: list[Verdict | None] = [None] * len(problems)
        todo, pairs = [], []
        for i, c in enumerate(completions):
            got = self.extract_answer(c)
            if got is None:
                verdicts[i] = Verdict.wrong("no answer found in the completion")
            else:
                todo.append(i)
                pairs.append((got, problems[i].answer))
        for i, v in zip(todo, verify_batch(pairs, timeout_s=self.timeout_s)):
            verdicts[i] = v
        return verdicts  # type: ignore[return-value]

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        from scalinglab.verify.math import equivalent

        return equivalent(number_in(a), number_in(b), self.timeout_s)
