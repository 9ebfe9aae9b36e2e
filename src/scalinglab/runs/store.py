"""One directory per run, plus an SQLite index of runs beside them.

    DIR/config.json     the resolved config
    DIR/command.txt     the command line that made it
    DIR/metrics.jsonl   one JSON object per logged step (append-only; `--resume` trims
                        lines past the checkpoint so every step appears exactly once)
    DIR/summary.json    headline numbers, written when the run finishes
    DIR/checkpoints/    step-N/ directories, each written to a temp name and renamed
    DIR/../runs.sqlite  index of every run in the parent directory (kind, status, summary)

Every file that a crash could leave half-written goes through a temp file + rename.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sqlite3
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from scalinglab.errors import UserError

INDEX_NAME = "runs.sqlite"


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(o: Any) -> Any:
    """Replace NaN/inf by None so every file we write is strict JSON."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_finite(obj), indent=indent, default=_json_default, allow_nan=False)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def open_index(root: str | os.PathLike) -> sqlite3.Connection:
    """The run index of directory `root` (created on first use)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / INDEX_NAME, timeout=30)
    db.execute(
        """CREATE TABLE IF NOT EXISTS runs (
            name TEXT PRIMARY KEY, kind TEXT, status TEXT, created REAL, updated REAL,
            config TEXT, summary TEXT)"""
    )
    return db


def list_runs(root: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """Rows of the index under `root` as dicts (config and summary decoded)."""
    if not (Path(root) / INDEX_NAME).exists():
        return []
    with open_index(root) as db:
        q = "SELECT name, kind, status, created, updated, config, summary FROM runs"
        rows = db.execute(q + (" WHERE kind = ?" if kind else "") + " ORDER BY created", (kind,) if kind else ()).fetchall()
    keys = ["name", "kind", "status", "created", "updated", "config", "summary"]
    out = []
    for r in rows:
        d = dict(zip(keys, r))
        d["config"] = json.loads(d["config"] or "{}")
        d["summary"] = json.loads(d["summary"] or "{}")
        d["path"] = str(Path(root) / d["name"])
        out.append(d)
    return out


class Run:
    """A run directory. `Run.create` starts one; `Run(path)` opens an existing one."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- creation ---------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, kind: str, config: dict, resume: bool = False) -> "Run":
        """Start (or with `resume`, reopen) the run at `path`.

        Refuses to overwrite a finished or started run unless resuming, so a typo never
        destroys results.
        """
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()) and not resume:
            if (run.path / "config.json").exists():
                raise UserError(f"{run.path}: a run already exists there (use --resume to continue it, or another --out)")
            raise UserError(f"{run.path}: directory is not empty")
        run.path.mkdir(parents=True, exist_ok=True)
        if resume and (run.path / "config.json").exists():
            saved = read_json(run.path / "config.json")
            changed = {k: (saved.get(k), v) for k, v in json.loads(dumps(config)).items() if saved.get(k) != v}
            if changed:  # the run continues as asked, but a resumed run is only exact with the saved settings
                warnings.warn(f"{run.path}: resuming with settings that differ from its config.json: "
                              + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()), UserWarning, stacklevel=2)
        else:
            atomic_write_json(run.path / "config.json", config)
        cmd = " ".join(shlex.quote(a) for a in sys.argv)
        with open(run.path / "command.txt", "a") as f:
            f.write(cmd + "\n")
        run._index(kind=kind, status="running", config=config)
        return run

    def _index(self, **fields: Any) -> None:
        now = time.time()
        try:
            with open_index(self.path.parent) as db:
                row = db.execute("SELECT name FROM runs WHERE name = ?", (self.path.name,)).fetchone()
                enc = {k: (dumps(v) if k in ("config", "summary") else v) for k, v in fields.items()}
                if row is None:
                    db.execute(
                        "INSERT INTO runs (name, kind, status, created, updated, config, summary) VALUES (?,?,?,?,?,?,?)",
                        (self.path.name, enc.get("kind"), enc.get("status"), now, now, enc.get("config", "{}"), enc.get("summary", "{}")),
                    )
                else:
                    sets = ", ".join(f"{k} = ?" for k in enc) + ", updated = ?"
                    db.execute(f"UPDATE runs SET {sets} WHERE name = ?", (*enc.values(), now, self.path.name))
        except sqlite3.Error as e:  # the index is a convenience; the run directory is the truth
            print(f"warning: run index not updated: {e}", file=sys.stderr)

    # -- contents ---------------------------------------------------------------
    @property
    def config(self) -> dict:
        return read_json(self.path / "config.json")

    @property
    def summary(self) -> dict:
        p = self.path / "summary.json"
        return read_json(p) if p.exists() else {}

    @property
    def finished(self) -> bool:
        return (self.path / "summary.json").exists()

    def log(self, record: dict) -> None:
        """Append one metrics record (a line of JSON) and flush it to disk."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(dumps(record) + "\n")
            f.flush()

    def metrics(self) -> list[dict]:
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line torn by a kill mid-write
                    continue
        return out

    def trim_metrics(self, last_step: int) -> None:
        """Keep only records with step <= last_step (used on resume)."""
        kept = [r for r in self.metrics() if r.get("step", -1) <= last_step]
        atomic_write_text(self.path / "metrics.jsonl", "".join(dumps(r) + "\n" for r in kept))

    def finish(self, summary: dict) -> None:
        atomic_write_json(self.path / "summary.json", summary)
        self._index(status="finished", summary=summary)

    def fail(self, reason: str) -> None:
        self._index(status=f"failed: {reason}")

    # -- checkpoints ------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> Iterator[tuple[int, Path]]:
        if not self.checkpoint_dir.exists():
            return iter(())
        items = []
        for p in self.checkpoint_dir.iterdir():
            if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit():
                items.append((int(p.name[5:]), p))
        return iter(sorted(items))

    def latest_checkpoint(self) -> Path | None:
        items = list(self.checkpoints())
        return items[-1][1] if items else None

    def new_checkpoint_tmp(self, step: int) -> Path:
        """A fresh temp directory to write checkpoint `step` into; see `commit_checkpoint`."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.checkpoint_dir, prefix=f".tmp-step-{step}-"))

    def commit_checkpoint(self, tmp: Path, step: int, keep: int = 2) -> Path:
        """Rename the finished temp directory into place and prune old checkpoints."""
        final = self.checkpoint_dir / f"step-{step}"
        if final.exists():
            _rmtree(final)
        os.replace(tmp, final)
        for _, old in list(self.checkpoints())[:-keep] if keep else []:
            _rmtree(old)
        return final


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)
