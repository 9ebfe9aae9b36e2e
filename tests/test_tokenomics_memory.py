"""Memory plan, and the o1-style worked example: Llama-3.1-405B, FP8 weights, TP8, 20k-token context.

By hand (see docs/tokenomics.md):
  weights/chip = (126 x 3,187,671,040 block params x 1 B + 2 B x (2 x 2,101,346,304 emb/head + 4,145,152 norms)) / 8
               = 51,257,528,320 B
  activations  = 8192 x (4 x 16384 + (2 x 53248 + 144 x 128) / 8) x 2 B + 1024 x 128256 / 8 x 4 B = 1,395,261,440 B
  KV/chip/token = 126 x 2 x 8 x 128 x 2 B / 8 = 64,512 B -> 1,290,240,000 B per 20,000-token sequence
  H100: 80 GiB x 0.9 - 1.5 GB - weights - activations = 23,156,621,568 B -> 17 sequences
  H200: 141 GiB x 0.9 - ...                            = 82,212,300,441 B -> 63 sequences
"""

import pytest

from scalinglab.errors import UserError
from scalinglab.tokenomics.catalog import get_hardware, get_model
from scalinglab.tokenomics.memory import Parallel, ServeConfig, memory_plan

CFG = ServeConfig(par=Parallel(tp=8), weights_dtype="fp8")


def test_405b_weights_and_kv_per_chip_by_hand():
    p = memory_plan(get_model("Llama-3.1-405B"), get_hardware("H100"), CFG)
    assert p.weight_bytes == 51_257_528_320
    assert p.activation_bytes == 1_395_261_440
    assert p.kv_bytes_per_token_per_gpu == 64_512
    assert p.seq_bytes_per_gpu(20_000) == 1_290_240_000
    assert p.kv_free_bytes == pytest.approx(23_156_621_568)


def test_o1_style_example_h100_vs_h200():
    m = get_model("Llama-3.1-405B")
    h100 = memory_plan(m, get_hardware("H100"), CFG).max_batch(20_000)
    h200 = memory_plan(m, get_hardware("H200"), CFG).max_batch(20_000)
    assert (h100, h200) == (17, 63)
    # FP8 KV cache halves the bytes per sequence: twice the sequences (within the floor)
    fp8kv = ServeConfig(par=Parallel(tp=8), weights_dtype="fp8", kv_dtype="fp8")
    assert memory_plan(m, get_hardware("H100"), fp8kv).max_batch(20_000) == 35


def test_bf16_405b_does_not_fit_on_8_h100():
    p = memory_plan(get_model("Llama-3.1-405B"), get_hardware("H100"), ServeConfig(par=Parallel(tp=8)))
    assert not p.fits and p.max_batch(1000) == 0


def test_mla_cache_is_replicated_across_tp_and_split_by_dp_attention():
    m, hw = get_model("DeepSeek-V3"), get_hardware("H200")
    tp8 = memory_plan(m, hw, ServeConfig(par=Parallel(tp=8), weights_dtype="fp8"))
    assert tp8.kv_bytes_per_token_per_gpu == 70_272  # the latent has no head axis to split
    dp = memory_plan(m, hw, ServeConfig(par=Parallel(tp=1, ep=8), weights_dtype="fp8"))
    assert dp.cfg.par.n_gpus == 8 and dp.cfg.par.attn_groups == 8
    # experts spread over 8 chips, attention weights replicated on each
    assert dp.weight_bytes > tp8.weight_bytes


def test_gqa_kv_replicates_beyond_kv_heads():
    m, hw = get_model("Qwen2.5-7B"), get_hardware("H100")  # 4 KV heads
    per = {tp: memory_plan(m, hw, ServeConfig(par=Parallel(tp=tp))).kv_bytes_per_token_per_gpu for tp in (1, 4, 8)}
    assert per[1] == 57_344 and per[4] == per[8] == 57_344 / 4


def test_bad_parallel_and_utilisation():
    with pytest.raises(UserError, match="--ep"):
        Parallel(tp=2, ep=3)
    with pytest.raises(UserError, match="gpu-memory-utilization"):
        memory_plan(get_model("Llama-3.1-8B"), get_hardware("H100"), ServeConfig(gpu_memory_utilization=1.5))
