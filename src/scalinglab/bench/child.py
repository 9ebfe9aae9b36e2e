"""One call in a fresh process: how the benchmark runs the engines that must not share a process.

CTranslate2 and llama.cpp bring their own thread runtimes (a bundled libgomp, ggml's spinning
thread pool). In the benchmark's own process they slow their neighbours: after one CTranslate2
call `transformers` ran 25% slower, and a second, idle CTranslate2 `Generator` slowed the first
3x (2026-12-02). So each timed call of theirs runs in a fresh "spawn" child, which loads the model,
warms up, times one run and exits. This module imports neither torch nor those engines.
"""

from __future__ import annotations

import traceback


def _child(conn, fn, args: tuple) -> None:
    """Child process: send ("ok", fn(*args)) or ("error", the traceback), then exit."""
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_in_child(fn, *args, what: str = "child"):
    """fn(*args) in a fresh spawn child process (fn a module-level function); its return value.

    A failure in the child is raised here as a RuntimeError with the child's traceback; a child
    that dies without answering (a segfault) as a RuntimeError with its exit code, not a hang."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(writer, fn, args))
    proc.start()
    writer.close()  # the child holds the only writer now: if it dies, recv() ends instead of waiting forever
    try:
        status, payload = reader.recv()
    except EOFError:
        proc.join(timeout=60)
        raise RuntimeError(f"the {what} process died (exit code {proc.exitcode})") from None
    finally:
        reader.close()
    proc.join(timeout=60)
    if status != "ok":
        raise RuntimeError(f"{what} failed in its child process:\n{payload}")
    return payload
