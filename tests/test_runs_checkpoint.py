"""The one save / restore / resume mechanism (runs/checkpoint.py), in process and fast:
a run interrupted before or after a checkpoint resumes to the same numbers with every step
logged once (issue 20 items 1 and 9), a truncated checkpoint falls back to the previous one
(item 4), a failed start leaves nothing (item 5), the index tells the truth (item 6), a
full disk is one line and leaves no temp directory (item 7)."""

import errno
import json

import pytest
import torch

from scalinglab.errors import UserError
from scalinglab.runs import Run, list_runs
from scalinglab.runs.checkpoint import guard
from scalinglab.train.pretrain import PretrainConfig, pretrain

TINY = dict(
    depth=1,
    steps=20,
    batch_size=2,
    seq_len=32,
    eval_problems=0,
    val_tokens=256,
    log_every=1,
    warmup_steps=2,
    device="cpu",
)


def _stop_at(step):
    def progress(done, total, **info):
        if done == step:
            raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, inside a guard) raises

    return progress


def _steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The uninterrupted 20-step run every resumed one must reproduce (its train loss is the mean of
    the last 2 steps' losses, so a resume from step 18 that forgot steps 1-18 would differ)."""
    out = tmp_path_factory.mktemp("clean") / "A"
    return out, pretrain(PretrainConfig(**TINY), str(out))


def _same_run(a_dir, a, b_dir, b):
    assert b["train_loss"] == a["train_loss"] and b["val_loss"] == a["val_loss"]  # the summary averages over all steps
    wa, wb = _weights(a_dir), _weights(b_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _steps(b_dir) == list(range(1, 21))  # every step once


@pytest.mark.parametrize("every,stop", [(0, 3), (2, 19)], ids=["before-first-checkpoint", "after-checkpoint"])
def test_interrupted_pretrain_resumes_to_the_same_numbers(clean, tmp_path, every, stop):
    cfg = PretrainConfig(**{**TINY, "checkpoint_every": every})
    out = tmp_path / "B"
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, str(out), progress=_stop_at(stop))
    assert _steps(out) == list(range(1, stop + 1))
    row = Run(out).status()
    assert (row["status"], row["reason"]) == ("interrupted", "interrupted (Ctrl-C)")
    s = pretrain(cfg, str(out), resume=True)
    _same_run(*clean, out, s)
    assert Run(out).status()["status"] == "finished"
    # resuming a finished run changes nothing, and leaves it finished
    assert pretrain(cfg, str(out), resume=True) == s and Run(out).status()["status"] == "finished"


def test_truncated_checkpoint_falls_back_to_the_previous_one(clean, tmp_path, capsys):
    cfg = PretrainConfig(**{**TINY, "checkpoint_every": 2})
    out = tmp_path / "B"
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, str(out), progress=_stop_at(19))
    bad = out / "checkpoints" / "step-18" / "model" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])  # a kill or a full disk mid-copy, outside our atomic write
    s = pretrain(cfg, str(out), resume=True)
    err = capsys.readouterr().err
    assert "step-18/model/model.safetensors" in err and "falling back" in err and "Traceback" not in err
    assert (out / "checkpoints" / "corrupt-step-18").is_dir()  # kept aside for a look, never taken for a checkpoint
    _same_run(*clean, out, s)


def test_resume_refuses_another_architecture_and_a_steps_extension(clean, tmp_path):
    out, _ = clean
    with pytest.raises(UserError, match=r"depth 1 -> 2") as e:
        pretrain(PretrainConfig(**{**TINY, "depth": 2}), str(out), resume=True)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"does not extend.*steps 20 -> 40"):
        pretrain(PretrainConfig(**{**TINY, "steps": 40}), str(out), resume=True)
    assert Run(out).config["depth"] == 1 and Run(out).status()["status"] == "finished"


