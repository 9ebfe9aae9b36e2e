"""Run directories, the SQLite run index, atomic files and checkpoints."""

from scalinglab.runs.store import Run, atomic_write_text, atomic_write_json, open_index, list_runs

__all__ = ["Run", "atomic_write_text", "atomic_write_json", "open_index", "list_runs"]
