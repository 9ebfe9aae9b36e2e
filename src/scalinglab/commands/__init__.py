"""Command modules of the CLI, one per area; `cli.py` assembles them.

Each module defines typer commands that parse arguments, call one library function and
print its result (JSON with `--json`). No logic lives here.
"""
