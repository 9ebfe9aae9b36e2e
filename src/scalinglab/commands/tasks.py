"""`scalinglab tasks`: every task with one line each (what it is, where its problems come from)."""

from __future__ import annotations

import typer

from scalinglab.commands.common import JSON_OPT, emit


def register(app: typer.Typer) -> None:
    app.command("tasks")(tasks_cmd)


def tasks_cmd(
    rg: bool = typer.Option(False, "--rg", help="Also list every reasoning-gym task that rg:<name> accepts."),
    as_json: bool = JSON_OPT,
) -> None:
    """The tasks that --task accepts: name, what it is, where its problems come from.

    `rg:<name>` takes any reasoning-gym task (settings with `eval --set KEY=VALUE`; --difficulty
    is its curriculum level where it has one).

    Example: scalinglab tasks --rg --json
    """
    from scalinglab.tasks import catalog

    res = catalog(rg=rg)
    width = max(len(t["name"]) for t in res["tasks"])
    rows = [f"{t['name']:<{width}}  {t['about']} (problems: {t['problems']})" for t in res["tasks"]]
    if rg:
        w = max(len(t["name"]) for t in res["rg"])
        rows += ["", f"reasoning-gym tasks ({len(res['rg'])}; * = has difficulty levels):"]
        rows += [f"{t['name']:<{w}} {'*' if t['difficulty_levels'] else ' '} {t['about']}" for t in res["rg"]]
    if as_json:
        emit(res, True)
    else:
        typer.echo("\n".join(rows))  # plain: one line per task, never wrapped to the terminal
