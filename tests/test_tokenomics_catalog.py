"""Catalogs: parameter counts reproduce the published totals; config.json parsing; hardware lookup."""

import json

import pytest

from scalinglab.errors import UserError
from scalinglab.tokenomics.catalog import HARDWARE, get_hardware, get_model
from scalinglab.tokenomics.hf_config import from_hf_config

# (total, active) in billions as the model cards state them
PUBLISHED = {
    "Llama-3.1-8B": (8.03, None),
    "Llama-3.1-70B": (70.6, None),
    "Llama-3.1-405B": (405.9, None),
    "Qwen2.5-0.5B": (0.49, None),
    "Qwen2.5-7B": (7.61, None),
    "Qwen2.5-72B": (72.7, None),
    "Mixtral-8x7B": (46.7, 12.9),
    "DeepSeek-V3": (671.0, 37.0),
    "GPT-OSS-120B": (116.8, 5.1),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_model_cards(name):
    m = get_model(name)
    total, active = PUBLISHED[name]
    assert m.total_params / 1e9 == pytest.approx(total, rel=0.01)
    if active:
        # model cards differ on whether the input embedding counts; allow that (<3%)
        assert m.active_params / 1e9 == pytest.approx(active, rel=0.03)


def test_llama8b_params_by_hand():
    attn = 4096 * 4096 * 2 + 2 * 4096 * 1024
    mlp = 3 * 4096 * 14336
    total = 32 * (attn + mlp) + 2 * 128256 * 4096 + 65 * 4096
    assert get_model("Llama-3.1-8B").total_params == total == 8_030_261_248


def test_any_config_json_is_a_model(tmp_path):
    cfg = {
        "model_type": "qwen2",
        "num_hidden_layers": 4,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 512,
        "vocab_size": 1000,
        "sliding_window": 64,
        "use_sliding_window": True,
        "max_window_layers": 2,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = get_model(str(tmp_path))
    assert m.name == tmp_path.name
    assert m.layer_windows == (0, 0, 64, 64)
    assert m.head_dim == 64 and m.qkv_bias


def test_text_config_and_missing_field():
    inner = {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 10,
    }
    assert from_hf_config({"text_config": inner}).layers == 2
    with pytest.raises(UserError, match="hidden_size"):
        from_hf_config({"num_hidden_layers": 2})


def test_bad_model_name_and_json(tmp_path):
    with pytest.raises(UserError, match="--model"):
        get_model("no-such-model")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        get_model(str(tmp_path / "config.json"))


def test_hardware_lookup_and_dtype_fallbacks():
    assert get_hardware("h100 sxm").name == "H100"
    assert get_hardware("trillium").name == "TPU-v6e"
    h100, b200 = HARDWARE["H100"], HARDWARE["B200"]
    assert h100.peak_flops("fp4") == h100.peak_flops("fp8") == 1979e12  # no FP4 path on Hopper
    assert b200.peak_flops("fp4") == 9000e12 and b200.peak_flops("bf16") == 2250e12
    assert h100.hbm_bytes == 80 * 2**30
    with pytest.raises(UserError, match="--hardware"):
        get_hardware("X100")


def test_catalog_is_dense_and_sane():
    for hw in HARDWARE.values():
        assert hw.fp8_tflops is None or hw.fp8_tflops >= hw.bf16_tflops
        assert hw.hbm_tbps > 0 and hw.usd_per_hour > 0 and hw.source
