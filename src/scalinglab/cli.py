"""The `scalinglab` command line: a thin typer app; every command calls one library function.

Errors from bad input (`UserError`) print one line and exit 2; `--json` prints exactly one
JSON object on stdout while progress goes to stderr.
"""

from __future__ import annotations

import gc
import json
import sys

import typer

from scalinglab.commands import common
from scalinglab.errors import UserError

app = typer.Typer(
    help="scalinglab: pre-training ladders, post-training with verifiers and RL, test-time compute, "
    "and the tokenomics of serving long chains of thought.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Every command module is imported at start-up (typer needs their signatures for --help); start-up
    # stays quick because each command imports torch and the library inside its own body.
    from scalinglab.commands import foundation

    foundation.register(app)
    for name in (
        "scaling",
        "sweep",
        "tokenomics",
        "verify_math",
        "verify_code",
        "synth",
        "posttrain",
        "rl",
        "testtime",
        "pipeline",
        "report",
        "distributed",
        "tasks",
        "config",
    ):
        try:
            mod = __import__(f"scalinglab.commands.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"scalinglab.commands.{name}":
                raise
            continue
        mod.register(app)
    app.add_typer(common.bench_app, name="bench")
    app.add_typer(common.verify_app, name="verify")
    app.add_typer(common.train_app, name="train")


_register()


def _click_error(e: BaseException) -> bool:
    """Whether `e` is a click usage error: from `click` itself or the copy that typer >= 0.24 vendors.

    Matched by class name along the MRO, not by `isinstance`, because the two copies define
    distinct classes and the project admits typer versions on both sides of the split.
    """
    return any(c.__name__ == "ClickException" for c in type(e).__mro__) and hasattr(e, "format_message")


def _fail(message: str, argv: list[str], code: int, bad_input: str | None = None) -> None:
    """Print one line on stderr (and, under --json, the error object on stdout); exit `code`."""
    if "--json" in argv:
        sys.stdout.write(json.dumps({"error": message, "input": bad_input}) + "\n")
        sys.stdout.flush()
    from rich.markup import escape

    common.err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Non-standalone mode: usage errors raise (we print them in one line); an Exit, including
        # the one typer turns Ctrl-C into, comes back as the return value.
        code = app(args=argv, standalone_mode=False)
    except UserError as e:
        _fail(str(e), argv, 2, getattr(e, "input", None))
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except SystemExit:
        raise
    except Exception as e:
        if not _click_error(e):
            raise
        msg = e.format_message()
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        param = getattr(e, "param", None)
        _fail(
            f"{msg}{hint}",
            argv,
            getattr(e, "exit_code", 2),
            getattr(param, "name", None) or getattr(e, "option_name", None),
        )
    if code == 130:
        common.err.print("interrupted; finished work is kept")
        sys.exit(130)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


def entry() -> None:
    """The `scalinglab` console script: `main`, then an exit without the interpreter's final garbage
    collections, which walk every object torch's import created (0.3 s after each command, 2026-12-02).

    `gc.freeze()` moves the live objects out of the collector's reach; they are still freed by
    reference counting as the interpreter tears down. Only here, not in `main`: a process that
    calls `main` repeatedly (the tests) keeps collecting its garbage.
    """
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    entry()
