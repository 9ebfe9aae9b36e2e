"""`scalinglab verify math`: judge a JSONL of (candidate, reference) answers."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from scalinglab.commands import common
from scalinglab.errors import UserError


@common.verify_app.command("math")
def verify_math_cmd(
    input: Path = typer.Option(
        ...,
        "--input",
        "-i",
        help="JSONL, one object per line: "
        '{"id": ..., "candidate": "<answer or full solution>", "reference": "<answer>"}.',
    ),
    timeout_s: float = typer.Option(
        5.0, "--timeout", help="Hard limit in seconds per pair; an overrun worker is killed."
    ),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core, at most 4)."),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Judge math answers by equivalence (math-verify + SymPy in worker processes).

    The final answer is taken from each candidate (last \\boxed{}, an 'A:'/'Answer:'/'####'
    line, a bare answer, or the last number) and compared with the reference: numbers,
    fractions, radicals, LaTeX, sets, tuples and intervals. A timeout or verifier crash is
    reported as an error, never as a wrong answer.

    Example:  scalinglab verify math --input answers.jsonl --json
    """
    from scalinglab.runs.store import read_jsonl
    from scalinglab.verify.math import TIMEOUT_PREFIX, verify_batch

    if timeout_s <= 0:
        raise UserError(f"--timeout must be positive, got {timeout_s}")
    rows = read_jsonl(input)
    if not rows:
        raise UserError(f"{input}: no lines to verify")
    for i, r in enumerate(rows, 1):
        missing = [k for k in ("candidate", "reference") if k not in r]
        if missing:
            raise UserError(f"{input}:{i}: missing field(s) {missing}")
    t0 = time.perf_counter()
    verdicts = verify_batch(
        [(str(r["candidate"]), str(r["reference"])) for r in rows], timeout_s=timeout_s, workers=workers or None
    )
    secs = time.perf_counter() - t0
    results = [
        {"id": r.get("id", i), "correct": v.correct, "reason": v.reason, "error": v.error}
        for i, (r, v) in enumerate(zip(rows, verdicts))
    ]
    timeouts = sum(v.error and v.reason.startswith(TIMEOUT_PREFIX) for v in verdicts)
    errors = sum(v.error for v in verdicts)
    summary = {
        "results": results,
        "n": len(rows),
        "correct": sum(v.correct for v in verdicts),
        "wrong": sum(not v.correct and not v.error for v in verdicts),
        "errors": errors,  # timeouts included
        "timeouts": timeouts,
        "seconds": round(secs, 4),
        "pairs_per_s": round(len(rows) / secs, 2) if secs > 0 else None,
    }
    human = (
        f"{summary['correct']}/{len(rows)} correct, {summary['wrong']} wrong, "
        f"{errors} verifier errors ({timeouts} timeouts) in {secs:.2f}s"
    )
    common.emit(summary, as_json, human)


def register(app: typer.Typer) -> None:
    """The command registers itself on `verify_app` at import; nothing else to add."""
