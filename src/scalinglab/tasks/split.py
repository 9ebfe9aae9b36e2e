"""Train and evaluation splits by construction: held-out means held out.

A seeded generator draws from a finite problem space (`arithmetic` has 16,200 problems), so a
different seed is not a different problem: before this module, 42 of the 197 distinct
evaluation problems of seed 777 were among GRPO's training prompts. Here a problem's split is
a property of the problem itself:

- `canonical(problem)`: the text that identifies it, the task's raw prompt
  (`meta["raw_prompt"]` when a chat template or few-shot prefix was applied by
  `model/prompting.py`, else `prompt`) with every run of whitespace made one space;
- `split_of(problem)`: a declared `meta["split"]` first (`train` -> "train"; `test`, `eval`,
  `validation`, `val`, `dev` -> "eval": GSM8K's and HumanEval's files), else "eval" when the
  sha256 of `SALT` + canonical text, read as an integer, is 0 modulo `EVAL_EVERY` (1 in 5),
  else "train". The task's name is not hashed: the same text is the same problem whichever
  task made it (`addition`'s `47+85=?` is `arithmetic`'s), so training on one task never sees
  another's evaluation problems. 1 in 5 leaves every built-in task at its default difficulty
  well over 200 distinct evaluation problems (the smallest, `code`, about 500);
- `draw(task, n, seed, difficulty, split)`: `n` problems of one split, deterministic in its
  arguments. A generated task is asked for chunks: first `generate(n, seed)` (so a train draw
  begins with the problems it drew before, less the evaluation ones), then chunks of derived
  seeds (`chunk_seed`) until n are kept. An evaluation draw keeps distinct problems only (a
  training draw keeps the generator's repeats: they are its distribution). Three chunks in a
  row that add under 0.5 % of their size end the search: the split is (nearly) exhausted.
  A file task (one with `load()`: gsm8k, math, humaneval) is read whole in its seeded order
  and filtered, so a declared test file is used whole and in the order `generate` gives. A
  split that cannot
  supply n problems (a tiny problem space, a test file asked for training) is a one-line
  UserError naming the task;
- `only(problems, split)` filters a stream's chunk (pre-training keeps its chunk seeding and
  drops the evaluation problems of each chunk); `refuse_test(items, who)` stops a training
  stream given problems or data rows of a declared test split; `overlap(train, heldout)`
  counts the distinct held-out problems whose text occurs among training items (Problems,
  prompt strings or data rows with a `prompt`): what each run's `summary.json` records as
  `heldout_overlap`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable

from scalinglab.errors import UserError

SALT = "scalinglab-split-v1"
EVAL_EVERY = 5  # one problem in EVAL_EVERY is an evaluation problem
SPLITS = ("train", "eval")
_EVAL_NAMES = ("test", "eval", "evaluation", "validation", "val", "dev", "heldout", "held-out")
_STALE_CHUNKS = 3  # chunks in a row that add almost nothing (< 0.5 % of their size): the split is exhausted
_MAX_CHUNK = 20_000  # problems asked of the generator at once


def _norm(text: str) -> str:
    return " ".join(str(text).split())


def canonical(problem) -> str:
    """The whitespace-normalised raw prompt that identifies a problem (a string stands for itself)."""
    if isinstance(problem, str):
        return _norm(problem)
    if isinstance(problem, dict):  # a data row
        meta = problem.get("meta") or {}
        return _norm(meta.get("raw_prompt", problem.get("prompt", "")))
    return _norm(problem.meta.get("raw_prompt", problem.prompt))


def declared(problem) -> str | None:
    """The split a problem (or data row) declares in `meta["split"]`, as "train"/"eval", or None."""
    meta = (problem.get("meta") or {}) if isinstance(problem, dict) else getattr(problem, "meta", {}) or {}
    value = meta.get("split")
    if value is None:
        return None
    value = str(value).lower()
    return "train" if value == "train" else ("eval" if value in _EVAL_NAMES else None)


def hashed_split(text: str) -> str:
    """The split of a canonical text by its hash."""
    h = int.from_bytes(hashlib.sha256(f"{SALT}\n{text}".encode()).digest()[:8], "big")
    return "eval" if h % EVAL_EVERY == 0 else "train"


def split_of(problem) -> str:
    """ "train" or "eval": the declared split, else the hash of the canonical text."""
    return declared(problem) or hashed_split(canonical(problem))


def only(problems: Iterable, split: str) -> list:
    """The problems of `split`, in order."""
    _check(split)
    return [p for p in problems if split_of(p) == split]


def chunk_seed(seed: int, k: int) -> int:
    """The generator seed of chunk k >= 1 of a draw with `seed` (a 31-bit hash of both)."""
    return int.from_bytes(hashlib.sha256(f"{SALT}:chunk:{seed}:{k}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def _check(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _where(task) -> str:
    file = getattr(task, "file", None)
    try:
        return f" ({file()})" if callable(file) else ""
    except UserError:
        return ""


def draw(task, n: int, seed: int, difficulty: int | None = None, split: str = "train") -> list:
    """`n` problems of `split` from `task`, deterministic in (n, seed, difficulty, split); see the module docstring."""
    _check(split)
    if n <= 0:
        return []
    if hasattr(task, "load"):
        return _draw_file(task, n, seed, difficulty, split)
    share = (EVAL_EVERY - 1) / EVAL_EVERY if split == "train" else 1 / EVAL_EVERY
    out: list = []
    seen: set[str] = set()
    k, stale = 0, 0
    while len(out) < n:
        size = n if k == 0 else min(_MAX_CHUNK, max(64, math.ceil(1.5 * (n - len(out)) / share)))
        batch = task.generate(size, seed=seed if k == 0 else chunk_seed(seed, k), difficulty=difficulty)
        before = len(out)
        for p in batch:
            if split_of(p) != split:
                continue
            if split == "eval":
                key = canonical(p)
                if key in seen:
                    continue
                seen.add(key)
            out.append(p)
            if len(out) == n:
                break
        stale = stale + 1 if len(out) - before < max(1, len(batch) // 200) and len(out) < n else 0
        if stale >= _STALE_CHUNKS:
            what = f"distinct {split} problems" if split == "eval" else f"{split} problems"
            raise UserError(
                f"task {task.name!r}: its {split} split has only {len(out)} {what}"
                + (f" at difficulty {difficulty}" if difficulty is not None else "")
                + f"; asked for {n} (ask for fewer, or widen the task's settings)"
            )
        k += 1
    return out


def _permutation(task, seed: int, difficulty: int | None) -> list:
    """Every problem of a file task in its seeded order (`generate(m)` is a prefix of `generate(m + 1)`)."""
    total = len(task.load())
    try:
        return task.generate(total, seed=seed, difficulty=difficulty)
    except UserError:
        if difficulty is None:
            raise
    lo, hi = 0, total  # generate(lo) works, generate(hi) does not: the count at this difficulty is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            task.generate(mid, seed=seed, difficulty=difficulty)
            lo = mid
        except UserError:
            hi = mid
    return task.generate(lo, seed=seed, difficulty=difficulty) if lo else []


def _draw_file(task, n: int, seed: int, difficulty: int | None, split: str) -> list:
    problems = _permutation(task, seed, difficulty)
    kept = only(problems, split)
    if len(kept) >= n:
        return kept[:n]
    marks = {declared(p) for p in problems}
    if problems and marks == {"eval"} and split == "train":
        raise UserError(
            f"task {task.name!r}: its problems{_where(task)} are a declared test split; a training "
            "stream draws only train problems (for gsm8k: gsm8k[split=train])"
        )
    if problems and marks == {"train"} and split == "eval":
        raise UserError(
            f"task {task.name!r}: its problems{_where(task)} are a declared train split; evaluation "
            "draws only evaluation problems (for gsm8k: the test file)"
        )
    raise UserError(
        f"task {task.name!r}: its {split} split{_where(task)} has {len(kept)} problems"
        + (f" at difficulty {difficulty}" if difficulty is not None else "")
        + f"; asked for {n}"
    )


def refuse_test(items: Iterable, who: str) -> None:
    """UserError when a training stream is given a problem or data row of a declared test split."""
    for i, item in enumerate(items):
        if declared(item) == "eval":
            pid = item.get("id", i + 1) if isinstance(item, dict) else getattr(item, "id", i + 1)
            raise UserError(f"{who}: item {pid!r} is from a declared test split; training uses only train problems")


def overlap(train: Iterable[Any], heldout: Iterable[Any]) -> int:
    """How many distinct held-out problems occur among the training items (by canonical text or prompt)."""
    index: dict[str, int] = {}
    for i, p in enumerate(heldout):
        index.setdefault(canonical(p), i)
        prompt = p if isinstance(p, str) else (p.get("prompt", "") if isinstance(p, dict) else p.prompt)
        index.setdefault(_norm(prompt), i)
    hits: set[int] = set()
    for t in train:
        for key in {
            canonical(t),
            _norm(t if isinstance(t, str) else (t.get("prompt", "") if isinstance(t, dict) else t.prompt)),
        }:
            if key in index:
                hits.add(index[key])
    return len(hits)
