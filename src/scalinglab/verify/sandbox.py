"""Process isolation for untrusted candidate programs: bubblewrap + rlimits, a weaker fallback,
and a pool of warm (pre-started) sandboxes.

Each program runs once, in a fresh interpreter that nothing else ever used, started by the
in-sandbox runner (`_sandbox_runner.py`, fed to `python -I -S -B -c`):

* **bwrap mode** (bubblewrap, https://github.com/containers/bubblewrap): new mount, PID, network,
  IPC and UTS namespaces; the filesystem is an empty read-only root holding only `/usr` (and its
  `/lib*`, `/bin` links) and the Python prefix read-only, a fresh `/proc` and `/dev`, and a
  private size-capped tmpfs `/tmp` as working directory; a clean environment; no network (only
  a loopback of its own); `--die-with-parent` and a new session. When the host runs as root,
  bwrap keeps only CAP_SETUID/CAP_SETGID and the runner drops to a fresh unused uid (a new one
  for every program), so RLIMIT_NPROC counts that program alone and it cannot signal or read
  anything of another uid. As a normal user, bwrap makes a user namespace and the program keeps
  the user's uid (RLIMIT_NPROC then counts the user's other processes too).
* **rlimits** (set by the runner before the program is compiled): CPU seconds, address space,
  processes, file size, open files; no core dumps. The parent enforces wall time and output
  size (stdout+stderr and the result channel) and kills the whole sandbox at the end; ending
  PID 1 of the PID namespace kills every process the program started, daemons included.
* **fallback** (no working bwrap): rlimits, a private temporary directory as cwd, a clean
  environment, `unshare --net --pid --ipc --uts --fork --kill-child` when that works, and a
  fresh uid when root and the Python runtime is readable by other users. A loud
  `SandboxWarning` lists what is then not covered; `Isolation.describe()` says which mode
  ran (for verdicts and `--json`), and `untrusted_isolation("auto")` refuses the fallback
  unless the user names it (`--sandbox fallback` or SCALINGLAB_SANDBOX=fallback).

What this does NOT protect against (either mode):

* kernel exploits and bugs in bubblewrap or the kernel (no seccomp filter, no VM boundary);
* side channels, and CPU/memory-bandwidth contention slowing other work on the host;
* memory that rlimits do not count: RLIMIT_AS is per process, so up to `nproc` processes may
  each use `memory_mb` (no cgroup memory limit), and the kernel's page cache;
* reading the host's `/usr` and the Python installation (read-only, but visible);
* in fallback mode, additionally: the host filesystem is visible (and writable wherever the
  program's uid may write), the network is reachable if `unshare` failed, and without a PID
  namespace a daemon that escapes the process group outlives the run unless a fresh uid let us
  kill it by uid.

The result channel is not trusted either: the parent parses it as JSON and compares it with
expected outputs that never enter the sandbox (see `code.py`).
"""

from __future__ import annotations

import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from scalinglab.errors import UserError

RUNNER_SOURCE = (Path(__file__).with_name("_sandbox_runner.py")).read_text()
PYTHON = os.path.realpath(sys.executable)  # the real interpreter, not a venv symlink
STARTUP_S = 10.0  # how long a sandbox may take to say "ready" before it counts as broken
_UID_BASE = 1_000_000 + (os.getpid() % 4000) * 1000  # per host process, so two judges never share a uid
_uid_counter = count()


class SandboxWarning(UserWarning):
    """Isolation is weaker than bwrap mode; the message lists what is not covered."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one candidate program (all of its processes)."""

    wall_s: float = 5.0  # wall-clock seconds from the job's arrival to the last result
    cpu_s: int = 6  # RLIMIT_CPU seconds, per process (SIGXCPU, then SIGKILL one second later)
    memory_mb: int = 512  # RLIMIT_AS, per process: a MemoryError beyond it
    nproc: int = 32  # RLIMIT_NPROC: processes + threads of the program's uid
    fsize_mb: int = 16  # RLIMIT_FSIZE: the largest file it may write
    nofile: int = 64  # RLIMIT_NOFILE: open file descriptors
    tmp_mb: int = 64  # size of the private tmpfs working directory (bwrap mode)
    output_bytes: int = 1_000_000  # the program's stdout+stderr
    result_bytes: int = 16_000_000  # the result channel (the JSON of all return values)


