"""Any reasoning-gym task as a task, `rg:<name>`, scored by the dataset's own `score_answer`.

The model sees (prompt, then the completion it is trained on; `rg:basic_arithmetic`, seed 1,
problem 0):

    Question: Calculate 5 - 3 - 6.
    Think it through, then end with the final answer alone after "Answer:".
    Answer: -4

Problems are `reasoning_gym.create_dataset(name, size=n, seed=seed, **settings)` (imported
only when a task is made: `import scalinglab.tasks` never loads reasoning-gym). The prompt is
`Question: <the dataset's question>` and the one-line instruction; `answer` is the dataset's
answer (`""` where the dataset has none because many answers are right, e.g. `graph_color`:
its scorer checks the answer itself), `solution` is `Answer: <answer>` (reasoning-gym has no
worked solutions), `meta` holds the dataset name, the settings it was made with, the seed,
the index, the raw reference and the dataset's `metadata` (what `score_answer` needs).
Ids are `rg:<name>-<seed>-<i>`. Caution for held-out hygiene: many reasoning-gym datasets
seed item i with `seed + i`, so `rg:x-1-1` and `rg:x-2-0` can be the same problem: seeds do
not separate training from evaluation; `tasks/split.py` does, by the question's text.

Settings are the dataset config's fields (`get_task("rg:basic_arithmetic", {"min_terms": 2})`,
`eval --set min_terms=2`), converted to the type of each field's default and validated by the
config itself; an unknown key is a UserError listing the allowed ones (`seed` and `size` come
from `generate`). `difficulty` d (1, 2, ...) sets every attribute of the dataset's
reasoning-gym curriculum to level d-1 (clamped to its top level; "inclusive" ranges, as
reasoning-gym's default curriculum context), explicit settings winning; a dataset without a
curriculum takes no difficulty. A BASE model gets `few_shot`: three questions of the same
dataset and settings with their answers, in the format above, drawn with seed 987654321
(only the first when three would pass 3,000 characters; none for datasets without answers).

Answer extraction: the last `<answer>...</answer>` (reasoning-gym's own convention), as it
is; else the text after the last `Answer:` / `Final answer:` at the start of a line, up to an
empty line (multi-line answers such as grids are kept, whitespace-only lines included:
futoshiki's grids have them); else the rest of the line after the last "the answer is"
(SmolLM2-135M-Instruct's habit). These two are stripped (also of `**`), and a one-word
answer loses a final full stop (`2.` -> `2`; a sentence keeps its own). Checking calls the
dataset's `score_answer(answer, entry)` in a worker process of `verify.pool` with a hard
timeout (`timeout_s`): a scorer that raises (e.g. `prime_factorization` on `abc`) or hangs
gives `Verdict.failed` (error=True), never a wrong answer. `reward` is the score (some
scorers give partial credit, e.g. 0.5); `correct` means a score of 1. What a generator
prints (`bf` does) goes to stderr, so `--json` keeps one object on stdout.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem, coerce_setting
from scalinglab.verify.verdict import Verdict

PREFIX = "rg:"
INSTRUCTION = 'Think it through, then end with the final answer alone after "Answer:".'
FEW_SHOT_SEED = 987654321
FEW_SHOT_CHARS = 3000  # a longer prefix keeps only its first example
_RESERVED = ("seed", "size")
_TAG = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)
_ANSWER_IS = re.compile(r"\bthe (?:final )?answer is[ \t]*:?[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_LINE = re.compile(r"^[ \t]*(?:\*\*)?(?:final[ \t]+)?answer(?:\*\*)?[ \t]*:(?:\*\*)?", re.IGNORECASE | re.MULTILINE)


def _rg():
    try:
        import reasoning_gym
        from reasoning_gym import factory
    except ImportError:
        raise UserError("rg:<name> tasks need the reasoning-gym package (pip install reasoning-gym)") from None
    return reasoning_gym, factory


def dataset_names() -> list[str]:
    """Every reasoning-gym dataset name (imports reasoning-gym)."""
    return sorted(_rg()[1].DATASETS)


def describe(name: str) -> str:
    """The first line of a dataset's docstring."""
    cls = _rg()[1].DATASETS[name][0]
    doc = (cls.__doc__ or "").strip().split("\n")[0].strip()
    return doc or cls.__name__


def has_levels(name: str) -> bool:
    """Whether the dataset has a reasoning-gym curriculum (so `difficulty` applies)."""
    return _rg()[1].has_curriculum(name)


def config_fields(name: str) -> dict[str, Any]:
    """The settings a dataset takes, with their defaults (`seed`, `size` excluded)."""
    cls = _rg()[1].DATASETS[name][1]
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name in _RESERVED:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            out[f.name] = None
    return out


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


