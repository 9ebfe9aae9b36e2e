"""Benchmark: verified programs per second, sandboxed (`judge_many`) vs a naive loop.

The naive loop is what a user would otherwise write: for each program, write it plus a small
driver (call the function on each input, print the results as JSON) to a file, and
`subprocess.run([python, file])` it with a timeout, one after another, with no isolation at
all. Both sides judge the same programs and must agree on which pass.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from scalinglab.verify.code import default_workers, judge_many, same
from scalinglab.verify.sandbox import isolation

_PROGRAMS = [
    ("add", "def add(a, b):\n    return a + b\n", lambda a, b: a + b, lambda i: [i, 2 * i + 1]),
    (
        "fib",
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        None,
        lambda i: [i % 30],
    ),
    ("rev", "def rev(s):\n    return s[::-1]\n", lambda s: s[::-1], lambda i: ["abc" * (i % 5)]),
    ("srt", "def srt(xs):\n    return sorted(xs)\n", sorted, lambda i: [[(i * 7 + k * 3) % 11 for k in range(6)]]),
    ("bad", "def bad(x):\n    return x + 1\n", lambda x: x, lambda i: [i]),  # a wrong answer
]


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def workload(n: int, cases_per_program: int = 4) -> list[dict]:
    """`n` small programs (one in five wrong), each with `cases_per_program` cases."""
    items = []
    for k in range(n):
        name, src, ref, make = _PROGRAMS[k % len(_PROGRAMS)]
        ref = ref or _fib
        cases = []
        for j in range(cases_per_program):
            args = make(k + j)
            cases.append({"input": args, "output": ref(*args)})
        items.append({"id": f"p{k}", "program": src, "entry_point": name, "cases": cases})
    return items


_DRIVER = """
import json, sys
_cases = json.loads(sys.argv[1])
print(json.dumps([{entry}(*c) for c in _cases]))
"""


def naive_loop(items: list[dict], timeout_s: float = 5.0) -> list[bool]:
    """Run each program with plain `subprocess.run([python, file])`, sequentially, no isolation."""
    verdicts = []
    with tempfile.TemporaryDirectory() as d:
        for it in items:
            path = os.path.join(d, f"{it['id']}.py")
            with open(path, "w") as f:
                f.write(it["program"] + _DRIVER.replace("{entry}", it["entry_point"]))
            try:
                r = subprocess.run(
                    [sys.executable, path, json.dumps([c["input"] for c in it["cases"]])],
                    capture_output=True,
                    timeout=timeout_s,
                )
                got = json.loads(r.stdout.decode().strip().splitlines()[-1])
                ok = r.returncode == 0 and all(same(g, c["output"]) for g, c in zip(got, it["cases"]))
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                ok = False
            verdicts.append(ok)
    return verdicts


def bench_sandbox(n: int = 200, workers: int | None = None, cases_per_program: int = 4) -> dict:
    """Both sides on the same `n` programs; returns throughputs, the ratio and the machine."""
    items = workload(n, cases_per_program)
    workers = max(1, workers or default_workers())
    iso = isolation()
    judge_many(items[:4], workers=workers)  # warm the page cache for both sides alike
    t = time.perf_counter()
    naive = naive_loop(items)
    naive_s = time.perf_counter() - t
    t = time.perf_counter()
    results = judge_many(items, workers=workers)
    iso_s = time.perf_counter() - t
    return {
        "programs": n,
        "cases_per_program": cases_per_program,
        "naive": {
            "method": "subprocess.run([python, file]) per program, sequential, no isolation",
            "seconds": round(naive_s, 3),
            "programs_per_s": round(n / naive_s, 1),
            "passed": sum(naive),
        },
        "isolated": {
            "method": f"scalinglab judge_many: {iso.mode} sandbox, warm pool, {workers} workers",
            "seconds": round(iso_s, 3),
            "programs_per_s": round(n / iso_s, 1),
            "passed": sum(r.passed for r in results),
            "statuses": {s: sum(r.status == s for r in results) for s in sorted({r.status for r in results})},
        },
        "ratio": round(naive_s / iso_s, 2),
        "agree": naive == [r.passed for r in results],
        "machine": {
            "cpus": os.cpu_count(),
            "arch": platform.machine(),
            "python": platform.python_version(),
            "sandbox_mode": iso.mode,
        },
    }
