"""A small pool of persistent worker processes with a HARD per-call timeout.

Why processes and not threads: math-verify (and anything else built on `signal.alarm`)
can only time itself out on the main thread of the main interpreter, and SymPy can spin
inside C-level bignum arithmetic where no Python-level check ever runs. The only timeout
that always works is the one the parent enforces from outside: each call is sent to a
worker over a pipe; if no answer comes back within `timeout_s`, the worker's process group
is killed (SIGKILL) and a fresh worker takes its place. A worker that dies (segfault,
`os._exit`) is likewise replaced and only the call it was running is lost.

Each call's outcome is an `Outcome` with `kind` one of `ok`, `exception` (the function
raised), `timeout` or `crash`; callers map these onto verdicts so that a verifier failure
is never mistaken for a wrong answer.

Workers are plain `python -m scalinglab.verify.pool` subprocesses talking pickles over two
private pipes, not `multiprocessing` children: they never re-import the caller's
`__main__` (so a script without an `if __name__ == "__main__"` guard, a notebook or a
torch-heavy parent are all safe), and a worker's prints cannot corrupt the protocol (its
stdout goes to stderr). A worker announces itself only after its `initializer` has run,
and the clock for a call starts when the call is handed to a ready worker, so import and
warm-up time (about 0.6 s for math-verify) never count against a call's timeout.

What this does NOT do: it is not a sandbox. Functions run with the parent's privileges;
untrusted programs go through `scalinglab.verify.code` instead. POSIX only (pipes are
passed by file descriptor).
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

_MAX_START_FAILURES = 3


@dataclass(frozen=True)
class Outcome:
    """What became of one call: `kind` is ok | exception | timeout | crash."""

    kind: str
    value: Any = None  # the function's return value when kind == "ok"
    error: str = ""  # what went wrong otherwise
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def _spec(fn: Callable | str | None) -> str:
    """`module:qualname` for an importable callable (what the worker imports)."""
    if fn is None or isinstance(fn, str):
        return fn or ""
    mod, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not mod or not name or "<" in name or mod == "__main__":
        raise ValueError(f"{fn!r} is not an importable top-level callable")
    return f"{mod}:{name}"


def _resolve(spec: str) -> Callable:
    mod, _, name = spec.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _worker_main(rfd: int, wfd: int, fn_spec: str, init_spec: str, memory_mb: int) -> None:
    conn_in, conn_out = Connection(rfd, writable=False), Connection(wfd, readable=False)
    # The parent handles Ctrl-C and kills us; dying of SIGINT mid-call would only turn a
    # clean shutdown into a spurious "crash". Prints go to stderr, never into the protocol.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(2, 1)
    if memory_mb > 0:
        try:  # a runaway allocation becomes a MemoryError instead of swapping the host
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    try:
        fn = _resolve(fn_spec)
        if init_spec:
            _resolve(init_spec)()
    except BaseException as e:
        conn_out.send(("start-failed", f"{type(e).__name__}: {e}"))
        return
    conn_out.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn_in.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, args = msg
        try:
            reply = (idx, "ok", fn(*args))
        except MemoryError:
            reply = (idx, "exception", "MemoryError: the worker's memory limit was reached")
        except BaseException as e:
            reply = (idx, "exception", f"{type(e).__name__}: {e}"[:500])
        try:
            conn_out.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # unpicklable result
            conn_out.send((idx, "exception", f"could not send result back: {type(e).__name__}: {e}"[:500]))


class _Worker:
    def __init__(self, fn_spec: str, init_spec: str, memory_mb: int):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        # Same import path as the parent, like multiprocessing's spawn does.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scalinglab.verify.pool",
                str(to_child_r),
                str(from_child_w),
                fn_spec,
                init_spec,
                str(memory_mb),
            ],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, killed as a whole
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.send_conn = Connection(to_child_w, readable=False)
        self.recv_conn = Connection(from_child_r, writable=False)
        self.ready = False
        self.job: tuple[int, float, float] | None = None  # (index, start time, deadline)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.send_conn.close()
        self.recv_conn.close()


class WorkerPool:
    """`workers` persistent processes that run `fn(*args)` with a hard per-call timeout.

    `fn` and `initializer` are importable top-level callables or `"module:qualname"`
    strings (the worker imports them). `memory_mb` sets RLIMIT_AS in each worker.
    """

    def __init__(
        self,
        fn: Callable | str,
        workers: int = 2,
        initializer: Callable | str | None = None,
        memory_mb: int | None = None,
    ):
        if not isinstance(workers, int) or workers < 1:
            from scalinglab.errors import UserError

            raise UserError(f"--workers {workers}: a pool needs at least one worker (0 picks the default)")
        self._fn, self._init = _spec(fn), _spec(initializer)
        self.memory_mb = memory_mb or 0
        self.n_workers = workers
        self._workers: list[_Worker] = []
        self.replaced = 0  # workers killed or lost and replaced, over the pool's life

    def _spawn(self) -> _Worker:
        return _Worker(self._fn, self._init, self.memory_mb)

    def _ensure(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._spawn())

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = self._spawn()
        self.replaced += 1

    def map(self, calls: Sequence[tuple], timeout_s: float) -> list[Outcome]:
        """Run `fn(*args)` for each args tuple in `calls`; outcomes in the same order."""
        self._ensure()
        out: list[Outcome | None] = [None] * len(calls)
        pending = deque(range(len(calls)))
        start_failures, last_start_error = 0, "they exit during start-up"
        while pending or any(w.job for w in self._workers):
            now = time.monotonic()
            for w in self._workers:  # hand work to every ready, idle worker
                if w.ready and w.job is None and pending:
                    i = pending.popleft()
                    try:
                        w.send_conn.send((i, calls[i]))
                        w.job = (i, now, now + timeout_s)
                    except OSError:  # died while idle: the call goes to a fresh worker
                        pending.appendleft(i)
                        self._replace(w)
            deadlines = [w.job[2] for w in self._workers if w.job]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 5.0
            by_conn = {w.recv_conn: w for w in self._workers}
            answered: set[int] = set()
            for conn in wait(list(by_conn), timeout=wait_s):
                w = by_conn[conn]
                answered.add(id(w))
                try:
                    msg = conn.recv()
                except (EOFError, OSError):  # the process ended without a message
                    msg = None
                if msg is None:
                    try:
                        code = w.proc.wait(timeout=1)
                    except subprocess.TimeoutExpired:
                        code = "?"
                    if w.job:
                        i, t0, _ = w.job
                        out[i] = Outcome(
                            "crash", error=f"worker died (exit code {code})", seconds=time.monotonic() - t0
                        )
                    elif not w.ready:
                        start_failures += 1
                    self._replace(w)
                elif msg[0] == "ready":
                    w.ready, start_failures = True, 0
                elif msg[0] == "start-failed":
                    start_failures, last_start_error = start_failures + 1, msg[1]
                    self._replace(w)
                else:
                    i, kind, payload = msg
                    t0 = w.job[1] if w.job else time.monotonic()
                    secs = time.monotonic() - t0
                    out[i] = (
                        Outcome("ok", value=payload, seconds=secs)
                        if kind == "ok"
                        else Outcome(kind, error=payload, seconds=secs)
                    )
                    w.job = None
            if start_failures >= _MAX_START_FAILURES:
                raise RuntimeError(f"worker processes cannot start: {last_start_error}")
            now = time.monotonic()
            for w in list(self._workers):  # the hard timeout: kill and replace
                if w.job and now >= w.job[2] and id(w) not in answered:
                    i, t0, _ = w.job
                    out[i] = Outcome(
                        "timeout", error=f"no result within {timeout_s:g}s; worker killed", seconds=now - t0
                    )
                    self._replace(w)
        return list(out)  # type: ignore[arg-type]

    def close(self) -> None:
        for w in self._workers:
            try:
                w.send_conn.send(None)
            except OSError:
                pass
        for w in self._workers:
            try:
                w.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self._workers = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":  # the worker side: python -m scalinglab.verify.pool RFD WFD FN INIT MEM
    _worker_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