def _thaw(v: Any) -> Any:
    return [_thaw(x) for x in v] if isinstance(v, tuple) else v


def make(name: str, settings: dict | None = None) -> "ReasoningGym":
    """`rg:<name>` with validated settings (UserError for an unknown name, key or value)."""
    _, factory = _rg()
    if name not in factory.DATASETS:
        raise UserError(
            f"unknown reasoning-gym task {name!r} (see `scalinglab tasks --rg` for the {len(factory.DATASETS)} names)"
        )
    allowed = config_fields(name)
    who = f"{PREFIX}{name}"
    clean = {}
    for key, value in (settings or {}).items():
        if key in _RESERVED:
            raise UserError(
                f"{who} setting {key!r}: {' and '.join(_RESERVED)} come from generate() (--seed, --num-problems)"
            )
        if key not in allowed:
            raise UserError(f"{who}: unknown setting {key!r} (allowed: {', '.join(sorted(allowed)) or 'none'})")
        clean[key] = _freeze(coerce_setting(key, value, allowed[key], who))
    task = ReasoningGym(dataset=name, settings=tuple(sorted(clean.items())))
    task.config(1, 0, None)  # validate now, not at the first generate
    return task


# ---- the worker side: runs inside a verify.pool worker process ------------------------------

_datasets: dict[str, Any] = {}


def warm_up() -> None:
    """Run once in each scoring worker: import reasoning-gym before any clock starts."""
    import logging

    logging.disable(logging.WARNING)
    _rg()


def score_entry(name: str, config: dict, answer: str, entry: dict) -> float:
    """`score_answer(answer, entry)` of the dataset made with `config` (cached per config)."""
    key = json.dumps([name, config], sort_keys=True, default=str)
    ds = _datasets.get(key)
    if ds is None:
        if len(_datasets) > 32:
            _datasets.clear()
        ds = _datasets[key] = _rg()[0].create_dataset(name, **config)
    return float(ds.score_answer(answer, entry))


_pools: dict[int, Any] = {}
_lock = threading.Lock()


def get_pool(workers: int | None = None):
    from scalinglab.verify.pool import WorkerPool

    n = workers or max(1, min(2, os.cpu_count() or 1))
    with _lock:
        if n not in _pools:
            _pools[n] = WorkerPool(score_entry, workers=n, initializer=warm_up, memory_mb=4096)
        return _pools[n]


@atexit.register
def _close_pools() -> None:
    for p in _pools.values():
        p.close()
    _pools.clear()


def _tidy(ans: str) -> str | None:
    ans = ans.strip().removeprefix("**").removesuffix("**").strip()
    if ans.endswith(".") and not any(c.isspace() for c in ans):  # "2." -> "2"; a sentence keeps its stop
        ans = ans[:-1]
    return ans or None


def extract(completion: str) -> str | None:
    """The answer of a completion: last `<answer>` tags, else after the last `Answer:` line
    start, else the last "the answer is ..." (see the module docstring)."""
    tags = _TAG.findall(completion)
    if tags:
        return tags[-1].strip()
    marks = list(_LINE.finditer(completion))
    if marks:
        rest = completion[marks[-1].end() :]
        return _tidy(rest.lstrip(" \t").lstrip("\n").split("\n\n", 1)[0])  # whitespace-only lines belong to grids
    said = _ANSWER_IS.findall(completion)
    return _tidy(said[-1]) if said else None


