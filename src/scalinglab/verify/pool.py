"""A small pool of persistent worker processes with a HARD per-call timeout.

Why processes and not threads: math-verify (and anything else built on `signal.alarm`)
can only time itself out on the main thread of the main interpreter, and SymPy can spin
inside C-level bignum arithmetic where no Python-level check ever runs. The only timeout
that always works is the one the parent enforces from outside: each call is sent to a
worker over a pipe; if no answer comes back within `timeout_s`, the worker is killed
(SIGKILL) and a fresh one takes its place. A worker that dies (segfault, memory rlimit,
`os._exit`) is likewise replaced and only the call it was running is lost.

Each call's outcome is an `Outcome` with `kind` one of `ok`, `exception` (the function
raised), `timeout` or `crash`; callers map these onto verdicts so that a verifier failure
is never mistaken for a wrong answer.

Workers start with `forkserver` on Linux (the target's module is preloaded in the fork
server, so replacing a killed worker costs milliseconds, not a fresh SymPy import) and
`spawn` elsewhere. A worker announces itself only after its `initializer` has run, and the
clock for a call starts when the call is handed to a ready worker, so import and warm-up
time never count against a call's timeout.

What this does NOT do: it is not a sandbox. Functions run with the parent's privileges;
untrusted programs go through `scalinglab.verify.code` instead.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
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


def _worker_main(conn, fn: Callable, initializer: Callable | None, memory_mb: int | None) -> None:
    # The parent handles Ctrl-C and kills us; a worker dying of SIGINT mid-call would only
    # turn a clean shutdown into a spurious "crash".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_mb:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass  # not on this platform: the timeout still bounds a runaway call
    try:
        if initializer is not None:
            initializer()
    except BaseException as e:  # report the failed start; the parent counts it
        conn.send(("start-failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
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
            conn.send(reply)
        except Exception as e:  # e.g. an unpicklable return value
            conn.send((idx, "exception", f"could not send result back: {type(e).__name__}: {e}"[:500]))


class _Worker:
    def __init__(self, ctx, fn, initializer, memory_mb):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, initializer, memory_mb), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.job: tuple[int, float, float] | None = None  # (index, start time, deadline)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


def _default_context(preload: Sequence[str]):
    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        if preload:
            # Only effective before the fork server first starts; harmless afterwards.
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")


class WorkerPool:
    """`workers` persistent processes that run `fn(*args)` with a hard per-call timeout.

    `fn` and `initializer` must be importable top-level callables (they are pickled by
    reference). `memory_mb` sets RLIMIT_AS in each worker so a runaway allocation becomes
    a MemoryError (an `exception` outcome) instead of swapping the host.
    """

    def __init__(self, fn: Callable, workers: int = 2, initializer: Callable | None = None,
                 memory_mb: int | None = None, preload: Sequence[str] = ()):
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.fn, self.initializer, self.memory_mb = fn, initializer, memory_mb
        self.n_workers = workers
        self._ctx = _default_context(preload)
        self._workers: list[_Worker] = []
        self.replaced = 0  # workers killed or lost and replaced, over the pool's life

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, self.fn, self.initializer, self.memory_mb)

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
        start_failures = 0
        while pending or any(w.job for w in self._workers):
            now = time.monotonic()
            for w in self._workers:  # hand work to every ready, idle worker
                if w.ready and w.job is None and pending:
                    i = pending.popleft()
                    try:
                        w.conn.send((i, calls[i]))
                        w.job = (i, now, now + timeout_s)
                    except (BrokenPipeError, OSError):  # died while idle: retry on a fresh one
                        pending.appendleft(i)
                        self._replace(w)
            busy = [w for w in self._workers if w.job]
            deadlines = [w.job[2] for w in busy]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            handles = {}
            for w in self._workers:
                handles[w.conn] = w
                handles[w.proc.sentinel] = w
            ready_handles = wait(list(handles), timeout=wait_s)
            seen: set[int] = set()
            for h in ready_handles:
                w = handles[h]
                if id(w) in seen or w not in self._workers:
                    continue
                seen.add(id(w))
                msg = None
                if w.conn.poll():
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                if msg is None:  # the process ended without a message
                    w.proc.join(timeout=1)
                    code = w.proc.exitcode if w.proc.exitcode is not None else "?"
                    if w.job:
                        i, t0, _ = w.job
                        out[i] = Outcome("crash", error=f"worker died (exit code {code})", seconds=time.monotonic() - t0)
                    elif not w.ready:
                        start_failures += 1
                    self._replace(w)
                elif msg[0] == "ready":
                    w.ready, start_failures = True, 0
                elif msg[0] == "start-failed":
                    start_failures += 1
                    self._replace(w)
                    if start_failures >= _MAX_START_FAILURES:
                        raise RuntimeError(f"verifier workers cannot start: {msg[1]}")
                else:
                    i, kind, payload = msg
                    t0 = w.job[1] if w.job else time.monotonic()
                    secs = time.monotonic() - t0
                    out[i] = Outcome("ok", value=payload, seconds=secs) if kind == "ok" else Outcome(kind, error=payload, seconds=secs)
                    w.job = None
            if start_failures >= _MAX_START_FAILURES:
                raise RuntimeError("verifier workers cannot start (they exit during start-up)")
            now = time.monotonic()
            for w in list(self._workers):  # the hard timeout: kill and replace
                if w.job and now >= w.job[2] and id(w) not in seen:
                    i, t0, _ = w.job
                    out[i] = Outcome("timeout", error=f"no result within {timeout_s:g}s; worker killed", seconds=now - t0)
                    self._replace(w)
        return [o for o in out]  # type: ignore[misc]

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.proc.join(timeout=1)
            w.kill()
        self._workers = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
