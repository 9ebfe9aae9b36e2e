"""Math answer equivalence with math-verify + SymPy, in worker processes with hard timeouts.

`verify_batch(pairs, timeout_s)` judges (candidate, reference) pairs and returns one
`Verdict` per pair, in order. Each pair is judged by `judge_pair` inside a worker of a
`scalinglab.verify.pool.WorkerPool`:

1. the final answer is extracted from both texts (`scalinglab.verify.answer`: last
   `\\boxed{}`, answer lines, a bare answer, the last number);
2. a fast exact path: identical strings, or both plain rationals (`3`, `-0.75`, `1,000`,
   `7/8`) compared as `fractions.Fraction`s; two unequal integers are wrong at once;
3. otherwise both are parsed with `math_verify.parse` (LaTeX first, as `$...$`, then as a
   plain expression) and compared with `math_verify.verify(gold=reference, target=candidate)`:
   numbers and fractions (floats to 6 decimals, math-verify's default), radicals and
   symbolic expressions (SymPy simplification), sets (order-free), tuples (ordered),
   intervals (open/closed ends matter) and equations such as `x=3` against `3`.
   One deviation from plain math-verify: a brace set `\\{1,2\\}` never equals a
   parenthesised `(1,2)`, which math-verify may read as an interval and match.

math-verify's own timeouts use `signal.alarm` and fail off the main thread, so they are
switched off here; instead the pool's parent kills a worker that overruns `timeout_s`.
A timeout, a worker crash or a verifier exception gives `Verdict.failed` (error=True),
whose reason starts with `timeout` for timeouts, counted apart from wrong answers.
A reference that cannot be parsed at all is also an error, not a wrong answer.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
from fractions import Fraction
from typing import Sequence

from scalinglab.verify.answer import extract_answer
from scalinglab.verify.pool import Outcome, WorkerPool
from scalinglab.verify.verdict import Verdict

TIMEOUT_PREFIX = "timeout"
_RATIONAL = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:/\d+)?$|^[+-]?\.\d+$")
_INT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)$")


def _as_fraction(s: str) -> Fraction | None:
    s = s.replace(" ", "").replace("\\!", "").removeprefix("\\$")
    if not _RATIONAL.match(s):
        return None
    try:
        return Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def _normalise(s: str) -> str:
    # Spellings of infinity that LaTeX parsing does not know.
    return re.sub(r"(?<![\\A-Za-z])(?:oo|inf|infinity)\b", r"\\infty", s)


def _shape(s: str) -> str:
    s = s.strip()
    if s.startswith("\\{") or s.startswith("\\left\\{"):
        return "set"
    if s[:1] in "([" and s[-1:] in ")]" and "," in s:
        return "paren"
    return "other"


def _parse(s: str) -> list:
    from math_verify import parse

    s = _normalise(s)
    got = parse(f"${s}$", parsing_timeout=None)
    if not any(not isinstance(g, str) for g in got):
        plain = parse(s, parsing_timeout=None)
        if any(not isinstance(g, str) for g in plain):
            return plain
    return got


def _short(x, n: int = 60) -> str:
    r = str(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def judge_pair(candidate: str, reference: str) -> tuple[bool, str, bool]:
    """(correct, reason, error) for one pair; runs in a worker (no timeout of its own)."""
    from math_verify import verify

    ref = extract_answer(reference)
    if ref is None:
        ref = reference.strip()
    if not ref:
        return False, "empty reference", True
    cand = extract_answer(candidate)
    if cand is None or not cand.strip():
        return False, "no answer found in candidate", False
    if cand == ref:
        return True, f"identical: {_short(cand)}", False
    fc, fr = _as_fraction(cand), _as_fraction(ref)
    if fc is not None and fr is not None:
        if fc == fr:
            return True, f"equal rationals: {_short(cand)} = {_short(ref)}", False
        if _INT.match(cand.strip()) and _INT.match(ref.strip()):
            return False, f"answered {_short(cand)}, expected {_short(ref)}", False
    if {_shape(cand), _shape(ref)} == {"set", "paren"}:
        return False, f"a set is not a tuple or interval: {_short(cand)} vs {_short(ref)}", False
    gold = _parse(ref)
    if not gold:
        return False, f"could not parse reference {_short(ref)!r}", True
    pred = _parse(cand)
    if not pred:
        return False, f"could not parse candidate answer {_short(cand)!r}", False
    if verify(gold, pred, timeout_seconds=None):
        return True, f"equivalent: {_short(cand)} == {_short(ref)}", False
    return False, f"not equivalent: {_short(cand)} vs {_short(ref)}", False


def warm_up() -> None:
    """Run once in each worker: import math-verify and its LaTeX parser before any clock starts."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    judge_pair("\\frac{1}{2}", "0.5")
    judge_pair("\\{1,2\\}", "\\{2,1\\}")


def to_verdict(o: Outcome, timeout_s: float) -> Verdict:
    if o.kind == "ok":
        correct, reason, error = o.value
        if error:
            return Verdict.failed(reason)
        return Verdict.right(reason) if correct else Verdict.wrong(reason)
    if o.kind == "timeout":
        return Verdict.failed(f"{TIMEOUT_PREFIX}: no verdict within {timeout_s:g}s (worker killed)")
    if o.kind == "crash":
        return Verdict.failed(f"verifier crashed: {o.error}")
    return Verdict.failed(f"verifier error: {o.error}")


_pools: dict[int, WorkerPool] = {}
_lock = threading.Lock()


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def get_pool(workers: int | None = None) -> WorkerPool:
    """The process-wide pool of math workers (created on first use, closed at exit)."""
    n = workers or default_workers()
    with _lock:
        if n not in _pools:
            _pools[n] = WorkerPool(judge_pair, workers=n, initializer=warm_up, memory_mb=4096)
        return _pools[n]


@atexit.register
def _close_pools() -> None:
    for p in _pools.values():
        p.close()
    _pools.clear()


def verify_batch(
    pairs: Sequence[tuple[str, str]], timeout_s: float = 5.0, workers: int | None = None, pool: WorkerPool | None = None
) -> list[Verdict]:
    """One Verdict per (candidate, reference) pair, in order. Timeouts are hard."""
    if not pairs:
        return []
    pool = pool or get_pool(workers)
    with _lock:  # one map at a time per process: the pool is not re-entrant
        outcomes = pool.map([(str(c), str(r)) for c, r in pairs], timeout_s=timeout_s)
    return [to_verdict(o, timeout_s) for o in outcomes]


def check(candidate: str, reference: str, timeout_s: float = 5.0) -> Verdict:
    """Judge one pair (convenience wrapper over `verify_batch`)."""
    return verify_batch([(candidate, reference)], timeout_s)[0]


def equivalent(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """Whether two answers are the same answer; a verifier failure counts as not equal."""
    if a.strip() == b.strip():
        return True
    return check(a, b, timeout_s).correct
