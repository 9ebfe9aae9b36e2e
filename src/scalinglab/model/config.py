"""The model's architecture, with one size dial: `depth`.

`ModelConfig.from_depth(d)` sets width = 64·d, head_dim 32, heads = width/32, two query
heads per KV head (GQA) and an MLP of 8/3·width rounded to 32, so a scaling ladder loops
over one integer (nanochat's `--depth`). Field names are those of Hugging Face's
`LlamaConfig`/`Qwen2Config`, so `config.json` maps one-to-one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 128
    hidden_size: int = 128
    intermediate_size: int = 352
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # < num_attention_heads: grouped-query attention
    head_dim: int = 32
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # Llama-3.1 style {"rope_type": "llama3", ...} or None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    attention_bias: bool = False  # bias on q/k/v projections (True for Qwen2)
    arch: Literal["llama", "qwen2"] = "llama"  # which Hugging Face class the weights map onto
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    depth: int | None = None  # the dial this config came from, if any

    @classmethod
    def from_depth(
        cls,
        depth: int,
        vocab_size: int,
        aspect: int = 64,
        width: int = 0,
        shape: Literal["auto", "uniform"] = "auto",
        **overrides,
    ) -> "ModelConfig":
        """The depth dial: `depth` layers of width `aspect`·depth (nanochat's dial), or of `width` when given.

        `auto`: heads of 32 dimensions when the width is a multiple of 32, else of 16, else of 8,
        half as many KV heads when the count is even, the MLP rounded up to a multiple of 32.
        `uniform` (the tiny widths of the CPU text ladders): heads of 8 dimensions, one KV head
        per query head, the MLP rounded to 8, so every width on a width dial has the same shape
        (under `auto` widths 40 and 48 differ in head size, GQA and MLP ratio: 3.2 against 2.67).
        """
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if aspect < 8 or aspect % 8:
            raise ValueError(f"aspect must be a positive multiple of 8, got {aspect}")
        if width < 0 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8, got {width}")
        width = width or aspect * depth
        if shape == "uniform":
            head_dim, multiple = 8, 8
            heads = kv = width // head_dim
        else:
            head_dim, multiple = (32 if width % 32 == 0 else 16 if width % 16 == 0 else 8), 32
            heads = width // head_dim
            kv = heads // 2 if heads % 2 == 0 else heads
        mlp = int(math.ceil(8 * width / 3 / multiple) * multiple)
        base = dict(
            vocab_size=vocab_size,
            hidden_size=width,
            intermediate_size=mlp,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=head_dim,
            depth=depth,
        )
        base.update(overrides)
        return cls(**base)

    @property
    def default_lr(self) -> float:
        """AdamW learning rate that follows the width (muP-like 1/sqrt(width) scaling)."""
        return 3e-3 * math.sqrt(128 / self.hidden_size)

    @property
    def num_params(self) -> int:
        """All parameters, counting tied embeddings once."""
        return self.non_embedding_params + self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the embedding and the LM head: the N of Kaplan et al."""
        d, h, kv, hd = self.hidden_size, self.num_attention_heads, self.num_key_value_heads, self.head_dim
        attn = d * h * hd + 2 * d * kv * hd + h * hd * d + (h * hd + 2 * kv * hd if self.attention_bias else 0)
        mlp = 3 * d * self.intermediate_size
        return self.num_hidden_layers * (attn + mlp + 2 * d) + d

    @property
    def lm_head_flops(self) -> float:
        """FLOPs of one position through the LM head (hidden -> vocab logits)."""
        return 2.0 * self.vocab_size * self.hidden_size

    def flops_per_token(self, context: int = 0) -> float:
        """Forward FLOPs for one token attending to `context` earlier tokens, logits included.

        2 FLOPs per weight multiply-add (LM head included), plus 4·layers·heads·head_dim
        per attended position (QK^T and AV). Training costs 3× this.
        """
        weights = self.non_embedding_params + self.vocab_size * self.hidden_size
        attn = 4 * self.num_hidden_layers * self.num_attention_heads * self.head_dim * context
        return 2.0 * weights + attn

    def forward_flops(self, start: int, count: int, head_rows: int | None = None) -> float:
        """Forward FLOPs of `count` tokens at positions start..start+count-1 (closed form).

        Every token goes through the body and attends to itself and every earlier position;
        the LM head runs on `head_rows` of them (default: all, as in decoding, where every
        position's logits sample the next token). The one place inference FLOPs are counted:
        the engine, test-time strategies and reward models all call this.
        """
        if count <= 0:
            return 0.0
        heads = count if head_rows is None else head_rows
        attn_per_pair = 4.0 * self.num_hidden_layers * self.num_attention_heads * self.head_dim
        ctx_sum = count * start + count * (count - 1) / 2 + count  # positions attended, summed over the tokens
        return count * 2.0 * self.non_embedding_params + attn_per_pair * ctx_sum + heads * self.lm_head_flops

    def prefill_flops(self, prompt_len: int) -> float:
        """A prompt's prefill: every position through the body, the LM head only at the last
        one (its logits sample the first token; the engine computes no other prompt logits)."""
        return self.forward_flops(0, prompt_len, head_rows=1)