@dataclass(frozen=True)
class ReasoningGym:
    """One reasoning-gym dataset; `settings` are (key, value) pairs of its config."""

    dataset: str
    settings: tuple[tuple[str, Any], ...] = ()
    timeout_s: float = 5.0  # hard limit per scoring call (worker killed beyond it)
    stop: tuple[str, ...] = ("\nQuestion:",)

    @property
    def name(self) -> str:
        return PREFIX + self.dataset

    def config(self, n: int, seed: int, difficulty: int | None) -> dict:
        """The keyword arguments of `create_dataset` (validated; UserError when invalid)."""
        _, factory = _rg()
        cfg: dict[str, Any] = {}
        if difficulty is not None:
            if difficulty < 1:
                raise UserError(f"{self.name}: difficulty is a curriculum level from 1; got {difficulty}")
            if not factory.has_curriculum(self.dataset):
                raise UserError(f"{self.name} has no reasoning-gym curriculum, so no difficulty levels (use settings)")
            cur = factory.create_curriculum(self.dataset)
            cur.set_global_level(difficulty - 1)
            made = cur.generate_configuration({"seed": seed, "size": max(n, 1)})
            for attr in cur.attributes.values():
                for field in ("lower_field_name", "upper_field_name", "field_name"):
                    if getattr(attr, field, None):
                        cfg[getattr(attr, field)] = getattr(made, getattr(attr, field))
        cfg.update(
            {k: _thaw(v) if isinstance(config_fields(self.dataset).get(k), list) else v for k, v in self.settings}
        )
        try:
            conf = factory.DATASETS[self.dataset][1](seed=seed, size=max(n, 1), **cfg)
            if hasattr(conf, "validate"):
                conf.validate()
        except (AssertionError, ValueError, TypeError) as e:
            raise UserError(f"{self.name}: invalid settings {cfg}: {e or type(e).__name__}") from None
        return cfg

    def _problems(self, n: int, seed: int, difficulty: int | None) -> list[Problem]:
        if n <= 0:
            return []
        cfg = self.config(n, seed, difficulty)
        with contextlib.redirect_stdout(sys.stderr):  # some generators print (bf): keep --json's stdout clean
            ds = _rg()[0].create_dataset(self.dataset, size=n, seed=seed, **cfg)
            entries = [ds[i] for i in range(n)]
        out = []
        for i, e in enumerate(entries):
            ref = e.get("answer")
            out.append(
                Problem(
                    id=f"{self.name}-{seed}-{i}",
                    task=self.name,
                    prompt=f"Question: {str(e['question']).strip()}\n{INSTRUCTION}\n",
                    answer="" if ref is None else str(ref),
                    solution=None if ref is None else f"Answer: {ref}\n",
                    meta={
                        "dataset": self.dataset,
                        "config": cfg,
                        "difficulty": difficulty,
                        "seed": seed,
                        "index": i,
                        "reference": ref,
                        "metadata": e.get("metadata", {}),
                    },
                )
            )
        return out

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        return self._problems(n, seed, difficulty)

    @cached_property
    def few_shot(self) -> str:
        """Up to three solved examples; beyond FEW_SHOT_CHARS only the first (ARC grids are long)."""
        text = ""
        for p in self._problems(3, FEW_SHOT_SEED, None):
            shot = p.prompt + p.solution + "\n" if p.solution else ""
            if text and len(text) + len(shot) > FEW_SHOT_CHARS:
                break
            text += shot
        return text

    def extract_answer(self, completion: str) -> str | None:
        return extract(completion)

    def check(self, problem: Problem, completion: str) -> Verdict:
        return self.check_batch([problem], [completion])[0]

    def check_batch(self, problems: list[Problem], completions: list[str], pool=None) -> list[Verdict]:
        """Score many completions in worker processes; a raise or a hang is a verifier error."""
        verdicts: list[Verdict | None] = [None] * len(problems)
        todo, calls = [], []
        for i, (p, c) in enumerate(zip(problems, completions)):
            got = self.extract_answer(c)
            if got is None:
                verdicts[i] = Verdict.wrong('no answer (after "Answer:" or in <answer> tags)')
                continue
            m = p.meta
            question = p.prompt.removeprefix("Question: ").removesuffix(f"\n{INSTRUCTION}\n")
            entry = {"question": question, "answer": m.get("reference", p.answer), "metadata": m.get("metadata", {})}
            todo.append(i)
            calls.append(
                (
                    m.get("dataset", self.dataset),
                    {**(m.get("config") or {}), "seed": m.get("seed", 0), "size": 1},
                    got,
                    entry,
                )
            )
        if calls:
            pool = pool or get_pool()
            with _lock:  # one map at a time per pool
                outcomes = pool.map(calls, timeout_s=self.timeout_s)
            for i, (_, _, got, _), o in zip(todo, calls, outcomes):
                verdicts[i] = _verdict(o, got, problems[i].answer, self.timeout_s)
        return verdicts  # type: ignore[return-value]

    def split_steps(self, completion: str) -> list[str]:
        return [line + "\n" for line in completion.split("\n") if line.strip()]

    def equivalent(self, a: str, b: str) -> bool:
        """Same answer text up to surrounding and repeated whitespace."""
        return " ".join(a.split()) == " ".join(b.split())


def _short(s: str, n: int = 60) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 3] + "..."


def _verdict(o, got: str, want: str, timeout_s: float) -> Verdict:
    if o.kind == "timeout":
        return Verdict.failed(f"timeout: no score within {timeout_s:g}s (worker killed)")
    if o.kind != "ok":
        return Verdict.failed(f"scorer {o.kind}: {o.error}")
    try:
        score = float(o.value)
    except (TypeError, ValueError):
        return Verdict.failed(f"scorer returned {o.value!r}, not a number")
    if score != score:
        return Verdict.failed("scorer returned NaN")
    score = min(1.0, max(0.0, score))
    if score >= 1.0:
        return Verdict.right(f"score 1: {_short(got)}")
    return Verdict(
        False, score, f"score {score:g}: answered {_short(got)}, expected {_short(want) or '(checked by the scorer)'}"
    )
