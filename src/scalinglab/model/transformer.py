"""A decoder-only transformer in the Llama / Qwen2 family.

RoPE (rotate-half convention, optional Llama-3 frequency scaling), RMSNorm (pre-norm),
SwiGLU MLP, grouped-query attention, optional tied embeddings and q/k/v bias. Module names
match Hugging Face's `LlamaForCausalLM` / `Qwen2ForCausalLM`, so a `state_dict` maps onto
theirs key for key (see `model/hf.py`).

This file holds the full-sequence forward used for training and scoring; the cached
prefill/decode forward used for generation lives in `engine/`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.model.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 like the reference implementation, then cast back.
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies (head_dim/2,), with Llama-3 scaling when configured."""
    d = cfg.head_dim
    # On the CPU even inside a `torch.device("meta")` block: a meta arange goes through torch._refs,
    # whose first call imports torch._dynamo (2-3 s of load_model).
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64, device="cpu") / d))
    rs = cfg.rope_scaling or {}
    if rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        scaled = torch.where(wavelen > old / lo, inv / factor, inv)
        mid = (1 - smooth) * inv / factor + smooth * inv
        is_mid = (wavelen <= old / lo) & (wavelen >= old / hi)
        inv = torch.where(is_mid, mid, scaled)
    return inv.float()


def rope_cos_sin(
    inv_freq: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (*positions.shape, head_dim) for the rotate-half convention."""
    freqs = positions.float()[..., None] * inv_freq  # (..., head_dim/2)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos/sin broadcastable to it."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, kv, hd, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
        self.n_heads, self.n_kv, self.head_dim = h, kv, hd
        self.q_proj = nn.Linear(d, h * hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(d, kv * hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(d, kv * hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(h * hd, d, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Projected, rotated q (B, H, T, D) and k, v (B, Hkv, T, D)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_heads
        )  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """Named `model` inside `Transformer`, like Hugging Face's `LlamaModel`."""

    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        # init=False gives the embedding its storage, so nn.Embedding skips its own normal_: on the meta device
        # that normal_ goes through torch._refs, whose first call imports torch._dynamo (2-3 s of load_model).
        # init=True keeps it, so a seed draws the same initial weights as before.
        V, d = cfg.vocab_size, cfg.hidden_size
        self.embed_tokens = nn.Embedding(V, d) if init else nn.Embedding(V, d, _weight=torch.empty(V, d))
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, init: bool = True):
        """`init=False` skips the random initialisation (for weights that are loaded next)."""
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg, init)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv_freq = rope_inv_freq(cfg)  # made on the CPU (see rope_inv_freq); kept there on the meta device
        if self.lm_head.weight.device.type != "meta":
            inv_freq = inv_freq.to(self.lm_head.weight.device)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        if not init:
            return
        self.apply(self._init)
        for block in self.model.layers:  # scaled init of residual projections (GPT-2)
            std = 0.02 / math.sqrt(2 * cfg.num_hidden_layers)
            nn.init.normal_(block.self_attn.o_proj.weight, std=std)
            nn.init.normal_(block.mlp.down_proj.weight, std=std)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def hidden_states(self, idx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, T, d) for right-padded token ids (B, T)."""
        B, T = idx.shape
        if positions is None:
            positions = torch.arange(T, device=idx.device)
        x = self.model.embed_tokens(idx)
        cos, sin = rope_cos_sin(self.inv_freq, positions, x.dtype)
        for block in self.model.layers:
            x = block(x, cos, sin)
        return self.model.norm(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); causal, so right padding is harmless."""
        return self.lm_head(self.hidden_states(idx))
