"""What tokenomics reasons about: a transformer's shape and parameter counts (`ModelSpec`), and a
chip's peak rates, memory and price (`Hardware`; the catalog of real chips is `catalog.py`).

`ModelSpec` covers the decoder-only families of the catalog: Llama/Qwen2 (GQA, dense SwiGLU
MLP), Mixtral (GQA + top-k MoE), DeepSeek-V3/R1 (MLA: multi-head latent attention, shared +
routed experts, first k layers dense) and GPT-OSS (GQA with alternating sliding-window and
full layers, MoE). Build one with `hf_config.from_hf_config` from a `config.json`.

Parameter counts follow the Hugging Face module layout (q/k/v/o projections, gate/up/down
MLP, RMSNorm weights, router, embeddings, lm_head), so they reproduce the published totals:
Llama-3.1-8B 8.03 B, DeepSeek-V3 671 B total / 37 B active (the MTP module is not counted),
GPT-OSS-120B 116.8 B / 5.1 B. Deviation: attention sinks and norm biases are ignored (<1e-4).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scalinglab.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: int
    hidden: int
    heads: int  # query heads
    kv_heads: int  # key/value heads (== heads for MHA, 1 for MQA; MLA ignores it for the cache)
    head_dim: int
    intermediate: int  # dense MLP width (and the expert width for Mixtral / GPT-OSS)
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2 and GPT-OSS carry q/k/v biases
    o_bias: bool = False  # GPT-OSS (attention_bias=true) also biases the output projection
    # Mixture of experts (n_experts == 0: dense)
    n_experts: int = 0
    top_k: int = 0
    n_shared_experts: int = 0
    moe_intermediate: int = 0  # expert MLP width; 0 means `intermediate`
    first_k_dense: int = 0  # DeepSeek-V3: the first 3 layers keep a dense MLP
    expert_bias: bool = False  # GPT-OSS experts have biases
    # Multi-head latent attention (kv_lora_rank > 0: MLA, DeepSeek-V2/V3)
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Attention window per layer: 0 = full attention, w > 0 = sliding window of w tokens
    windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Refuse shapes no model has (a negative width gives negative bytes and "fits": true)."""
        for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"model {self.name}: {k} must be a positive integer, got {v!r}")
        for k in (
            "n_experts",
            "top_k",
            "n_shared_experts",
            "moe_intermediate",
            "first_k_dense",
            "kv_lora_rank",
            "q_lora_rank",
            "qk_rope_head_dim",
            "qk_nope_head_dim",
            "v_head_dim",
        ):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise UserError(f"model {self.name}: {k} must be a non-negative integer, got {v!r}")
        if not self.is_mla and self.heads % self.kv_heads:
            raise UserError(
                f"model {self.name}: {self.heads} attention heads are not a multiple of {self.kv_heads} key/value heads"
            )
        if self.n_experts and not 1 <= self.top_k <= self.n_experts:
            raise UserError(f"model {self.name}: top_k {self.top_k} experts per token must be in [1, {self.n_experts}]")
        if self.first_k_dense > self.layers:
            raise UserError(f"model {self.name}: first_k_dense {self.first_k_dense} > {self.layers} layers")
        if any(w < 0 for w in self.windows) or (self.windows and len(self.windows) != self.layers):
            raise UserError(f"model {self.name}: windows must be {self.layers} non-negative sizes")

    # ---- derived shape ----
    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def attention_kind(self) -> str:
        if self.is_mla:
            return "MLA"
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @property
    def layer_windows(self) -> tuple[int, ...]:
        return self.windows if self.windows else (0,) * self.layers

    @property
    def n_moe_layers(self) -> int:
        return self.layers - self.first_k_dense if self.is_moe else 0

    @property
    def expert_width(self) -> int:
        return self.moe_intermediate or self.intermediate

    @property
    def qk_dim(self) -> int:
        """Per-head width of the query·key dot product."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

    @property
    def v_dim(self) -> int:
        return self.v_head_dim if self.is_mla else self.head_dim

    # ---- parameter counts ----
    @property
    def attention_params(self) -> int:
        """One layer's attention weights (projections, biases, MLA norms)."""
        h = self.hidden
        if self.is_mla:
            q_out = self.heads * self.qk_dim
            q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * q_out) if self.q_lora_rank else h * q_out
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
            kv_b = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv_a + kv_b + self.heads * self.v_head_dim * h
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        bias = (q + 2 * kv if self.qkv_bias else 0) + (h if self.o_bias else 0)
        return h * q + 2 * h * kv + q * h + bias

    @property
    def expert_params(self) -> int:
        """One routed expert (gate, up, down), with biases where the model has them."""
        f = self.expert_width
        return 3 * self.hidden * f + ((2 * f + self.hidden) if self.expert_bias else 0)

    @property
    def dense_mlp_params(self) -> int:
        return 3 * self.hidden * self.intermediate

    @property
    def router_params(self) -> int:
        return self.hidden * self.n_experts + (self.n_experts if self.expert_bias else 0)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def total_routed_expert_params(self) -> int:
        return self.n_moe_layers * self.n_experts * self.expert_params

    @property
    def dense_body_params(self) -> int:
        """Every layer weight that every token uses (attention, dense MLPs, shared experts, routers)."""
        dense_layers = self.layers - self.n_moe_layers
        moe_fixed = self.n_moe_layers * (self.router_params + self.n_shared_experts * self.expert_params)
        return self.layers * self.attention_params + dense_layers * self.dense_mlp_params + moe_fixed

    @property
    def total_params(self) -> int:
        return (
            self.dense_body_params
            + self.total_routed_expert_params
            + self.embedding_params
            + self.lm_head_params
            + self.norm_params
        )

    @property
    def active_params(self) -> int:
        """Parameters one token multiplies through, counting the output head, not the input embedding
        (the convention behind "37 B active" for DeepSeek-V3 and "5.1 B" for GPT-OSS-120B)."""
        routed = self.n_moe_layers * self.top_k * self.expert_params
        head = self.lm_head_params or self.embedding_params
        return self.dense_body_params + routed + head + self.norm_params


