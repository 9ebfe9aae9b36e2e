"""`scalinglab run` interrupted or failing (issue 20 item 8): the summary says so, with no
"finished" time; finished stages are kept; a second process on the same directory is refused."""

import json
import subprocess
import sys

import pytest

import scalinglab.pipeline as pipeline
from scalinglab.errors import UserError
from scalinglab.pipeline.results import StageResult


@pytest.fixture
def two_stages(monkeypatch):
    """A pipeline of two trivial stages; `calls["boom"]` makes the second raise it once."""
    calls = {"boom": None}

    def first(ctx):
        return StageResult("first", {"x": 1.0})

    def second(ctx):
        if calls["boom"] is not None:
            exc, calls["boom"] = calls["boom"], None
            raise exc
        return StageResult("second", {"y": 2.0})

    monkeypatch.setattr(pipeline, "STAGES", [("first", first), ("second", second)])
    import scalinglab.report as report

    monkeypatch.setattr(report, "build_report", lambda root: root / "report.html")
    return calls


@pytest.mark.parametrize("exc,status", [(KeyboardInterrupt(), "interrupted"), (RuntimeError("bug"), "failed")])
def test_an_interrupted_or_failed_run_is_not_marked_finished(two_stages, tmp_path, exc, status):
    two_stages["boom"] = exc
    with pytest.raises(type(exc)):
        pipeline.run_pipeline("smoke", str(tmp_path / "r"))
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (s["status"], s["finished"]) == (status, None)
    assert s["stages"]["second"]["status"] == status and "first" in s["stages"]
    assert (tmp_path / "r" / "first" / "stage.json").exists() and not (
        tmp_path / "r" / "second" / "stage.json"
    ).exists()
    done = pipeline.run_pipeline("smoke", str(tmp_path / "r"), resume=True)
    assert done["status"] == "finished" and done["finished"] and set(done["stages"]) == {"first", "second"}


def test_a_second_process_on_the_same_run_is_refused(two_stages, tmp_path):
    hold = (
        "import sys, time\nfrom scalinglab.runs.store import DirLock\nfrom pathlib import Path\n"
        "Path(sys.argv[1]).mkdir()\nDirLock(Path(sys.argv[1]))\nprint('holding', flush=True)\ntime.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "r")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "holding"
        with pytest.raises(UserError, match=f"in use by pid {p.pid}"):
            pipeline.run_pipeline("smoke", str(tmp_path / "r"), resume=True)
    finally:
        p.kill()
        p.wait()
    assert pipeline.run_pipeline("smoke", str(tmp_path / "r"))["status"] == "finished"  # only the lock was there


def test_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        pipeline.run_pipeline("smoke", str(tmp_path / "f"))
