"""Run directories, the SQLite run index, atomic files (store.py) and the one save / restore /
resume mechanism every trainer uses (checkpoint.py)."""

from scalinglab.runs.store import Run, atomic_write_json, atomic_write_text, list_runs, open_index

__all__ = ["Run", "atomic_write_text", "atomic_write_json", "open_index", "list_runs"]