@dataclass(frozen=True)
class Hardware:
    name: str
    bf16_tflops: float  # dense BF16 tensor FLOP/s, 1e12
    fp8_tflops: float | None  # dense 8-bit FLOP/s (FP8; INT8 TOPS on chips without FP8), None = no 8-bit path
    fp4_tflops: float | None  # dense FP4 FLOP/s, None = no FP4 path (falls back to the 8-bit rate)
    hbm_gib: float  # device memory as the datasheet prints it, GiB (2^30 bytes)
    hbm_tbps: float  # device memory bandwidth, TB/s
    scaleup_gbps: float  # scale-up link bandwidth per chip, bidirectional GB/s
    scaleup_domain: int  # chips in one scale-up (NVLink/ICI/IF) domain
    usd_per_hour: float  # rental price per chip-hour (editable default)
    mfu: float = 0.6  # achieved/peak matmul FLOP/s in serving kernels (calibratable)
    mbu: float = 0.8  # achieved/peak memory bandwidth (calibratable)
    step_overhead_s: float = 0.0  # fixed per-step cost (launch, scheduling, sampling)
    overlap: bool = True  # compute and memory overlap (roofline max); False: they add (CPUs)
    source: str = ""

    def peak_flops(self, dtype: str) -> float:
        """Dense FLOP/s for matmuls whose operands are `dtype` (falls back to the next wider path)."""
        d = dtype.lower()
        if d in ("fp4", "nvfp4", "mxfp4") and self.fp4_tflops:
            return self.fp4_tflops * 1e12
        if d in ("fp4", "nvfp4", "mxfp4", "fp8", "int8") and self.fp8_tflops:
            return self.fp8_tflops * 1e12
        return self.bf16_tflops * 1e12

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gib * 2**30

    def with_(self, **changes) -> "Hardware":
        return dataclasses.replace(self, **changes)
