"""Memory plan of one serving instance: weights, activations, KV capacity, maximum batch.

Sharding (`Parallel(tp, pp, ep)`): the instance has max(tp, ep) x pp chips.
  - attention, dense MLPs, shared experts, embeddings: split over tp x pp (Megatron TP, PP by layer);
  - routed experts: split over max(tp, ep) x pp (EP places whole experts; TP slices them; either way
    each chip holds 1/max(tp, ep) of a layer's experts);
  - ep > tp means data-parallel attention (DeepSeek/SGLang style): ep/tp attention groups, each
    serving its own sequences with its own KV cache;
  - the KV cache of GQA splits over min(tp, kv_heads) (heads beyond that are replicated); MLA's
    latent has no head axis, so every TP rank holds the whole latent (as in vLLM/SGLang).
Usable memory = HBM x gpu_memory_utilization (vLLM's default 0.9) - a fixed runtime overhead
(CUDA context, graphs, comm buffers: 1.5 GB assumed) - weights - peak activations of one
forward chunk of `max_num_batched_tokens`; the rest is KV cache, allocated in 16-token blocks.

Weight dtypes apply to the linear layers of the blocks; embeddings, lm_head and norms stay
BF16 (FP32 for an FP32 model), as FP8/FP4 checkpoints ship them. Bytes/element include block scales: fp4 = NVFP4
(4 bits + an FP8 scale per 16), mxfp4 (+ an 8-bit scale per 32), int4 (+ an FP16 scale per 128).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalinglab.errors import UserError
from scalinglab.tokenomics.kv import kv_bytes_per_sequence, kv_elem_bytes, kv_elems_per_layer_token
from scalinglab.tokenomics.spec import Hardware, ModelSpec

WEIGHT_BYTES = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 4.5 / 8,
    "nvfp4": 4.5 / 8,
    "mxfp4": 4.25 / 8,
    "int4": 4.125 / 8,
}
GB = 1e9


def weight_elem_bytes(dtype: str) -> float:
    try:
        return WEIGHT_BYTES[dtype.lower()]
    except KeyError:
        raise UserError(f"--weights-dtype {dtype!r}: choose one of {', '.join(WEIGHT_BYTES)}") from None


@dataclass(frozen=True)
class Parallel:
    tp: int = 1  # tensor parallel degree
    pp: int = 1  # pipeline parallel degree (layers split into pp stages)
    ep: int = 1  # expert parallel degree (> tp: data-parallel attention groups)

    def __post_init__(self):
        for k in ("tp", "pp", "ep"):
            if getattr(self, k) < 1:
                raise UserError(f"--{k} {getattr(self, k)}: must be >= 1")
        if self.ep > self.tp and self.ep % self.tp:
            raise UserError(f"--ep {self.ep}: must be a multiple of --tp {self.tp} when larger")

    @property
    def n_gpus(self) -> int:
        return max(self.tp, self.ep) * self.pp

    @property
    def attn_groups(self) -> int:
        """Independent attention (KV) groups: ep/tp under data-parallel attention, else 1."""
        return max(self.tp, self.ep) // self.tp

    @property
    def expert_shard(self) -> int:
        return max(self.tp, self.ep) * self.pp


@dataclass(frozen=True)
class ServeConfig:
    """Everything besides the model and hardware that sets memory and speed."""

    par: Parallel = Parallel()
    weights_dtype: str = "bf16"  # block linear layers
    expert_dtype: str | None = None  # routed experts, when different (GPT-OSS ships MXFP4 experts)
    kv_dtype: str = "bf16"
    gpu_memory_utilization: float = 0.9  # vLLM's default fraction of HBM it may use
    runtime_overhead_gb: float = 1.5  # CUDA context, CUDA graphs, NCCL buffers (assumed)
    max_num_batched_tokens: int = 8192  # chunked-prefill token budget per step (vLLM default for serving)
    max_num_seqs: int = 1024  # scheduler cap on the running batch
    block_size: int = 16  # KV page size in tokens

    @property
    def routed_dtype(self) -> str:
        return self.expert_dtype or self.weights_dtype


def weight_bytes_per_gpu(model: ModelSpec, cfg: ServeConfig) -> float:
    p = cfg.par
    wb, eb = weight_elem_bytes(cfg.weights_dtype), weight_elem_bytes(cfg.routed_dtype)
    bf16_part = max(2.0, wb) * (model.embedding_params + model.lm_head_params + model.norm_params)
    dense = (model.dense_body_params * wb + bf16_part) / (p.tp * p.pp)
    return dense + model.total_routed_expert_params * eb / p.expert_shard


def activation_bytes_per_gpu(model: ModelSpec, cfg: ServeConfig) -> float:
    """Peak temporaries of one forward chunk: residual stream and norms (4 x hidden), q/k/v, the MLP
    (or top-k experts') gate+up output, all BF16, plus FP32 logits for the sampled rows."""
    tp, t = cfg.par.tp, cfg.max_num_batched_tokens
    ffn = (model.top_k * model.expert_width) if model.is_moe else model.intermediate
    qkv = (
        (model.heads * model.qk_dim + 2 * model.kv_heads * model.head_dim)
        if not model.is_mla
        else (model.heads * (model.qk_dim + model.v_dim))
    )
    per_token = 4 * model.hidden + (2 * ffn + qkv) / tp
    return t * per_token * 2.0 + min(cfg.max_num_seqs, t) * model.vocab / tp * 4.0


def kv_shard(model: ModelSpec, par: Parallel) -> int:
    """How many TP ranks split one token's KV (MLA: none; GQA: up to the number of KV heads)."""
    return 1 if model.is_mla else min(par.tp, model.kv_heads)


@dataclass(frozen=True)
class MemoryPlan:
    model: ModelSpec
    hw: Hardware
    cfg: ServeConfig
    usable_bytes: float  # per chip
    weight_bytes: float  # per chip
    activation_bytes: float  # per chip
    kv_free_bytes: float  # per chip, for the KV cache (may be negative: does not fit)

    @property
    def fits(self) -> bool:
        return self.kv_free_bytes > 0

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        m, p = self.model, self.cfg.par
        return m.layers / p.pp * kv_elems_per_layer_token(m) * kv_elem_bytes(self.cfg.kv_dtype) / kv_shard(m, p)

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of KV the whole instance holds (all attention groups, short-context rate)."""
        if not self.fits:
            return 0
        per_group = math.floor(self.kv_free_bytes / self.kv_bytes_per_token_per_gpu)
        return per_group * self.cfg.par.attn_groups

    def seq_bytes_per_gpu(self, context: float) -> float:
        """KV bytes one sequence of `context` tokens occupies on each chip of its attention group."""
        m, p = self.model, self.cfg.par
        blocks = math.ceil(context / self.cfg.block_size) * self.cfg.block_size
        return kv_bytes_per_sequence(m, blocks, self.cfg.kv_dtype) / (p.pp * kv_shard(m, p))

    def max_batch(self, context: float) -> int:
        """Sequences of `context` tokens that fit at once (KV-bound, capped by max_num_seqs)."""
        if not self.fits:
            return 0
        per_group = math.floor(self.kv_free_bytes / self.seq_bytes_per_gpu(context))
        return min(per_group * self.cfg.par.attn_groups, self.cfg.max_num_seqs * self.cfg.par.attn_groups)

    def summary(self, context: int | None = None) -> dict:
        out = {
            "model": self.model.name,
            "hardware": self.hw.name,
            "n_gpus": self.cfg.par.n_gpus,
            "tp": self.cfg.par.tp,
            "pp": self.cfg.par.pp,
            "ep": self.cfg.par.ep,
            "weights_dtype": self.cfg.weights_dtype,
            "kv_dtype": self.cfg.kv_dtype,
            "hbm_gib_per_gpu": self.hw.hbm_gib,
            "usable_gb_per_gpu": self.usable_bytes / GB,
            "weights_gb_per_gpu": self.weight_bytes / GB,
            "activations_gb_per_gpu": self.activation_bytes / GB,
            "runtime_overhead_gb_per_gpu": self.cfg.runtime_overhead_gb,
            "kv_gb_per_gpu": max(self.kv_free_bytes, 0.0) / GB,
            "fits": self.fits,
            "kv_bytes_per_token_per_gpu": self.kv_bytes_per_token_per_gpu,
            "kv_capacity_tokens": self.kv_capacity_tokens,
        }
        if context is not None:
            out["context"] = context
            out["max_batch"] = self.max_batch(context)
        return out


def memory_plan(model: ModelSpec, hw: Hardware, cfg: ServeConfig = ServeConfig()) -> MemoryPlan:
    if not 0 < cfg.gpu_memory_utilization <= 1:
        raise UserError(f"--gpu-memory-utilization {cfg.gpu_memory_utilization}: must be in (0, 1]")
    usable = hw.hbm_bytes * cfg.gpu_memory_utilization - cfg.runtime_overhead_gb * GB
    w = weight_bytes_per_gpu(model, cfg)
    a = activation_bytes_per_gpu(model, cfg)
    return MemoryPlan(model, hw, cfg, usable, w, a, usable - w - a)