@dataclass(frozen=True)
class Isolation:
    """How sandboxes are started on this host, decided once by probing."""

    mode: str  # "bwrap" or "fallback"
    drop_uid: bool  # run each program under a fresh unused uid (host is root)
    unshare: tuple[str, ...] = ()  # fallback: the `unshare ...` prefix that worked, or ()
    not_covered: tuple[str, ...] = field(default_factory=tuple)
    nproc_base: int = 0  # processes the uid already has, added to RLIMIT_NPROC when not dropping
    reason: str = ""  # fallback: why bwrap was not used

    def describe(self) -> dict:
        """The isolation level, for every verdict and `--json` output: mode, and what it does not cover."""
        return {"mode": self.mode, "reason": self.reason or None, "not_covered": list(self.not_covered)}

    def argv(self, limits: SandboxLimits, uid: int) -> list[str]:
        ids = [str(uid), str(uid)] if self.drop_uid else ["-1", "-1"]
        runner = [PYTHON, "-I", "-S", "-B", "-c", RUNNER_SOURCE, *ids]
        if self.mode == "fallback":
            return [*self.unshare, *runner]
        return [*_bwrap_args(limits, as_root=self.drop_uid), *runner]


def _bwrap_args(limits: SandboxLimits, as_root: bool) -> list[str]:
    if as_root:  # real root: namespaces without a user namespace, then the runner drops to a fresh uid
        ns = [
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
        ]
    else:
        ns = ["--unshare-all"]
    args = ["bwrap", *ns, "--die-with-parent", "--new-session"]
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        # bwrap would create missing parents with the host's modes (e.g. /root 0700), which the
        # dropped uid could not traverse: create them world-searchable first.
        for parent in reversed(Path(prefix).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", prefix, prefix]
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(limits.tmp_mb << 20),
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
        "--clearenv",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]
    return args


def _world_readable_path(path: str) -> bool:
    """True when every directory on the way to `path` lets other users through."""
    p = Path(path)
    return all(os.stat(q).st_mode & 0o001 for q in [p, *p.parents])


def _uid_task_count(uid: int) -> int:
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                n += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return n


