"""Training and RL cost arithmetic."""

import math

import pytest

from scalinglab.errors import UserError
from scalinglab.tokenomics.catalog import get_hardware, get_model
from scalinglab.tokenomics.memory import ServeConfig
from scalinglab.tokenomics.roofline import StepModel
from scalinglab.tokenomics.training import Cluster, failure_overhead, pretrain_cost, rl_cost


def test_llama3_405b_flops_is_metas_3_8e25():
    r = pretrain_cost(405e9, 15.6e12, Cluster(get_hardware("H100"), 16384))
    assert r["flops"] == pytest.approx(3.79e25, rel=1e-3)
    ideal_s = 3.7908e25 / (16384 * 989e12 * 0.40)
    assert r["ideal_days"] == pytest.approx(ideal_s / 86400)


def test_young_daly_overhead_by_hand():
    c = Cluster(get_hardware("H100"), n_gpus=1000, gpu_mtbf_hours=10_000, checkpoint_write_s=60, restart_s=600)
    m = 10_000 * 3600 / 1000  # 36,000 s cluster MTBF
    tau = math.sqrt(2 * 60 * m)
    f = failure_overhead(c)
    assert f["checkpoint_interval_minutes"] == pytest.approx(tau / 60)
    assert f["lost_fraction"] == pytest.approx(60 / tau + (tau / 2 + 600) / m)
    r = pretrain_cost(1e9, 20e9, c)
    assert r["days"] == pytest.approx(r["ideal_days"] / (1 - f["lost_fraction"]))


def test_rl_cost_splits_rollout_and_update():
    s = StepModel(get_model("Qwen2.5-0.5B"), get_hardware("H100"), ServeConfig())
    r = rl_cost(
        s,
        Cluster(get_hardware("H100"), 8),
        n_steps=10,
        prompts_per_step=16,
        group_size=4,
        prompt_len=200,
        response_len=1000,
    )
    tokens = 10 * 16 * 4 * 1200
    assert r["tokens"] == tokens
    assert r["train_flops"] == pytest.approx(10 * s.model.active_params * tokens)
    assert 0 < r["rollout_share"] < 1 and r["usd"] == pytest.approx(r["rollout_usd"] + r["train_usd"])


def test_bad_inputs():
    with pytest.raises(UserError):
        pretrain_cost(-1, 1e9, Cluster(get_hardware("H100")))
    with pytest.raises(UserError, match="fail faster"):
        pretrain_cost(1e9, 1e9, Cluster(get_hardware("H100"), n_gpus=10_000_000))
