"""What every task shares: the problem record and the task interface.

A task is one file (STYLE.md example 9): a seeded generator with a difficulty knob, the
prompt format, worked step-by-step solutions for SFT, answer extraction and a checker.
Problems serialise to the JSONL format of DESIGN.md:
`{"id", "task", "prompt", "answer", "solution"?, "steps"?, "meta"?}`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from scalinglab.errors import UserError
from scalinglab.runs.store import read_jsonl
from scalinglab.verify.verdict import Verdict


@dataclass(frozen=True)
class Problem:
    id: str
    task: str
    prompt: str  # exactly what the model sees
    answer: str  # the reference final answer
    solution: str | None = None  # the worked completion (steps + answer line), what SFT trains on
    steps: tuple[str, ...] | None = None  # the solution cut into reasoning steps (for PRMs)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"id": self.id, "task": self.task, "prompt": self.prompt, "answer": self.answer}
        if self.solution is not None:
            d["solution"] = self.solution
        if self.steps is not None:
            d["steps"] = list(self.steps)
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_json(cls, d: dict, default_task: str = "custom") -> "Problem":
        missing = [k for k in ("prompt", "answer") if k not in d]
        if missing:
            raise UserError(f"problem {d.get('id', '?')!r} lacks field(s) {missing}")
        return cls(
            id=str(d.get("id", "")),
            task=str(d.get("task", default_task)),
            prompt=str(d["prompt"]),
            answer=str(d["answer"]),
            solution=d.get("solution"),
            steps=tuple(d["steps"]) if d.get("steps") is not None else None,
            meta=dict(d.get("meta") or {}),
        )


class Task(Protocol):
    """The interface every task family implements."""

    name: str
    stop: tuple[str, ...]  # strings that end a completion (besides EOS)

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        """`n` seeded problems; the same (n, seed, difficulty) always gives the same list."""
        ...

    def extract_answer(self, completion: str) -> str | None:
        """The final answer in a completion, or None when there is none."""
        ...

    def check(self, problem: Problem, completion: str) -> Verdict:
        """Judge a completion against the problem's reference answer."""
        ...

    def split_steps(self, completion: str) -> list[str]:
        """Cut a completion into reasoning steps (the units a PRM scores)."""
        ...

    def equivalent(self, a: str, b: str) -> bool:
        """Whether two extracted answers are the same answer (used by majority vote)."""
        ...


def load_problems(path: str | os.PathLike, default_task: str = "custom") -> list[Problem]:
    rows = read_jsonl(path)
    if not rows:
        raise UserError(f"{path}: no problems in file")
    return [Problem.from_json({"id": r.get("id", str(i)), **r}, default_task) for i, r in enumerate(rows)]


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def coerce_setting(key: str, value: Any, default: Any, who: str) -> Any:
    """A task setting's value in the type of its default (`--set KEY=VALUE` gives strings).

    Non-string values pass through (lists become tuples where the default is a tuple). For a
    sequence default, `a,b` or a JSON list; for a default of None, JSON when it parses.
    """
    if not isinstance(value, str):
        return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
    try:
        if isinstance(default, bool):
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError
            return value.lower() in _TRUE
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return value
        if isinstance(default, (tuple, list)):
            items = (
                json.loads(value)
                if value.strip().startswith("[")
                else [v.strip() for v in value.split(",") if v.strip()]
            )
            if default:
                items = [coerce_setting(key, v, default[0], who) for v in items]
            return type(default)(items)
    except (ValueError, TypeError):
        raise UserError(f"{who} setting {key}={value!r}: expected {type(default).__name__} like {default!r}") from None
    try:
        return json.loads(value)
    except ValueError:
        return value


def seeded_subset(problems: list[Problem], n: int, key: str, source: str, which: str = "") -> list[Problem]:
    """`n` of `problems` without replacement in the order a `random.Random(key)` shuffle gives
    (file-backed tasks: the same key always draws the same problems). Too few is one line naming
    `source` (and `which`, the filter that left them)."""
    import random

    if n > len(problems):
        raise UserError(
            f"{source}: asked for {n} problems, the file has {len(problems)}" + (f" {which}" if which else "")
        )
    order = list(range(len(problems)))
    random.Random(key).shuffle(order)
    return [problems[i] for i in order[:n]]
