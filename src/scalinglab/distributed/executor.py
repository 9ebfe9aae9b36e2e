"""A small executor interface (submit work, gather results), run in-process or on Ray.

    ex = make_executor("ray", address="auto")       # or "local" (the default; never imports Ray)
    handles = [ex.submit(train_rung, spec, resources=Resources(num_cpus=1)) for spec in specs]
    results = ex.gather(handles, on_result=lambda i, r: print(i, r))  # results in submission order
    ex.close()

Stages (the scaling ladder, synthetic data, evaluation) are written against `Executor`, so the
same code runs sequentially in this process or as Ray tasks on a cluster.

- `LocalExecutor`: runs each submitted call when it is gathered, one after another, in this
  process; with `workers` > 1, up to that many at once in fresh (spawned) processes of this
  machine. No retries: an exception propagates (a crash of this process ends the stage; a rerun
  picks up where the stage's own bookkeeping left it, e.g. finished rungs are reused).
- `RayExecutor`: each call is a Ray task (`ray.remote(fn).options(num_cpus, num_gpus, max_retries)`).
  A task whose worker process dies (killed, OOM, lost node) is re-executed up to `max_retries`
  times by Ray; an exception raised by the function itself is NOT retried (it is a bug or bad
  input, and retrying would only repeat it). The function must therefore be safe to run again
  from the start: it must clean up or resume the partial output of a killed attempt.
  `ray.init(address=...)` joins a running cluster ("auto" finds the local head started with
  `ray start --head`); without an address it reuses an initialised Ray or starts a fresh local
  instance (shut down again by `close()`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from scalinglab.errors import UserError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Resources:
    """What one unit of work needs; only the Ray backend acts on it."""

    num_cpus: float = 1.0  # CPUs reserved for the task (Ray also sets OMP_NUM_THREADS from it)
    num_gpus: float = 0.0  # GPUs (fractions share a device)
    max_retries: int = 3  # re-executions after the worker process dies (not after an exception)


class Executor(Protocol):
    name: str

    def submit(self, fn: Callable[..., Any], *args: Any, resources: Resources | None = None, **kwargs: Any) -> Any:
        """Schedule `fn(*args, **kwargs)`; returns a handle for `gather`."""

    def gather(self, handles: Sequence[Any], on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Wait for every handle; results in submission order. `on_result(i, result)` is called as each
        finishes (completion order). The first failure is raised after the others have finished."""

    def close(self) -> None: ...


class LocalExecutor:
    """In-process sequential execution (the default backend), or a pool of `workers` processes on this machine."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))

    def submit(self, fn, *args, resources: Resources | None = None, **kwargs):
        return (fn, args, kwargs)  # run lazily in gather, so on_result reports progress as work ends

    def gather(self, handles, on_result=None):
        if self.workers > 1 and len(handles) > 1:
            return self._gather_pool(handles, on_result)
        out = []
        for i, (fn, args, kwargs) in enumerate(handles):
            r = fn(*args, **kwargs)
            if on_result:
                on_result(i, r)
            out.append(r)
        return out

    def _gather_pool(self, handles, on_result):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: a forked child of a process that has started torch's thread pool can hang
        ctx = multiprocessing.get_context("spawn")
        out: list[Any] = [None] * len(handles)
        first: BaseException | None = None
        with ProcessPoolExecutor(max_workers=min(self.workers, len(handles)), mp_context=ctx) as pool:
            futures = {pool.submit(fn, *args, **kwargs): i for i, (fn, args, kwargs) in enumerate(handles)}
            try:
                for f in as_completed(futures):
                    i = futures[f]
                    try:
                        out[i] = f.result()
                    except BaseException as e:  # raised once the others have finished, as the protocol says
                        first = first or e
                        continue
                    if on_result:
                        on_result(i, out[i])
            except BaseException:  # Ctrl-C: drop what has not started; running work stops with this process
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        if first is not None:
            raise first
        return out

    def close(self) -> None:
        pass


def local_workers(threads: int, requested: int = 0) -> int:
    """Processes for the local backend: `requested`, or (0) as many as this process's CPUs hold `threads` each."""
    if requested:
        return requested
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, threads))


def import_ray():
    """Ray, or a UserError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(
            "--backend ray needs Ray: pip install 'scalinglab[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(
            f"--address {address}: no Ray head reachable there ({e.strerror or e}); start one with `ray start --head`"
        ) from None


def _token_auth_for_clients() -> None:
    """Send the cluster token when joining a cluster. Ray >= 2.5x heads enable token auth when a token
    exists (~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH), but a client joining with an
    address did not send it unless RAY_AUTH_MODE=token was set (measured with Ray 2.60)."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or Path("~/.ray/auth_token").expanduser().exists()
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to (or start) Ray; returns True when this call started it (and so should shut it down)."""
    if address:
        check_reachable(address)
        _token_auth_for_clients()  # before Ray is imported: it reads its auth mode once
    ray = import_ray()
    if ray.is_initialized():
        return False
    # "local": a fresh instance for this process, never a cluster some earlier `ray start` left
    # recorded in /tmp/ray (ray.init() alone would try to join it); use --address auto for that
    # log_to_driver=False: workers' log lines would otherwise land on the driver's stdout and break `--json`
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "address": address or "local"}
    if not address and num_cpus is not None:
        kw["num_cpus"] = num_cpus
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise UserError(f"--address {address}: cannot join a Ray cluster there ({e})") from None
    return True


class RayExecutor:
    """Each submitted call is a Ray task with its resource needs and retries on worker death."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self._owns = init_ray(address, num_cpus)  # first: it may set Ray's auth mode before the import
        self.ray = import_ray()
        self._remote: dict[Callable, Any] = {}

    def submit(self, fn, *args, resources: Resources | None = None, **kwargs):
        r = resources or Resources()
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(fn)
        # retry_exceptions=False: only a dead worker is retried, never a Python exception
        opts = self._remote[fn].options(
            num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_retries=r.max_retries, retry_exceptions=False
        )
        return opts.remote(*args, **kwargs)

    def gather(self, handles, on_result=None):
        ray = self.ray
        index = {h: i for i, h in enumerate(handles)}
        results: list[Any] = [None] * len(handles)
        pending, first_error = list(handles), None
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for h in done:
                try:
                    results[index[h]] = r = ray.get(h)
                except Exception as e:  # keep gathering so finished work is not lost
                    log.error("ray task %d failed: %s", index[h], e)
                    first_error = first_error or e
                    continue
                if on_result:
                    on_result(index[h], r)
        if first_error is not None:
            cause = getattr(first_error, "cause", None)
            raise cause if isinstance(cause, Exception) else first_error
        return results

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns = False


def make_executor(
    backend: str = "local", address: str | None = None, num_cpus: int | None = None, workers: int = 1
) -> Executor:
    """The executor for `--backend` (and `--address` for Ray; `workers`: processes of the local backend)."""
    if backend == "local":
        if address:
            raise UserError("--address is only used with --backend ray")
        return LocalExecutor(workers)
    if backend == "ray":
        return RayExecutor(address, num_cpus)
    raise UserError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
