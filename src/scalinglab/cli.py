"""The `scalinglab` command line: a thin typer app; every command calls one library function.

Errors from bad input (`UserError`) print one line and exit 2; `--json` prints exactly one
JSON object on stdout while progress goes to stderr.
"""

from __future__ import annotations

import sys

import typer

from scalinglab.errors import UserError
from scalinglab.commands import common

app = typer.Typer(
    help="scalinglab: pre-training ladders, post-training with verifiers and RL, test-time compute, "
    "and the tokenomics of serving long chains of thought.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so `scalinglab --help` stays quick and each area stays separate.
    from scalinglab.commands import foundation

    foundation.register(app)
    for name in ("scaling", "sweep", "tokenomics", "verify_math", "verify_code", "synth", "posttrain", "rl", "testtime", "pipeline", "report", "distributed"):
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


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except UserError as e:
        common.err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        common.err.print("interrupted; finished work is kept")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
