"""Read a Hugging Face `config.json` into a `ModelSpec`.

Understands the field names of the Llama, Qwen2, Mixtral, DeepSeek-V3 and GPT-OSS configs
(and a multimodal wrapper's `text_config`). Sliding windows come from `layer_types`
(GPT-OSS, new transformers), else from Qwen2's `use_sliding_window`/`max_window_layers`, else
from a bare `sliding_window` (Mistral: every layer). Unknown architectures still load when the
core fields are present; a missing core field is a `UserError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scalinglab.errors import UserError
from scalinglab.tokenomics.spec import ModelSpec


def _req(cfg: dict, key: str, source: str) -> Any:
    if cfg.get(key) is None:
        raise UserError(f"{source}: config.json has no '{key}' (need a decoder-only HF config)")
    return cfg[key]


def _windows(cfg: dict, layers: int) -> tuple[int, ...]:
    window = int(cfg.get("sliding_window") or 0)
    types = cfg.get("layer_types")
    if types:
        if len(types) != layers:
            raise UserError(f"config.json: layer_types has {len(types)} entries for {layers} layers")
        return tuple(window if t == "sliding_attention" else 0 for t in types)
    if not window:
        return ()
    if "use_sliding_window" in cfg:  # Qwen2: off by default; when on, layers >= max_window_layers slide
        if not cfg["use_sliding_window"]:
            return ()
        start = int(cfg.get("max_window_layers", 0))
        return tuple(window if i >= start else 0 for i in range(layers))
    return (window,) * layers  # Mistral/Mixtral style: every layer slides


def from_hf_config(cfg: dict, name: str = "model", source: str = "config") -> ModelSpec:
    """A `ModelSpec` from a parsed config.json dict."""
    if "text_config" in cfg and "num_hidden_layers" not in cfg:
        cfg = {**cfg["text_config"]}
    layers = int(_req(cfg, "num_hidden_layers", source))
    hidden = int(_req(cfg, "hidden_size", source))
    heads = int(_req(cfg, "num_attention_heads", source))
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    model_type = str(cfg.get("model_type", ""))
    n_experts = int(cfg.get("n_routed_experts") or cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    top_k = int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 0) if n_experts else 0
    is_gpt_oss = model_type == "gpt_oss"
    return ModelSpec(
        name=name,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=int(_req(cfg, "intermediate_size", source)),
        vocab=int(_req(cfg, "vocab_size", source)),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
        o_bias=bool(cfg.get("attention_bias", False)),
        n_experts=n_experts,
        top_k=top_k,
        n_shared_experts=int(cfg.get("n_shared_experts") or 0),
        moe_intermediate=int(cfg.get("moe_intermediate_size") or 0),
        first_k_dense=int(cfg.get("first_k_dense_replace") or 0) if n_experts else 0,
        expert_bias=is_gpt_oss,
        kv_lora_rank=int(cfg.get("kv_lora_rank") or 0),
        q_lora_rank=int(cfg.get("q_lora_rank") or 0),
        qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 0),
        qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 0),
        v_head_dim=int(cfg.get("v_head_dim") or 0),
        windows=_windows(cfg, layers),
    )


def load_config_file(path: str | Path) -> ModelSpec:
    """A `ModelSpec` from a config.json path or a model directory that holds one."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise UserError(f"--model {path}: no config.json there (and not a catalog model name)")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    name = p.parent.name if p.name == "config.json" else p.stem
    return from_hf_config(cfg, name=name, source=str(p))
