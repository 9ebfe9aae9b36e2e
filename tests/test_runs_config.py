"""Run store (atomic files, index, checkpoints, metrics trimming) and config overrides."""

from dataclasses import dataclass
from typing import Literal

import pytest

from scalinglab.config import override
from scalinglab.errors import UserError
from scalinglab.runs import Run, list_runs
from scalinglab.runs.store import atomic_write_json, read_json


@dataclass(frozen=True)
class Cfg:
    lr: float = 1e-3
    steps: int = 10
    name: str = "a"
    flag: bool = False
    mode: Literal["x", "y"] = "x"
    depths: tuple[int, ...] = (1, 2)


def test_override_parses_types_and_rejects_bad_input():
    c = override(Cfg(), ["lr=3e-3", "steps=20", "flag=true", "mode=y", "depths=1,2,3"])
    assert (c.lr, c.steps, c.flag, c.mode, c.depths) == (3e-3, 20, True, "y", (1, 2, 3))
    assert override(Cfg(), {"steps": "1e3"}).steps == 1000
    with pytest.raises(UserError, match="unknown config key 'lrr'"):
        override(Cfg(), ["lrr=1"])
    with pytest.raises(UserError, match="'steps': expected int"):
        override(Cfg(), ["steps=ten"])
    with pytest.raises(UserError, match="not one of"):
        override(Cfg(), ["mode=z"])
    with pytest.raises(UserError, match="expected true/false"):
        override(Cfg(), ["flag=maybe"])
    with pytest.raises(UserError, match="key=value"):
        override(Cfg(), ["steps"])


def test_run_lifecycle_and_index(tmp_path):
    run = Run.create(tmp_path / "r1", kind="pretrain", config={"a": 1})
    run.log({"step": 1, "loss": 2.0})
    run.log({"step": 2, "loss": float("nan")})  # strict JSON: NaN becomes null
    run.finish({"loss": 1.5})
    assert run.metrics() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None}]
    assert (tmp_path / "r1" / "command.txt").read_text().strip()
    rows = list_runs(tmp_path)
    assert [(r["name"], r["kind"], r["status"], r["summary"]) for r in rows] == [
        ("r1", "pretrain", "finished", {"loss": 1.5})
    ]
    with pytest.raises(UserError, match="already exists"):
        Run.create(tmp_path / "r1", kind="pretrain", config={})


def test_trim_metrics_and_torn_lines(tmp_path):
    run = Run.create(tmp_path / "r", kind="x", config={})
    for s in range(1, 6):
        run.log({"step": s})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a kill mid-write
    run.trim_metrics(3)
    assert [r["step"] for r in run.metrics()] == [1, 2, 3]


def test_checkpoints_commit_atomically_and_prune(tmp_path):
    run = Run.create(tmp_path / "r", kind="x", config={})
    for step in (10, 20, 30):
        tmp = run.new_checkpoint_tmp(step)
        (tmp / "f").write_text(str(step))
        run.commit_checkpoint(tmp, step, keep=2)
    assert [s for s, _ in run.checkpoints()] == [20, 30]
    assert (run.latest_checkpoint() / "f").read_text() == "30"
    # an uncommitted temp dir (a crash mid-write) is never taken for a checkpoint
    run.new_checkpoint_tmp(40)
    assert run.latest_checkpoint().name == "step-30"


def test_read_json_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    atomic_write_json(tmp_path / "ok.json", {"x": [1, 2]})
    assert read_json(tmp_path / "ok.json") == {"x": [1, 2]}


def test_resume_with_changed_settings_is_refused_naming_each(tmp_path):
    Run.create(tmp_path / "r", kind="pretrain", config={"steps": 100, "lr": 1e-3, "depth": 3, "device": "cpu"})
    Run.create(
        tmp_path / "r", kind="pretrain", config={"steps": 100, "lr": 1e-3, "depth": 3, "device": "cpu"}, resume=True
    )
    with pytest.raises(UserError, match=r"depth 3 -> 1.*keeps its settings"):
        Run.create(
            tmp_path / "r", kind="pretrain", config={"steps": 100, "lr": 1e-3, "depth": 1, "device": "cpu"}, resume=True
        )
    with pytest.raises(UserError, match=r"does not extend.*steps 100 -> 200"):
        Run.create(
            tmp_path / "r", kind="pretrain", config={"steps": 200, "lr": 1e-3, "depth": 3, "device": "cpu"}, resume=True
        )
    assert Run(tmp_path / "r").config["depth"] == 3  # config.json is never left describing another model
    # a setting that does not change what is trained may change, and config.json says so
    Run.create(
        tmp_path / "r", kind="pretrain", config={"steps": 100, "lr": 1e-3, "depth": 3, "device": "cuda"}, resume=True
    )
    assert Run(tmp_path / "r").config["device"] == "cuda"


def test_resume_refuses_another_model_but_not_the_same_one_named_differently(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    Run.create(tmp_path / "r", kind="grpo", config={"model": str(tmp_path / "m"), "steps": 5})
    Run.create(
        tmp_path / "r", kind="grpo", config={"model": "m", "steps": 5}, resume=True
    )  # relative: the same directory
    with pytest.raises(UserError, match=r"model .* -> '/other'"):
        Run.create(tmp_path / "r", kind="grpo", config={"model": "/other", "steps": 5}, resume=True)
