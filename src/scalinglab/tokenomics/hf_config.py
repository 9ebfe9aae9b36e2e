"""Read a Hugging Face `config.json` into a `ModelSpec`.

Understands the field names of the Llama, Qwen2, Mixtral, DeepSeek-V3 and GPT-OSS configs
(and a multimodal wrapper's `text_config`). Sliding windows come from `layer_types`
(GPT-OSS, new transformers), else from Qwen2's `use_sliding_window`/`max_window_layers`, else
from a bare `sliding_window` (Mistral: every layer). Unknown architectures still load when the
core fields are present; a missing core field is a `UserError` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scalinglab.errors import UserError
from scalinglab.tokenomics.spec import ModelSpec


def _req(cfg: dict, key: str, source: str) -> Any:
    if cfg.get(key) is None:
        raise UserError(f"{source}: config.json has no '{key}' (need a decoder-only HF config)")
    return _int(cfg, key, source)


def _int(cfg: dict, key: str, source: str, default: int = 0) -> int:
    """cfg[key] as an int (default when absent or null); a string, list or fraction names the key."""
    v = cfg.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise UserError(f"{source}: '{key}' must be an integer, got {v!r}")
    return int(v)


def _windows(cfg: dict, layers: int, source: str = "config") -> tuple[int, ...]:
    window = _int(cfg, "sliding_window", source)
    types = cfg.get("layer_types")
    if types:
        if not isinstance(types, list) or len(types) != layers:
            raise UserError(
                f"{source}: layer_types must be a list of {layers} entries (one per layer), got {types!r:.60}"
            )
        return tuple(window if t == "sliding_attention" else 0 for t in types)
    if not window:
        return ()
    if "use_sliding_window" in cfg:  # Qwen2: off by default; when on, layers >= max_window_layers slide
        if not cfg["use_sliding_window"]:
            return ()
        start = _int(cfg, "max_window_layers", source)
        return tuple(window if i >= start else 0 for i in range(layers))
    return (window,) * layers  # Mistral/Mixtral style: every layer slides


def from_hf_config(cfg: dict, name: str = "model", source: str = "config") -> ModelSpec:
    """A `ModelSpec` from a parsed config.json dict."""
    if not isinstance(cfg, dict):
        raise UserError(f"{source}: config.json must be a JSON object, got a {type(cfg).__name__}")
    if isinstance(cfg.get("text_config"), dict) and "num_hidden_layers" not in cfg:
        cfg = {**cfg["text_config"]}
    layers = _req(cfg, "num_hidden_layers", source)
    hidden = _req(cfg, "hidden_size", source)
    heads = _req(cfg, "num_attention_heads", source)
    if heads < 1:
        raise UserError(f"{source}: 'num_attention_heads' must be >= 1, got {heads}")
    kv_heads = _int(cfg, "num_key_value_heads", source, default=heads)  # absent: MHA; an explicit 0 is refused below
    head_dim = _int(cfg, "head_dim", source) or hidden // heads
    model_type = str(cfg.get("model_type", ""))
    n_experts = (
        _int(cfg, "n_routed_experts", source)
        or _int(cfg, "num_local_experts", source)
        or _int(cfg, "num_experts", source)
    )
    top_k = (_int(cfg, "num_experts_per_tok", source) or _int(cfg, "experts_per_token", source)) if n_experts else 0
    is_gpt_oss = model_type == "gpt_oss"
    return ModelSpec(
        name=name,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=_req(cfg, "intermediate_size", source),
        vocab=_req(cfg, "vocab_size", source),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
        o_bias=bool(cfg.get("attention_bias", False)),
        n_experts=n_experts,
        top_k=top_k,
        n_shared_experts=_int(cfg, "n_shared_experts", source),
        moe_intermediate=_int(cfg, "moe_intermediate_size", source),
        first_k_dense=_int(cfg, "first_k_dense_replace", source) if n_experts else 0,
        expert_bias=is_gpt_oss,
        kv_lora_rank=_int(cfg, "kv_lora_rank", source),
        q_lora_rank=_int(cfg, "q_lora_rank", source),
        qk_rope_head_dim=_int(cfg, "qk_rope_head_dim", source),
        qk_nope_head_dim=_int(cfg, "qk_nope_head_dim", source),
        v_head_dim=_int(cfg, "v_head_dim", source),
        windows=_windows(cfg, layers, source),
    )


def load_config_file(path: str | Path) -> ModelSpec:
    """A `ModelSpec` from a config.json path or a model directory that holds one."""
    from scalinglab.runs.store import read_json

    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise UserError(f"--model {path}: no config.json there (and not a catalog model name)")
    cfg = read_json(p, "--model")  # not UTF-8, not JSON: one line naming the file
    name = p.parent.name if p.name == "config.json" else p.stem
    return from_hf_config(cfg, name=name, source=str(p))
