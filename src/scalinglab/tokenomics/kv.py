"""KV-cache bytes per token and per sequence.

Per layer and token the cache holds
  MHA/GQA/MQA: 2 (K and V) x kv_heads x head_dim elements;
  MLA (DeepSeek-V2/V3): kv_lora_rank + qk_rope_head_dim elements, the compressed latent plus
  the decoupled RoPE key, shared by all heads (DeepSeek-V2 paper, Sec. 2.1; what vLLM/SGLang
  store with weight absorption).
A sliding-window layer keeps at most `window` tokens, so a hybrid model (GPT-OSS: 18 full +
18 sliding(128) layers) grows by only its full layers' bytes once the context passes the
window. KV dtypes: bf16/fp16 2 B, fp8/int8 1 B, int4 0.5 B per element; per-block scales
of quantised caches are not counted (they add ~1-3%).

Worked numbers (BF16): Llama-3.1-70B 2 x 8 x 128 x 2 B x 80 layers = 327,680 B/token;
DeepSeek-V3 (512 + 64) x 2 B x 61 = 70,272 B/token.
"""

from __future__ import annotations

from scalinglab.errors import UserError
from scalinglab.tokenomics.spec import ModelSpec

KV_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def kv_elem_bytes(kv_dtype: str) -> float:
    try:
        return KV_BYTES[kv_dtype.lower()]
    except KeyError:
        raise UserError(f"--kv-dtype {kv_dtype!r}: choose one of {', '.join(KV_BYTES)}") from None


def kv_elems_per_layer_token(model: ModelSpec) -> int:
    """Cache elements one token adds to one layer."""
    if model.is_mla:
        return model.kv_lora_rank + model.qk_rope_head_dim
    return 2 * model.kv_heads * model.head_dim


def kv_bytes_per_token(model: ModelSpec, kv_dtype: str = "bf16") -> float:
    """Bytes one token adds to the cache with every layer holding it (the short-context rate)."""
    return model.layers * kv_elems_per_layer_token(model) * kv_elem_bytes(kv_dtype)


def kv_bytes_per_token_long(model: ModelSpec, kv_dtype: str = "bf16") -> float:
    """Marginal bytes per token once the context is past every sliding window (full layers only)."""
    full = sum(1 for w in model.layer_windows if w == 0)
    return full * kv_elems_per_layer_token(model) * kv_elem_bytes(kv_dtype)


def attended_tokens(model: ModelSpec, context: float) -> float:
    """Sum over layers of the tokens a query at position `context` attends to (and whose KV is held)."""
    return float(sum(min(context, w) if w else context for w in model.layer_windows))


def kv_bytes_per_sequence(model: ModelSpec, context: float, kv_dtype: str = "bf16") -> float:
    """Cache bytes held by one sequence of `context` tokens (windows capped)."""
    return attended_tokens(model, context) * kv_elems_per_layer_token(model) * kv_elem_bytes(kv_dtype)


def kv_summary(model: ModelSpec, kv_dtype: str = "bf16", context: int | None = None) -> dict:
    """What `scalinglab tokenomics kv` prints."""
    out = {
        "model": model.name,
        "attention": model.attention_kind,
        "kv_dtype": kv_dtype,
        "layers": model.layers,
        "sliding_layers": sum(1 for w in model.layer_windows if w),
        "kv_elements_per_layer_token": kv_elems_per_layer_token(model),
        "kv_bytes_per_token": kv_bytes_per_token(model, kv_dtype),
        "kv_bytes_per_token_long_context": kv_bytes_per_token_long(model, kv_dtype),
    }
    if context is not None:
        out["context"] = context
        out["kv_bytes_per_sequence"] = kv_bytes_per_sequence(model, context, kv_dtype)
    return out
