"""One directory per run, plus an SQLite index of runs beside them.

    DIR/config.json     the resolved config (a `--resume` with other settings is refused)
    DIR/command.txt     the command lines that made and resumed it
    DIR/metrics.jsonl   one JSON object per logged step (append-only; `--resume` trims
                        lines past the restored checkpoint so every step appears exactly once)
    DIR/summary.json    headline numbers, written when the run finishes
    DIR/checkpoints/    step-N/ directories, each written to a temp name and renamed
    DIR/.lock           held (flock) by the one process working on the run; names it
    DIR/../runs.sqlite  index of every run in the parent directory: kind, status (running,
                        finished, failed, interrupted), the reason, the pid, the summary

Every file that a crash could leave half-written goes through a temp file + rename. The
save / restore / resume mechanism the trainers share is `runs/checkpoint.py`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from scalinglab.errors import UserError

INDEX_NAME = "runs.sqlite"
LOCK_NAME = ".lock"
STATUSES = ("running", "finished", "failed", "interrupted")
# settings a resumed run may change: they do not change what is trained (see `Run.create`)
RESUMABLE_CHANGES = frozenset({"device", "checkpoint_every", "log_every", "backend", "ray_address", "ray_generators"})


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
    """Write `text` to `path` through a temp file + fsync + rename: readers see the old file or
    the new one, never half of one. An OS error (unwritable place, a file where a directory
    should be, a full disk) is a one-line UserError naming the path; no temp file is left."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise


def _write_error(path: Path, e: OSError) -> UserError:
    if disk_full(e):
        return _input_error(f"{path}: disk full (No space left on device)", path)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    why = f"{blocker} is a file" if blocker is not None else (e.strerror or str(e))
    return _input_error(f"{path}: cannot write there ({why})", path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def read_text(path: str | os.PathLike, what: str = "") -> str:
    """The text of a UTF-8 file the user named, or a one-line `UserError` naming it:
    missing, a directory, unreadable, or not UTF-8 (with the byte offset). `what` names
    the option (`--data`) in the message."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise _input_error(f"{name}: no such file", path)
    if path.is_dir():
        raise _input_error(f"{name}: is a directory, not a file", path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _input_error(f"{name}: cannot be read ({e.strerror or e})", path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _input_error(f"{name}: not UTF-8 text (byte {e.start}); is it a binary file?", path) from None


def _input_error(message: str, path: Path) -> UserError:
    e = UserError(message)
    e.input = str(path)  # the CLI puts it in --json's {"error", "input"}
    return e


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _input_error(f"{path}: not valid JSON ({e.msg} at line {e.lineno})", path) from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically as JSONL; returns the number of rows."""
    lines = [dumps(r) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a bad line gives an error naming the file and line."""
    path = Path(path)
    rows = []
    for i, line in enumerate(read_text(path).splitlines(), 1):  # missing, a directory, binary: one line naming it
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {i} is not a JSON object")
        rows.append(row)
    return rows


def disk_full(e: BaseException) -> bool:
    """Whether `e` says the disk (or quota) is full, whichever library raised it (OSError,
    safetensors' and torch's own errors carry the OS message in their text)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text


# -- the index --------------------------------------------------------------------------

_COLUMNS = ["name", "kind", "status", "created", "updated", "config", "summary", "reason", "pid"]


def open_index(root: str | os.PathLike) -> sqlite3.Connection:
    """The run index of directory `root` (created on first use; older indexes gain columns)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / INDEX_NAME, timeout=30)
    db.execute(
        """CREATE TABLE IF NOT EXISTS runs (
            name TEXT PRIMARY KEY, kind TEXT, status TEXT, created REAL, updated REAL,
            config TEXT, summary TEXT, reason TEXT, pid INTEGER)"""
    )
    have = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    for col, tp in (("reason", "TEXT"), ("pid", "INTEGER")):
        if col not in have:
            db.execute(f"ALTER TABLE runs ADD COLUMN {col} {tp}")
    return db


def list_runs(root: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """Rows of the index under `root` as dicts (config and summary decoded).

    A row still `running` whose process no longer holds the run's lock (killed, machine
    restarted) is reported as `interrupted`, its reason saying so."""
    if not (Path(root) / INDEX_NAME).exists():
        return []
    with open_index(root) as db:
        q = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        rows = db.execute(
            q + (" WHERE kind = ?" if kind else "") + " ORDER BY created", (kind,) if kind else ()
        ).fetchall()
    out = []
    for r in rows:
        d = dict(zip(_COLUMNS, r))
        d["config"] = json.loads(d["config"] or "{}")
        d["summary"] = json.loads(d["summary"] or "{}")
        d["path"] = str(Path(root) / d["name"])
        if d["status"] == "running" and lock_holder(d["path"]) is None:
            d["status"], d["reason"] = "interrupted", f"process {d['pid']} is gone (killed or crashed) while running"
        out.append(d)
    return out


# -- the lock ----------------------------------------------------------------------------


def lock_holder(path: str | os.PathLike) -> str | None:
    """Who holds the lock of run directory `path` ("pid N: command"), or None when nobody does."""
    import fcntl

    p = Path(path) / LOCK_NAME
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


_HELD: dict[str, "DirLock"] = {}  # locks this process holds, by run directory


class DirLock:
    """An exclusive flock on DIR/.lock, released by `release()` or when the process dies;
    a second process gets a one-line UserError naming the holder (pid, start, command).

    A run this same process still holds (a `Run` abandoned without `finish`, e.g. in a
    notebook) is taken over rather than refused: the lock guards against other processes."""

    def __init__(self, path: Path):
        import fcntl

        self.key = str(path.resolve())
        if self.key in _HELD:
            _HELD[self.key].release()
        self.fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 500, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(self.fd)
            raise UserError(f"{path}: in use by {holder}; wait for it to finish (or stop it) before resuming") from None
        cmd = " ".join(shlex.quote(a) for a in sys.argv)[:300]
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}: {cmd}\n".encode(), 0)
        _HELD[self.key] = self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None
            if _HELD.get(self.key) is self:
                del _HELD[self.key]


def _bookkeeping_only(path: Path) -> bool:
    return all(p.name == LOCK_NAME for p in path.iterdir())


def _abandoned_start(path: Path) -> bool:
    """A start killed (kill -9, power loss) before any work: only the lock, config.json and
    command.txt, and nobody holds the lock. Nothing is lost by starting it afresh."""
    return (
        all(p.name in (LOCK_NAME, "config.json", "command.txt") for p in path.iterdir()) and lock_holder(path) is None
    )


class Run:
    """A run directory. `Run.create` starts one (and locks it); `Run(path)` opens one to read."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock: DirLock | None = None
        self.new = False  # created by this process (a failed start removes it again: runs/checkpoint.py)
        self._made_dir = False
        self._made_index = False

    # -- creation ---------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, kind: str, config: dict, resume: bool = False) -> "Run":
        """Start (or with `resume`, reopen) the run at `path`, holding its lock.

        Refuses to overwrite a finished or started run unless resuming, so a typo never
        destroys results; refuses a run another process holds (naming it); refuses to resume
        with settings that change what is trained (naming each): a resumed run is exact only
        with its own settings, and `--resume` does not extend `steps` (the LR schedule and
        the summary are those of the configured length). Settings in `RESUMABLE_CHANGES`
        may change, and config.json then records them. A finished run is returned as is
        (not locked, status untouched).
        """
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise _input_error(f"--out {run.path}: is a file, not a run directory", run.path)
        if run.path.exists() and not _bookkeeping_only(run.path) and (resume or not _abandoned_start(run.path)):
            if not (run.path / "config.json").exists():
                raise _input_error(
                    f"{run.path}: directory is not empty" + (" and holds no run (no config.json)" if resume else ""),
                    run.path,
                )
            if not resume:
                raise _input_error(
                    f"{run.path}: a run already exists there (use --resume to continue it, or another --out)", run.path
                )
        config = json.loads(dumps(config))
        try:
            run._made_dir = not run.path.exists()
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _input_error(
                f"--out {run.path}: cannot create the run directory ({e.strerror or e})", run.path
            ) from None
        try:
            run._lock = DirLock(run.path)  # first: a run another process holds is refused as such
        except OSError as e:
            run._undo_dir()
            raise _input_error(f"--out {run.path}: cannot write there ({e.strerror or e})", run.path) from None
        except UserError:
            run._undo_dir()
            raise
        try:
            saved = read_json(run.path / "config.json") if resume and (run.path / "config.json").exists() else None
            if saved is not None:
                _check_resumable(run.path, saved, config, finished=run.finished)
                if run.finished:
                    run.release()
                    return run
            run.new = saved is None
            if run.new or saved != config:
                atomic_write_json(run.path / "config.json", config)
            cmd = " ".join(shlex.quote(a) for a in sys.argv)
            with open(run.path / "command.txt", "a") as f:
                f.write(cmd + "\n")
            run._made_index = not (run.path.parent / INDEX_NAME).exists()
            run._index(kind=kind, status="running", config=config, reason=None, pid=os.getpid())
        except BaseException:
            run.release()
            run._undo_dir()
            raise
        return run

    def _undo_dir(self) -> None:
        """Remove the directory `create` made if nothing but the lock is in it."""
        if self._made_dir and self.path.is_dir() and _bookkeeping_only(self.path):
            _rmtree(self.path)

    def _index(self, **fields: Any) -> None:
        now = time.time()
        try:
            with open_index(self.path.parent) as db:
                row = db.execute("SELECT name FROM runs WHERE name = ?", (self.path.name,)).fetchone()
                enc = {k: (dumps(v) if k in ("config", "summary") else v) for k, v in fields.items()}
                if row is None:
                    db.execute(
                        "INSERT INTO runs (name, kind, status, created, updated, config, summary, reason, pid) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            self.path.name,
                            enc.get("kind"),
                            enc.get("status"),
                            now,
                            now,
                            enc.get("config", "{}"),
                            enc.get("summary", "{}"),
                            enc.get("reason"),
                            enc.get("pid"),
                        ),
                    )
                else:
                    sets = ", ".join(f"{k} = ?" for k in enc) + ", updated = ?"
                    db.execute(f"UPDATE runs SET {sets} WHERE name = ?", (*enc.values(), now, self.path.name))
        except sqlite3.Error as e:  # the index is a convenience; the run directory is the truth
            print(f"warning: run index not updated: {e}", file=sys.stderr)

    def status(self) -> dict:
        """This run's row of the index ({} when it has none), stale `running` resolved."""
        rows = [r for r in list_runs(self.path.parent) if r["name"] == self.path.name]
        return rows[0] if rows else {}

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
        for line in p.read_text(errors="replace").splitlines():
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

    # -- status -----------------------------------------------------------------
    def finish(self, summary: dict) -> None:
        atomic_write_json(self.path / "summary.json", summary)
        self._index(status="finished", summary=summary, reason=None)
        self.release()

    def fail(self, reason: str) -> None:
        self._index(status="failed", reason=reason[:500])

    def interrupt(self, reason: str = "interrupted (Ctrl-C)") -> None:
        self._index(status="interrupted", reason=reason)

    def release(self) -> None:
        """Drop the run's lock (also dropped when the process ends, however it ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def discard(self) -> None:
        """Remove what `create` made for a new run (a failed start leaves nothing behind)."""
        if not self.new:
            return
        self.release()
        try:
            with open_index(self.path.parent) as db:
                db.execute("DELETE FROM runs WHERE name = ?", (self.path.name,))
                empty = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        except sqlite3.Error:
            empty = False
        if empty and self._made_index:
            (self.path.parent / INDEX_NAME).unlink(missing_ok=True)
        if self._made_dir:
            _rmtree(self.path)
        else:  # the directory was empty when `create` ran: everything in it is this run's
            for p in list(self.path.iterdir()):
                _rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        self.new = False

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

    def clear_partial_checkpoints(self) -> None:
        """Remove temp directories a killed or disk-full save left (only the lock holder may)."""
        if self.checkpoint_dir.exists():
            for p in self.checkpoint_dir.glob(".tmp-step-*"):
                _rmtree(p)


def _same(key: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if key == "model" and isinstance(a, str) and isinstance(b, str):  # one model named two ways
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return False


def _check_resumable(path: Path, saved: dict, config: dict, finished: bool) -> None:
    """Refuse (one line) a resume whose settings would train something else in `path`."""
    keys = [
        k
        for k in dict.fromkeys([*saved, *config])
        if k not in RESUMABLE_CHANGES and not _same(k, saved.get(k), config.get(k))
    ]
    if not keys:
        return
    diff = ", ".join(f"{k} {saved.get(k)!r} -> {config.get(k)!r}" for k in keys)
    if set(keys) <= {"steps", "tokens"}:
        state = "has finished" if finished else "was started"
        raise _input_error(
            f"{path}: --resume does not extend or shorten a run ({diff}): it {state} with that length, and its "
            "learning-rate schedule and summary are those of it; for more steps start a new run "
            "(post-training can start from this one with --model), or resume with the saved value",
            path,
        )
    raise _input_error(
        f"{path}: --resume with settings that differ from its config.json ({diff}); a resumed run keeps its "
        "settings: repeat them, or use another --out",
        path,
    )


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)
