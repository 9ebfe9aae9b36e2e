"""GRPO with its rollouts on Ray actors (issue 9): runs, updates, and logs weight versions."""

import json

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from scalinglab.train.pretrain import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("rg") / "A"
    pretrain(PretrainConfig(task="addition", depth=1, steps=60, batch_size=8, seq_len=64, eval_problems=0), str(out))
    return out


def test_grpo_on_ray_updates_and_tracks_versions(base, tmp_path):
    from scalinglab.train.grpo import GRPOConfig, train_grpo

    cfg = GRPOConfig(
        task="addition",
        steps=3,
        prompts_per_step=4,
        group_size=4,
        eval_problems=0,
        backend="ray",
        ray_generators=2,
        filter_zero_std=False,
        device="cpu",
    )
    summary = train_grpo(cfg, str(base), str(tmp_path / "B"))
    recs = [json.loads(line) for line in (tmp_path / "B" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3]
    # every batch was generated with the weights of the step that sampled it
    versions = [r.get("weight_version") for r in recs]
    assert versions == [0, 1, 2], recs[0].keys()
    assert all(r.get("stale_chunks", 0) == 0 for r in recs)
    assert (tmp_path / "B" / "model" / "model.safetensors").exists() and summary["steps"] == 3


def test_unknown_backend_is_a_clear_error(base, tmp_path):
    from scalinglab.errors import UserError
    from scalinglab.train.grpo import GRPOConfig, train_grpo

    with pytest.raises(UserError, match="backend 'spark'"):
        train_grpo(GRPOConfig(backend="spark", steps=1, eval_problems=0), str(base), str(tmp_path / "C"))


def test_grpo_on_ray_json_stdout_is_one_object(base, tmp_path):
    """--json prints exactly one JSON object even though Ray actors are started and killed."""
    import subprocess
    import sys

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "scalinglab.cli",
            "train",
            "grpo",
            "--model",
            str(base),
            "--task",
            "addition",
            "--steps",
            "2",
            "--backend",
            "ray",
            "--out",
            str(tmp_path / "J"),
            "--set",
            "eval_problems=0",
            "--set",
            "prompts_per_step=4",
            "--set",
            "group_size=4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["steps"] == 2 and len(p.stdout.strip().splitlines()) == 1
