"""It learns: the acceptance chain of issue 4, as the user types it (slow; minutes).

    scalinglab pretrain --task arithmetic --depth 2 --steps 1500 --seed 0 --out A
    scalinglab train grpo --model A --task arithmetic --steps 200 --seed 0 --checkpoint-every 20 --out B
    scalinglab train ppo  --model A --task arithmetic --steps 200 --seed 0 --checkpoint-every 20 --out C

Each RL run must raise greedy accuracy on 200 held-out problems (generator seed 777, never
used in training) by at least 15 points over the pre-trained model.
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _cli(*args) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "scalinglab.cli", *args, "--json"], capture_output=True, text=True, timeout=1800
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "A"
    _cli("pretrain", "--task", "arithmetic", "--depth", "2", "--steps", "1500", "--seed", "0", "--out", str(out))
    return out


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_rl_raises_heldout_accuracy_by_15_points(pretrained, algo, tmp_path):
    s = _cli(
        "train",
        algo,
        "--model",
        str(pretrained),
        "--task",
        "arithmetic",
        "--steps",
        "200",
        "--seed",
        "0",
        "--checkpoint-every",
        "20",
        "--out",
        str(tmp_path / algo),
    )
    assert s["eval_problems"] == 200 and s["eval_seed"] == 777
    assert s["accuracy"] >= s["accuracy_before"] + 0.15, s


@pytest.mark.ray
def test_grpo_on_ray_learns_like_local(pretrained, tmp_path):
    """Issue 9: GRPO with 2 Ray rollout workers lands in the local run's accuracy band."""
    pytest.importorskip("ray")
    common = ("--model", str(pretrained), "--task", "arithmetic", "--steps", "200", "--seed", "0")
    local = _cli("train", "grpo", *common, "--out", str(tmp_path / "local"))
    ray_run = _cli(
        "train", "grpo", *common, "--backend", "ray", "--ray-generators", "2", "--out", str(tmp_path / "ray")
    )
    assert ray_run["accuracy"] >= ray_run["accuracy_before"] + 0.15, ray_run
    assert abs(ray_run["accuracy"] - local["accuracy"]) <= 0.05, (local["accuracy"], ray_run["accuracy"])