@pytest.mark.parametrize(
    "bad,key",
    [
        ({"depth": 0}, "depth"),
        ({"depth": -2}, "depth"),
        ({"depth": 10_000}, "depth"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"steps": -5}, "steps"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
    ],
)
def test_bad_pretrain_settings_name_the_key_and_leave_nothing(tmp_path, bad, key):
    out = tmp_path / "X"
    with pytest.raises(UserError, match=f"'{key}'"):
        pretrain(PretrainConfig(**{**TINY, **bad}), str(out))
    assert not out.exists() and not (tmp_path / "runs.sqlite").exists()


def test_a_start_that_fails_before_its_first_step_leaves_nothing(tmp_path):
    run = Run.create(tmp_path / "r", kind="x", config={"a": 1})
    with pytest.raises(RuntimeError):
        with guard(run):
            raise RuntimeError("data loader broke")
    assert not (tmp_path / "r").exists() and list_runs(tmp_path) == []
    Run.create(tmp_path / "r", kind="x", config={"a": 2}).finish({})  # the corrected command runs
    # in a directory that existed (empty) before: it is left as found, whatever the start wrote
    (tmp_path / "given").mkdir()
    run = Run.create(tmp_path / "given", kind="x", config={}, resume=True)
    with pytest.raises(UserError):
        with guard(run):
            (run.path / "data.jsonl").write_text("{}\n")
            (run.path / "tb").mkdir()
            raise UserError("bad data")
    assert (tmp_path / "given").is_dir() and not list((tmp_path / "given").iterdir())
    # a non-empty directory that holds no run is never taken for one, even with --resume
    (tmp_path / "given" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no run"):
        Run.create(tmp_path / "given", kind="x", config={}, resume=True)
    # a run that did log steps is kept on failure, with the reason
    run = Run.create(tmp_path / "s", kind="x", config={})
    with pytest.raises(ValueError):
        with guard(run):
            run.log({"step": 1})
            raise ValueError("boom")
    rows = {r["name"]: r for r in list_runs(tmp_path)}
    assert (rows["s"]["status"], rows["s"]["reason"]) == ("failed", "ValueError: boom")
    assert rows["r"]["status"] == "finished"


def test_disk_full_is_one_line_and_leaves_no_temp_checkpoint(clean, tmp_path, monkeypatch):
    """ENOSPC in the middle of a checkpoint (the tmpfs version is in test_reliability_runs.py)."""
    import scalinglab.model.hf as hf

    cfg = PretrainConfig(**{**TINY, "checkpoint_every": 2})
    out = tmp_path / "B"
    real, calls = hf.save_model, []

    def full_after_one(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(hf, "save_model", full_after_one)
    with pytest.raises(UserError, match=r"disk full.*step-2 is kept") as e:
        pretrain(cfg, str(out))
    assert "\n" not in str(e.value)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-2"]  # no .tmp-step-4-*
    row = Run(out).status()
    assert (row["status"], row["reason"]) == ("failed", "disk full")
    monkeypatch.setattr(hf, "save_model", real)
    (out / "checkpoints" / ".tmp-step-4-left").mkdir()  # as a SIGKILL mid-save would leave it
    s = pretrain(cfg, str(out), resume=True)
    assert not list((out / "checkpoints").glob(".tmp-step-*"))
    _same_run(*clean, out, s)


def test_sft_interrupted_before_its_first_checkpoint_resumes_exactly(tmp_path):
    """SFT through the shared loop: trimmed metrics and a summary over all steps (items 1, 9)."""
    from scalinglab.train.sft import SFTConfig, sft

    base = tmp_path / "base"
    pretrain(PretrainConfig(**{**TINY, "steps": 2}), str(base))
    cfg = SFTConfig(num_problems=16, steps=6, batch_size=2, seq_len=64, eval_problems=0, warmup_steps=1, device="cpu")
    a = sft(cfg, str(base / "model"), str(tmp_path / "A"))
    with pytest.raises(KeyboardInterrupt):
        sft(cfg, str(base / "model"), str(tmp_path / "B"), progress=_stop_at(4))
    b = sft(cfg, str(base / "model"), str(tmp_path / "B"), resume=True)
    assert _steps(tmp_path / "B") == list(range(1, 7))
    assert b["train_loss"] == a["train_loss"] and b["train_token_accuracy"] == a["train_token_accuracy"]
