"""What every command shares: JSON output, progress bars on stderr, the bench sub-app."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scalinglab.runs.store import dumps

# Progress and human-readable output go to stderr, so `--json` stdout stays one object.
err = Console(stderr=True)
out = Console()

bench_app = typer.Typer(
    help="The project's benchmarks, each measured side by side against the tool a user would otherwise pick.",
    no_args_is_help=True,
)

verify_app = typer.Typer(
    help="Judge candidates: math answers by equivalence, programs in the sandbox.", no_args_is_help=True
)

train_app = typer.Typer(
    help="Post-training: sft, reward-model, dpo, ppo, grpo (each --help shows its recipe).", no_args_is_help=True
)

JSON_OPT = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def emit(result: Any, as_json: bool, human: str | None = None) -> None:
    """Print `result` as one JSON object (with --json) or a readable summary."""
    if as_json:
        sys.stdout.write(dumps(result) + "\n")
        sys.stdout.flush()
    elif human is not None:
        out.print(human)
    else:
        out.print_json(dumps(result))


class ProgressReporter:
    """A callable `report(done, total, **info)` backed by a rich progress bar on stderr."""

    def __init__(self, progress: Progress, description: str):
        self.progress = progress
        self.task = progress.add_task(description, total=None, info="")

    def __call__(self, done: int, total: int | None = None, **info: Any) -> None:
        desc = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        self.progress.update(self.task, completed=done, total=total, info=desc)


def _columns() -> list:
    return [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]


@contextlib.contextmanager
def progress_group() -> Iterator[Any]:
    """Yield `new(description) -> progress callback`: many bars under one live display."""
    with Progress(*_columns(), console=err, transient=False, refresh_per_second=4) as p:
        try:
            yield lambda description: ProgressReporter(p, description)
        except BaseException:
            p.live.transient = True
            raise


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Any]:
    """Yield a progress callback (a no-op when disabled). On a terminal, a live bar on stderr; otherwise
    rich draws no live bar and prints each bar's last state once, when it stops."""
    if not enabled:
        yield lambda *a, **k: None
        return
    with Progress(*_columns(), console=err, transient=False, refresh_per_second=4) as p:
        rep = ProgressReporter(p, description)
        try:
            yield rep
        except BaseException:
            p.live.transient = True  # an error leaves its one line, not a half bar
            raise
