"""What the model is asked: one file per task family (torch-free).

`get_task(name)` returns a task object implementing `scalinglab.tasks.base.Task`.
"""

from __future__ import annotations

from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem, Task, load_problems, read_jsonl, write_jsonl


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
    return sorted(_registry())


def get_task(name: str) -> Task:
    reg = _registry()
    if name not in reg:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(reg))})")
    return reg[name]()


__all__ = ["Problem", "Task", "get_task", "task_names", "load_problems", "read_jsonl", "write_jsonl"]