def _probe(iso: Isolation) -> bool:
    """Start one sandbox and check it says ready; False when the namespaces cannot be made."""
    try:
        box = SandboxProcess(iso, SandboxLimits())
        ok = box.wait_ready(STARTUP_S)
        box.kill()
        return ok
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def isolation(force: str | None = None) -> Isolation:
    """Probe the host once: bwrap when it works, else the fallback (with a SandboxWarning).

    `force` (or the env var SCALINGLAB_SANDBOX) = "bwrap" | "fallback" picks a mode for tests.
    """
    force = force or os.environ.get("SCALINGLAB_SANDBOX") or None
    root = os.geteuid() == 0
    nproc_base = 0 if root else _uid_task_count(os.getuid())
    if force != "fallback" and shutil.which("bwrap"):
        iso = Isolation("bwrap", drop_uid=root, nproc_base=nproc_base)
        if _probe(iso):
            return iso
        reason = "bwrap is installed but could not create its namespaces here"
    else:
        reason = (
            "fallback mode requested"
            if force == "fallback"
            else "bwrap is not installed (scripts/install_system_deps.sh)"
        )
    if force == "bwrap":
        raise UserError(f"bwrap sandbox requested but unavailable: {reason}")
    drop = root and _world_readable_path(sys.base_prefix)
    unshare: tuple[str, ...] = ()
    if shutil.which("unshare"):
        cand = ("unshare", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child")
        if _probe(Isolation("fallback", drop, cand, nproc_base=nproc_base)):
            unshare = cand
    gaps = ["the host filesystem is visible to the program (readable, and writable where its uid may write)"]
    if not unshare:
        gaps += [
            "the network is reachable (no network namespace)",
            "no PID namespace: a daemon that leaves the process group outlives the run"
            + (" unless killed by uid" if drop else ""),
        ]
    if not drop:
        gaps.append(
            "the program runs as the host user: it may signal or read that user's processes and files"
            + ("; RLIMIT_NPROC does not bind root" if root else "")
        )
    iso = Isolation("fallback", drop, unshare, tuple(gaps), nproc_base, reason)
    warnings.warn(
        "SANDBOX FALLBACK ("
        + reason
        + "): untrusted code runs with rlimits only. NOT covered: "
        + "; ".join(gaps)
        + ".",
        SandboxWarning,
        stacklevel=2,
    )
    return iso


SANDBOX_CHOICES = ("auto", "bwrap", "fallback")


def untrusted_isolation(sandbox: str = "auto") -> Isolation:
    """The isolation for judging untrusted programs, refusing the weak fallback unless named.

    `sandbox`: "bwrap" (required), "fallback" (the user accepts rlimits only: host files
    visible and writable), or "auto": bwrap, and a one-line UserError instead of a silent
    fallback when bwrap does not work here (SCALINGLAB_SANDBOX=fallback also names it).
    """
    if sandbox not in SANDBOX_CHOICES:
        raise UserError(f"--sandbox {sandbox!r}: choose one of {', '.join(SANDBOX_CHOICES)}")
    if sandbox != "auto":
        return isolation(sandbox)
    iso = isolation()
    if iso.mode == "fallback" and os.environ.get("SCALINGLAB_SANDBOX") != "fallback":
        raise UserError(
            f"no bwrap sandbox here ({iso.reason}): untrusted code would run with rlimits only and could "
            "write host files; install bubblewrap, or accept that with --sandbox fallback"
        )
    return iso


@dataclass
class RawRun:
    """What came back from one sandbox run, before any judging."""

    ready: bool  # the runner started and said so
    events: list[dict]  # result lines that carried the nonce and parsed as JSON objects
    stop: str  # "done" | "status" | "eof" | "exited" | "deadline" | "output_limit" | "not_ready"
    returncode: int | None
    output_tail: str  # the last bytes of the program's stdout+stderr
    forged: int  # result lines without the nonce or not JSON (a program writing to our fd)
    seconds: float


class SandboxProcess:
    """One pre-started sandbox: waits for exactly one job, runs it, and is killed."""

    def __init__(self, iso: Isolation, limits: SandboxLimits):
        self.iso, self.limits = iso, limits
        self.uid = _UID_BASE + next(_uid_counter) % 1000 if iso.drop_uid else -1
        self.tmpdir = None
        cwd = None
        if iso.mode == "fallback":
            self.tmpdir = cwd = tempfile.mkdtemp(prefix="scalinglab-sandbox-")
            if iso.drop_uid:
                os.chown(self.tmpdir, self.uid, self.uid)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd or "/tmp"}
        self.proc = subprocess.Popen(
            iso.argv(limits, self.uid),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ, "res")
        self._sel.register(self.proc.stderr, selectors.EVENT_READ, "out")
        self._res, self._out_tail = bytearray(), bytearray()
        self._res_total = self._out_total = 0
        self._res_eof = False
        self._lines: deque[bytes] = deque()
        self.ready = False
        self.killed = False

    def _pump(self, timeout: float) -> None:
        """Read whatever both pipes have within `timeout` seconds."""
        for key, _ in self._sel.select(max(timeout, 0.0)):
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                self._sel.unregister(key.fileobj)
                self._res_eof |= key.data == "res"
            elif key.data == "res":
                self._res_total += len(chunk)
                self._res += chunk
                if b"\n" in chunk:  # split only then: a huge single line stays linear
                    *lines, rest = self._res.split(b"\n")
                    self._lines.extend(lines)
                    self._res = bytearray(rest)
            else:
                self._out_total += len(chunk)
                self._out_tail = (self._out_tail + chunk)[-2000:]

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready and not self._res_eof and time.monotonic() < deadline:
            if self._lines:
                self.ready = self._lines.popleft() == b'{"ready":true}'
                if not self.ready:
                    return False
                break
            self._pump(min(0.05, deadline - time.monotonic()))
        return self.ready

    def run(self, job: dict, nonce: str, limits: SandboxLimits | None = None) -> RawRun:
        """Send `job`, collect results until done / fault / wall limit / output limit, then kill.

        `limits` overrides the per-job limits (wall time, output); the rlimits travel in `job`.
        """
        from json import loads
        from marshal import dumps

        lim = limits or self.limits

        if not self.wait_ready(STARTUP_S):
            self.kill()
            return RawRun(False, [], "not_ready", self.proc.returncode, self._tail(), 0, 0.0)
        t0 = time.monotonic()
        deadline = t0 + lim.wall_s
        events: list[dict] = []
        forged = 0
        stop = ""
        try:
            self.proc.stdin.write(dumps({**job, "nonce": nonce}))
            self.proc.stdin.close()
        except BrokenPipeError:
            stop = "eof"
        exited_at = None
        while not stop:
            while self._lines and not stop:
                line = self._lines.popleft()
                try:
                    ev = loads(line[len(nonce) :]) if line.startswith(nonce.encode()) else None
                except ValueError:
                    ev = None
                if not isinstance(ev, dict):
                    forged += 1
                    continue
                events.append(ev)
                stop = "done" if ev.get("done") is True else "status" if "status" in ev else ""
            if stop:
                break
            now = time.monotonic()
            if self._out_total > lim.output_bytes or self._res_total > lim.result_bytes:
                stop = "output_limit"
            elif self._res_eof:
                stop = "eof"
            elif now >= deadline:
                stop = "deadline"
            elif exited_at is not None and now - exited_at > 0.2:
                stop = "exited"  # the sandbox is gone but something still holds the pipe
            else:
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = now
                self._pump(min(0.1, deadline - now))
        seconds = time.monotonic() - t0
        self.kill()
        return RawRun(True, events, stop, self.proc.returncode, self._tail(), forged, seconds)

    def _tail(self) -> str:
        return bytes(self._out_tail[-500:]).decode("utf-8", "replace")

    def kill(self) -> None:
        """Kill the sandbox and everything in it; remove its working directory."""
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.iso.drop_uid and self.iso.mode == "fallback":
            _kill_uid(self.uid)  # no PID namespace may hold them: the fresh uid finds the escapees
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        self._sel.close()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def _kill_uid(uid: int) -> None:
    for _ in range(50):  # a fork loop may race us; repeat until none is left
        pids = [int(p) for p in filter(str.isdigit, os.listdir("/proc")) if _owner(p) == uid]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


class WarmPool:
    """Pre-started sandboxes: each worker thread keeps one spare that is already waiting for a job.

    A spare is used for exactly one program, then killed; the next spare starts while the
    current program runs, so start-up overlaps with work.
    """

    def __init__(self, limits: SandboxLimits = SandboxLimits(), iso: Isolation | None = None):
        self.limits = limits
        self.iso = iso or isolation()
        self._local = threading.local()
        self._spares: set[SandboxProcess] = set()
        self._lock = threading.Lock()

    def _spawn(self) -> SandboxProcess:
        box = SandboxProcess(self.iso, self.limits)
        with self._lock:
            self._spares.add(box)
        return box

    def take(self) -> SandboxProcess:
        """A warm sandbox for this thread (a cold one if none), with the next spare started."""
        box = getattr(self._local, "spare", None)
        if box is None or box.killed:  # none yet, or killed by close()
            box = self._spawn()
        self._local.spare = self._spawn()
        with self._lock:
            self._spares.discard(box)
        return box

    def close(self) -> None:
        with self._lock:
            spares, self._spares = list(self._spares), set()
        for box in spares:
            box.kill()
