"""Serving simulator against the step model it is built on."""

import time

import numpy as np
import pytest

from scalinglab.errors import UserError
from scalinglab.tokenomics.catalog import get_hardware, get_model
from scalinglab.tokenomics.memory import Parallel, ServeConfig
from scalinglab.tokenomics.roofline import StepModel
from scalinglab.tokenomics.serve import Workload, sample_lengths, simulate


def _step(hw="H100", **cfg):
    return StepModel(get_model("Llama-3.1-8B"), get_hardware(hw), ServeConfig(**cfg))


def test_single_request_matches_roofline():
    s = _step()
    r = simulate(s, Workload("1000", "11", n_requests=1))
    ttft = s.prefill(1, 1000).seconds
    assert r["ttft_s"]["p50"] == pytest.approx(ttft, rel=1e-9)
    # 10 decode steps from context 1000 to 1009; step time is linear in context, so the midpoint is exact
    assert r["tpot_s"]["p50"] == pytest.approx(s.decode(1, 1004.5).seconds, rel=1e-6)


def test_closed_loop_concurrency_one_is_sequential():
    s = _step()
    r = simulate(s, Workload("500", "50", n_requests=4, concurrency=1))
    one = simulate(s, Workload("500", "50", n_requests=1))
    assert r["duration_s"] == pytest.approx(4 * one["duration_s"], rel=1e-6)


def test_batching_raises_throughput_and_kv_caps_the_batch():
    s = _step(max_num_seqs=4096)
    r = simulate(s, Workload("1000", "1000", n_requests=400))
    single = simulate(s, Workload("1000", "1000", n_requests=1))
    cap = r["kv_capacity_tokens"] // 2000  # sequences of 2,000 tokens that fit
    assert r["mean_decode_batch"] <= cap + 1
    # every step makes at most `cap` tokens and takes at least a decode step of `cap` at context 1000
    assert r["output_tokens_per_s"] <= cap / s.decode(cap, 1000).seconds
    assert r["output_tokens_per_s"] > 30 * single["output_tokens_per_s"]


def test_h200_serves_long_reasoning_faster_than_h100():
    w = Workload("1000", "8000", n_requests=300)
    cfg = dict(par=Parallel(tp=8), weights_dtype="fp8")
    m = get_model("Llama-3.1-70B")
    t100 = simulate(StepModel(m, get_hardware("H100"), ServeConfig(**cfg)), w)["output_tokens_per_s"]
    t200 = simulate(StepModel(m, get_hardware("H200"), ServeConfig(**cfg)), w)["output_tokens_per_s"]
    assert t200 > 1.3 * t100


def test_prefix_caching_cuts_ttft_for_sample_groups():
    s = _step()
    w = Workload("4000", "200", n_requests=64, rate=4.0, group_size=8)
    plain = simulate(s, w, prefix_caching=False)
    cached = simulate(s, w, prefix_caching=True)
    assert cached["ttft_s"]["mean"] < 0.5 * plain["ttft_s"]["mean"]


def test_disaggregation_runs_and_decodes_without_prefill_interference():
    s = _step()
    w = Workload("2000", "300", n_requests=200, rate=5.0)
    agg = simulate(s, w, n_instances=2)
    dis = simulate(s, w, disagg=(1, 1))
    assert dis["counted"] == agg["counted"] == 200
    assert dis["tpot_s"]["p99"] < agg["tpot_s"]["p99"]


def test_ten_thousand_requests_simulate_fast():
    s = _step(max_num_seqs=512)
    t = time.perf_counter()
    r = simulate(s, Workload("lognormal:800:0.6", "lognormal:200:0.8", n_requests=10_000, rate=20.0))
    assert r["counted"] == 10_000
    assert time.perf_counter() - t < 10


def test_lengths_and_errors():
    rng = np.random.default_rng(0)
    assert sample_lengths("7", 3, rng).tolist() == [7, 7, 7]
    u = sample_lengths("10-20", 1000, rng)
    assert u.min() >= 10 and u.max() <= 20
    with pytest.raises(UserError, match="length"):
        sample_lengths("abc", 3, rng)
    big = StepModel(get_model("Llama-3.1-405B"), get_hardware("H100"), ServeConfig())
    with pytest.raises(UserError, match="does not fit"):
        simulate(big, Workload(n_requests=1))
