"""Roofline step times against hand arithmetic."""

import pytest

from scalinglab.tokenomics.catalog import get_hardware, get_model
from scalinglab.tokenomics.memory import Parallel, ServeConfig
from scalinglab.tokenomics.roofline import StepModel, expected_distinct_experts, prefill_attended_pairs

# Llama-3.1-8B: block params 32 x (41,943,040 attn + 176,160,768 MLP); lm_head 525,336,576; norms 65 x 4096
BODY = 32 * (41_943_040 + 176_160_768)
HEAD, NORMS = 128256 * 4096, 65 * 4096


def _ideal(name="H100", **kw):
    return get_hardware(name).with_(**{"mfu": 1.0, "mbu": 1.0, **kw})


def test_expected_distinct_experts():
    assert expected_distinct_experts(8, 2, 1) == pytest.approx(2.0)
    assert expected_distinct_experts(8, 2, 2) == pytest.approx(8 * (1 - 0.75**2))  # 3.5
    assert expected_distinct_experts(256, 8, 1) == pytest.approx(8.0)
    assert expected_distinct_experts(256, 8, 10_000) == pytest.approx(256.0)


def test_llama8b_decode_is_weights_plus_kv_over_bandwidth():
    s = StepModel(get_model("Llama-3.1-8B"), _ideal(), ServeConfig())
    st = s.decode(1, 1000)
    byts = 2 * (BODY + HEAD + NORMS) + 1000 * 131_072
    assert st.bytes == byts
    assert st.seconds == pytest.approx(byts / 3.35e12)  # 4.52 ms
    assert st.bound == "memory" and st.comm_s == 0.0


def test_prefill_flops_by_hand():
    s = StepModel(get_model("Llama-3.1-8B"), _ideal(), ServeConfig())
    st = s.prefill(1, 4096)
    pairs = 32 * (4096 * 4096 / 2 + 4096 / 2)  # causal: position p attends p + 1 keys
    attn = 2 * 32 * (128 + 128) * pairs
    assert prefill_attended_pairs(s.model, 0, 4096) == pairs
    assert st.flops == pytest.approx(2 * BODY * 4096 + 2 * HEAD + attn)
    assert st.bound == "compute"


def test_moe_reads_only_touched_experts():
    m = get_model("Mixtral-8x7B")
    s = StepModel(m, _ideal(), ServeConfig())
    b1, b64 = s.decode(1, 0).bytes, s.decode(64, 0).bytes
    expert = m.expert_params * 2 * m.n_moe_layers
    assert b64 - b1 == pytest.approx((8 - 2) * expert, rel=1e-6)  # 2 experts/layer at batch 1, all 8 at 64


def test_tensor_parallel_adds_allreduce_and_splits_weights():
    m = get_model("Llama-3.1-70B")
    t1 = StepModel(m, _ideal("H200"), ServeConfig(weights_dtype="fp8")).decode(8, 1000)
    t4 = StepModel(m, _ideal("H200"), ServeConfig(par=Parallel(tp=4), weights_dtype="fp8")).decode(8, 1000)
    assert t4.comm_s > 0 and t1.comm_s == 0
    assert t4.memory_s == pytest.approx(t1.memory_s / 4, rel=1e-9)


def test_sliding_windows_cap_decode_attention():
    m = get_model("GPT-OSS-120B")
    s = StepModel(m, _ideal(), ServeConfig(weights_dtype="mxfp4"))
    a = s.decode(1, 100_000).flops - s.decode(1, 50_000).flops
    # only the 18 full layers attend to the extra 50k tokens
    assert a == pytest.approx(50_000 * 18 * 2 * 64 * (64 + 64))


def test_calibrated_efficiency_slows_steps():
    m = get_model("Llama-3.1-8B")
    fast = StepModel(m, _ideal(), ServeConfig()).decode(1, 0).seconds
    slow = StepModel(m, _ideal(mbu=0.5), ServeConfig()).decode(1, 0).seconds
    assert slow == pytest.approx(2 * fast)
