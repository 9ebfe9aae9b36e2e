"""Task modules stay light: no torch, and no SymPy/math-verify until a math check runs."""

import subprocess
import sys


def test_tasks_import_neither_torch_nor_sympy():
    code = (
        "import sys, scalinglab.tasks as t; [t.get_task(n) for n in t.task_names()]; "
        "import scalinglab.verify.math; "
        "print(sorted(m for m in ('torch', 'sympy', 'math_verify') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
