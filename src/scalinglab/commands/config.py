"""`scalinglab config show RECIPE`: every field of a recipe's config, its type, default and meaning."""

from __future__ import annotations

import dataclasses

import typer

from scalinglab.commands.common import JSON_OPT, emit, out
from scalinglab.config import RECIPES

config_app = typer.Typer(
    help="The configs behind every recipe: what `--set KEY=VALUE` can change.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show_cmd(
    recipe: str = typer.Argument(..., help=f"One of: {', '.join(RECIPES)}."),
    preset: str = typer.Option(
        "", help="With recipe `run`: show this preset's values (smoke, cpu, gpu, real) instead of the defaults."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Every field of RECIPE's config: name, type, default and what it does; each can be set with --set KEY=VALUE.

    Example: scalinglab config show grpo
    """
    from scalinglab.config import field_docs, recipe_config
    from scalinglab.errors import UserError

    cls = recipe_config(recipe)
    values = None
    if preset:
        if recipe != "run":
            raise UserError(f"--preset {preset!r}: only recipe `run` has presets")
        from scalinglab.pipeline.presets import PRESETS

        if preset not in PRESETS:
            raise UserError(f"--preset {preset!r}: known presets are {', '.join(PRESETS)}")
        values = dataclasses.asdict(PRESETS[preset])
    docs = field_docs(cls)
    rows = [
        {"field": d.name, "type": d.type, "default": values[d.name] if values else d.default, "help": d.help}
        for d in docs
    ]
    if as_json:
        emit({"recipe": recipe, "config": cls.__name__, "fields": rows}, True)
        return
    from rich.table import Table

    table = Table(title=f"{recipe}: {cls.__name__} (set with --set KEY=VALUE)", show_lines=False)
    for col in ("field", "type", "preset value" if values else "default", "meaning"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["field"], r["type"], repr(r["default"]), r["help"])
    out.print(table)
