"""KV bytes per token, by hand, for every catalog model (BF16 unless stated).

GQA/MHA: layers x 2 (K, V) x kv_heads x head_dim x bytes; MLA: layers x (kv_lora_rank + rope) x bytes.
"""

import pytest

from scalinglab.errors import UserError
from scalinglab.tokenomics.catalog import MODEL_CONFIGS, get_model
from scalinglab.tokenomics.kv import kv_bytes_per_sequence, kv_bytes_per_token, kv_bytes_per_token_long, kv_summary

HAND = {
    "Llama-3.1-8B": 32 * 2 * 8 * 128 * 2,  # 131,072
    "Llama-3.1-70B": 80 * 2 * 8 * 128 * 2,  # 327,680
    "Llama-3.1-405B": 126 * 2 * 8 * 128 * 2,  # 516,096
    "Qwen2.5-0.5B": 24 * 2 * 2 * 64 * 2,  # 12,288
    "Qwen2.5-7B": 28 * 2 * 4 * 128 * 2,  # 57,344
    "Qwen2.5-72B": 80 * 2 * 8 * 128 * 2,  # 327,680
    "Mixtral-8x7B": 32 * 2 * 8 * 128 * 2,  # 131,072
    "DeepSeek-V3": 61 * (512 + 64) * 2,  # 70,272
    "DeepSeek-R1": 61 * (512 + 64) * 2,
    "GPT-OSS-120B": 36 * 2 * 8 * 64 * 2,  # 73,728 while the context is inside the 128-token window
}


def test_every_catalog_model_has_a_hand_value():
    assert set(HAND) == set(MODEL_CONFIGS)


@pytest.mark.parametrize("name", sorted(HAND))
def test_kv_bytes_per_token_by_hand(name):
    assert kv_bytes_per_token(get_model(name)) == HAND[name]


def test_headline_numbers():
    assert kv_bytes_per_token(get_model("Llama-3.1-70B")) == 327_680
    assert kv_bytes_per_token(get_model("DeepSeek-V3")) == 70_272


def test_kv_dtypes_scale_bytes():
    m = get_model("Llama-3.1-70B")
    assert kv_bytes_per_token(m, "fp8") == 163_840
    assert kv_bytes_per_token(m, "int4") == 81_920
    with pytest.raises(UserError, match="kv-dtype"):
        kv_bytes_per_token(m, "fp7")


def test_gpt_oss_sliding_layers_stop_growing():
    m = get_model("GPT-OSS-120B")
    per_layer_token = 2 * 8 * 64 * 2  # 2,048 B
    assert kv_bytes_per_token_long(m) == 18 * per_layer_token  # 36,864: only the 18 full layers grow
    # 1,000 tokens: 18 full layers hold 1,000, 18 sliding layers hold 128
    assert kv_bytes_per_sequence(m, 1000) == (18 * 1000 + 18 * 128) * per_layer_token
    assert kv_bytes_per_sequence(m, 100) == 36 * 100 * per_layer_token
    assert kv_summary(m)["sliding_layers"] == 18


def test_attention_kinds():
    assert get_model("DeepSeek-V3").attention_kind == "MLA"
    assert get_model("Llama-3.1-8B").attention_kind == "GQA"
