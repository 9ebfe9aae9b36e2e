"""Run directories under real signals, a second process and a full disk (issue 20, items
1, 2, 6, 7 and 8), through the installed command line.

Each test starts real processes (a few seconds each); the in-process versions of these
checks are in test_runs_checkpoint.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab.errors import UserError
from scalinglab.runs import Run, list_runs

EXE = str(Path(sys.executable).with_name("scalinglab"))
TINY = [
    "--depth",
    "1",
    "--set",
    "batch_size=2",
    "--set",
    "seq_len=32",
    "--set",
    "eval_problems=0",
    "--set",
    "val_tokens=256",
    "--set",
    "device=cpu",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: one torch thread is faster and steady on a busy machine
HOLD = (
    "import sys, time\nfrom scalinglab.runs import Run\n"
    "Run.create(sys.argv[1], kind='x', config={})\nprint('holding', flush=True)\ntime.sleep(120)\n"
)


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path}: fewer than {n} lines before the process ended (rc={proc.poll()})")


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_is_reported(tmp_path):
    """Item 2 (lock) and item 6 (a stale `running` whose process is gone)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "r")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(UserError, match=rf"in use by pid {holder.pid} since .*: .*-c") as e:
            Run.create(tmp_path / "r", kind="x", config={}, resume=True)
        assert "\n" not in str(e.value)
        assert list_runs(tmp_path)[0]["status"] == "running"
        r = subprocess.run(
            [EXE, "pretrain", *TINY, "--steps", "3", "--out", str(tmp_path / "r"), "--resume"],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
        )
        assert r.returncode == 2 and f"in use by pid {holder.pid}" in _one_line(r.stderr)
    finally:
        holder.kill()
        holder.wait()
    row = list_runs(tmp_path)[0]
    assert row["status"] == "interrupted" and f"process {holder.pid} is gone" in row["reason"]
    Run.create(tmp_path / "r", kind="x", config={}, resume=True).finish({})  # the lock died with its process
    assert list_runs(tmp_path)[0]["status"] == "finished"


def test_sigkill_before_the_first_checkpoint_then_resume_logs_every_step_once(tmp_path):
    """Item 1: pretrain (checkpoint_every=0) killed mid-run, then --resume: no duplicated steps."""
    out = tmp_path / "R"
    args = [EXE, "pretrain", *TINY, "--steps", "100", "--set", "log_every=5", "--out", str(out), "--json"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _wait_for_lines(out / "metrics.jsonl", 3, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert list_runs(tmp_path)[0]["status"] == "interrupted"
    r = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _steps(out) == list(range(5, 101, 5))
    assert list_runs(tmp_path)[0]["status"] == "finished"


def test_sigterm_marks_the_run_interrupted_and_exits_130(tmp_path):
    """Item 8 for a training run: a plain `kill` is an interruption, recorded and reported."""
    out = tmp_path / "R"
    p = subprocess.Popen(
        [EXE, "pretrain", *TINY, "--steps", "5000", "--set", "log_every=10", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _wait_for_lines(out / "metrics.jsonl", 2, p)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "interrupted; finished work is kept" in err and "Traceback" not in err
    row = list_runs(tmp_path)[0]
    assert (row["status"], row["reason"]) == ("interrupted", "interrupted (SIGTERM)")
    assert not (out / "summary.json").exists()


def _unshare_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mkdir -p /tmp/.sl-probe && mount -t tmpfs -o size=64k tmpfs /tmp/.sl-probe"],
        capture_output=True,
    )
    return r.returncode == 0


@pytest.mark.skipif(
    not _unshare_ok(), reason="needs unshare -rm to mount a private tmpfs (the ENOSPC monkeypatch test still runs)"
)
def test_full_disk_on_a_tmpfs_is_one_line_and_a_resume_leaves_no_temp_checkpoint(tmp_path):
    """Item 7 on a real full disk: a 900 KiB tmpfs holds one checkpoint of the depth-1 model, not two."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = " ".join(
        [
            EXE,
            "pretrain",
            *TINY,
            "--steps",
            "40",
            "--set",
            "checkpoint_every=10",
            "--set",
            "log_every=5",
            "--out",
            str(mnt / "r"),
        ]
    )
    script = f"""
mount -t tmpfs -o size=900k tmpfs {mnt} || exit 99
{args} > /dev/null 2> {tmp_path}/err1; echo $? > {tmp_path}/rc1
ls -a {mnt}/r/checkpoints > {tmp_path}/ls1
mount -o remount,size=64m {mnt}
{args} --resume > /dev/null 2> {tmp_path}/err2; echo $? > {tmp_path}/rc2
ls -a {mnt}/r/checkpoints > {tmp_path}/ls2
cp {mnt}/r/metrics.jsonl {tmp_path}/metrics.jsonl
"""
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr
    err1 = (tmp_path / "err1").read_text()
    assert (tmp_path / "rc1").read_text().strip() == "2"
    assert "disk full" in _one_line(err1)
    assert not [n for n in (tmp_path / "ls1").read_text().split() if n.startswith(".tmp-step")]
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "err2").read_text()[-2000:]
    assert not [n for n in (tmp_path / "ls2").read_text().split() if n.startswith(".tmp-step")]
    assert _steps(tmp_path) == list(range(5, 41, 5))


def test_a_sweep_on_a_ladder_another_process_holds_is_refused(tmp_path, capsys):
    from scalinglab.cli import main

    hold = (
        "import sys, time\nfrom pathlib import Path\nfrom scalinglab.runs.store import DirLock\n"
        "Path(sys.argv[1]).mkdir()\nDirLock(Path(sys.argv[1]))\nprint('holding', flush=True)\ntime.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "L")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "holding"
        with pytest.raises(SystemExit) as e:
            main(["sweep", "pretrain", "--depths", "1", "--tokens", "1e3", "--out", str(tmp_path / "L")])
        assert e.value.code == 2 and f"in use by pid {p.pid}" in _one_line(capsys.readouterr().err)
    finally:
        p.kill()
        p.wait()
    assert sorted(x.name for x in (tmp_path / "L").iterdir()) == [".lock"]  # nothing trained, nothing removed


def test_a_start_killed_before_any_work_does_not_block_the_same_command(tmp_path):
    """kill -9 right after `Run.create` leaves only the lock, config.json and command.txt: the
    command run again starts afresh (commands without --resume, such as eval, were refused);
    while the start is alive and holds its lock, a second one is refused."""
    out = tmp_path / "R"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(UserError, match="already exists"):
            Run.create(out, kind="x", config={"a": 1})
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    assert sorted(p.name for p in out.iterdir()) == [".lock", "command.txt", "config.json"]
    run = Run.create(out, kind="x", config={"a": 1})  # starts afresh with its own settings
    try:
        assert json.loads((out / "config.json").read_text()) == {"a": 1}
    finally:
        run.release()
    (out / "metrics.jsonl").write_text('{"step": 0}\n')  # a start that did work is never overwritten
    with pytest.raises(UserError, match="already exists"):
        Run.create(out, kind="x", config={"a": 1})
