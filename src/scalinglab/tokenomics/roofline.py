"""Roofline step times for prefill and decode, with calibratable efficiencies.

One engine step processes `n_tokens` (decode: one per sequence; prefill: the prompt chunk).
Per chip:
  compute = linear FLOPs / (peak(weights dtype) x MFU) + attention FLOPs / (peak(bf16) x MFU)
    linear FLOPs = 2 x (active params) x tokens, lm_head only for rows that sample;
    attention FLOPs = 2 x heads x (d_qk + d_v) x attended tokens, per layer (MLA decode runs
    absorbed: d_qk = kv_lora_rank + rope dim, d_v = kv_lora_rank);
  memory = (weights read once per step + KV read per sequence) / (HBM bandwidth x MBU)
    for MoE only the experts the batch touches are read: with B tokens routed top-k of E
    uniformly, a layer touches E x (1 - (1 - k/E)^B) distinct experts in expectation;
  comm = tensor-parallel all-reduces (2 per layer of tokens x hidden BF16, ring: 2(tp-1)/tp of
    the message each way, plus a fixed latency each) and expert-parallel all-to-all (dispatch in
    FP8 + combine in BF16, (ep-1)/ep of top-k copies cross chips) over the scale-up link's
    one-way bandwidth (half the bidirectional figure), or over 50 GB/s scale-out NICs when the
    group is larger than the scale-up domain;
  step = max(compute, memory) + comm + fixed overhead   (sum instead of max when the hardware
    does not overlap them, e.g. a calibrated CPU).
Pipeline parallelism is modelled as ideally micro-batched: each chip does 1/pp of the layers,
so step time is a throughput figure; single-token latency through pp stages is pp times longer.
Deviations: no kernel-level effects (tile quantisation, attention kernel efficiency at short
context, CUDA-graph padding); communication is not overlapped with compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalinglab.tokenomics.kv import attended_tokens, kv_bytes_per_sequence, kv_elem_bytes
from scalinglab.tokenomics.memory import ServeConfig, kv_shard, weight_elem_bytes
from scalinglab.tokenomics.spec import Hardware, ModelSpec

ALLREDUCE_LATENCY_S = 8e-6  # one small-message all-reduce inside an NVLink domain (custom all-reduce class)
ALLTOALL_LATENCY_S = 15e-6  # one dispatch or combine phase
SCALEOUT_GBPS = 50.0  # one-way per-chip scale-out bandwidth (400 Gb/s InfiniBand/RoCE NIC per GPU)


def expected_distinct_experts(n_experts: int, top_k: int, tokens: float) -> float:
    """E x (1 - (1 - k/E)^B): distinct experts hit by B tokens each routed to k of E (uniform routing)."""
    if n_experts == 0 or tokens <= 0:
        return 0.0
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** tokens)


@dataclass(frozen=True)
class StepTime:
    seconds: float
    compute_s: float
    memory_s: float
    comm_s: float
    flops: float  # whole instance
    bytes: float  # per chip
    bound: str

    def as_dict(self) -> dict:
        return {
            "step_seconds": self.seconds,
            "compute_seconds": self.compute_s,
            "memory_seconds": self.memory_s,
            "comm_seconds": self.comm_s,
            "flops": self.flops,
            "bytes_per_gpu": self.bytes,
            "bound": self.bound,
        }


class StepModel:
    """Precomputed per-step costs of one (model, hardware, serving config)."""

    def __init__(self, model: ModelSpec, hw: Hardware, cfg: ServeConfig = ServeConfig()):
        self.model, self.hw, self.cfg = model, hw, cfg
        p, m = cfg.par, model
        self.n_gpus = p.n_gpus
        wb, eb = weight_elem_bytes(cfg.weights_dtype), weight_elem_bytes(cfg.routed_dtype)
        head = m.lm_head_params or m.embedding_params
        # bytes each chip reads every step regardless of batch (its shard of the dense weights)
        self.dense_bytes_per_gpu = (m.dense_body_params * wb + max(2.0, wb) * (head + m.norm_params)) / (p.tp * p.pp)
        self.routed_bytes_per_gpu = m.total_routed_expert_params * eb / p.expert_shard
        self.body_flops_per_token = 2.0 * (m.dense_body_params + m.n_moe_layers * m.top_k * m.expert_params)
        self.head_flops_per_row = 2.0 * head
        self.peak_linear = hw.peak_flops(cfg.weights_dtype) * hw.mfu
        self.peak_attn = hw.peak_flops("fp32" if cfg.kv_dtype == "fp32" else "bf16") * hw.mfu
        self.bw = hw.hbm_tbps * 1e12 * hw.mbu
        self.kv_div = p.attn_groups * p.pp * kv_shard(m, p)  # KV bytes of the instance -> per chip
        self.kv_elem = kv_elem_bytes(cfg.kv_dtype)
        # attention FLOPs per attended (query, key) pair per layer
        d_qk, d_v = (m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank) if m.is_mla else (m.qk_dim, m.v_dim)
        self.attn_flops_decode = 2.0 * m.heads * (d_qk + d_v)
        self.attn_flops_prefill = 2.0 * m.heads * (m.qk_dim + m.v_dim)

    # ---- building blocks ----
    def comm_seconds(self, n_tokens: float) -> float:
        m, p, hw = self.model, self.cfg.par, self.hw
        t = 0.0
        width = max(p.tp, p.ep)
        link = (hw.scaleup_gbps / 2 if width <= hw.scaleup_domain else SCALEOUT_GBPS) * 1e9
        layers = m.layers / p.pp
        if p.tp > 1:
            msg = n_tokens / p.attn_groups * m.hidden * 2.0
            t += layers * 2 * (2 * (p.tp - 1) / p.tp * msg / link + ALLREDUCE_LATENCY_S)
        if p.ep > 1 and m.is_moe:
            per_chip = n_tokens / width * m.top_k * m.hidden * (p.ep - 1) / p.ep * (1.0 + 2.0)
            t += m.n_moe_layers / p.pp * (per_chip / link + 2 * ALLTOALL_LATENCY_S)
        return t

    def seconds(self, n_tokens: float, n_logits: float, attn_flops: float, kv_bytes: float) -> StepTime:
        """One step: `n_tokens` through the body, `n_logits` rows through lm_head, the given attention
        FLOPs and KV bytes (whole instance)."""
        m, g = self.model, self.n_gpus
        lin = self.body_flops_per_token * n_tokens + self.head_flops_per_row * n_logits
        compute = lin / g / self.peak_linear + attn_flops / g / self.peak_attn
        touched = expected_distinct_experts(m.n_experts, m.top_k, n_tokens) / m.n_experts if m.is_moe else 0.0
        byts = self.dense_bytes_per_gpu + self.routed_bytes_per_gpu * touched + kv_bytes / self.kv_div
        memory = byts / self.bw
        comm = self.comm_seconds(n_tokens) if n_tokens > 0 else 0.0
        core = max(compute, memory) if self.hw.overlap else compute + memory
        bound = "compute" if compute >= memory else "memory"
        if comm > max(compute, memory):
            bound = "communication"
        return StepTime(core + comm + self.hw.step_overhead_s, compute, memory, comm, lin + attn_flops, byts, bound)

    # ---- the two phases ----
    def decode(self, batch: int, context: float) -> StepTime:
        """One decode step of `batch` sequences that each hold `context` tokens."""
        att = attended_tokens(self.model, context)
        kv = batch * kv_bytes_per_sequence(self.model, context, self.cfg.kv_dtype)
        return self.seconds(batch, batch, batch * att * self.attn_flops_decode, kv)

    def prefill(self, batch: int, input_len: int, cached: int = 0) -> StepTime:
        """Prefill `batch` prompts of `input_len` tokens, the first `cached` already in the (prefix) cache."""
        new = max(input_len - cached, 0)
        pairs = prefill_attended_pairs(self.model, cached, input_len)
        kv = batch * kv_bytes_per_sequence(self.model, input_len, self.cfg.kv_dtype)
        return self.seconds(batch * new, batch, batch * pairs * self.attn_flops_prefill, kv)


def prefill_attended_pairs(model: ModelSpec, start: float, end: float) -> float:
    """Sum over layers and over new positions p in [start, end) of the keys position p attends to."""
    total = 0.0
    for w in model.layer_windows:
        if w == 0:
            total += (end * end - start * start) / 2.0 + (end - start) / 2.0
        else:
            total += _sum_min(end, w) - _sum_min(start, w)
    return total


def _sum_min(n: float, w: int) -> float:
    """sum_{p=1..n} min(p, w), continuous in n."""
    if n <= w:
        return n * (n + 1) / 2.0
    return w * (w + 1) / 2.0 + (n - w) * w


def require_fit(step: StepModel, batch: int, context: int) -> None:
    """Refuse (one line) to time a step whose weights, or whose `batch` sequences of `context`
    tokens, do not fit in the chips' memory: a roofline time for it would be a price for nothing."""
    from scalinglab.errors import UserError
    from scalinglab.tokenomics.memory import memory_plan

    plan = memory_plan(step.model, step.hw, step.cfg)
    where = f"{step.model.name} on {step.n_gpus} x {step.hw.name}"
    if not plan.fits:
        raise UserError(
            f"{where}: the weights do not fit ({plan.weight_bytes / 1e9:.1f} GB per chip); "
            "raise --tp/--ep or lower --weights-dtype"
        )
    fits = (
        math.floor(plan.kv_free_bytes / plan.seq_bytes_per_gpu(context)) * plan.cfg.par.attn_groups
    )  # KV alone, no scheduler cap
    if batch > fits:
        raise UserError(
            f"{where}: --batch {batch} sequences of {context} tokens do not fit in KV memory "
            f"(at most {fits}); lower --batch/--context or raise --tp"
        )


def decode_summary(step: StepModel, batch: int, context: int) -> dict:
    require_fit(step, batch, context)
    st = step.decode(batch, context)
    return {
        "model": step.model.name,
        "hardware": step.hw.name,
        "n_gpus": step.n_gpus,
        "batch": batch,
        "context": context,
        "weights_dtype": step.cfg.weights_dtype,
        "kv_dtype": step.cfg.kv_dtype,
        "mfu": step.hw.mfu,
        "mbu": step.hw.mbu,
        **st.as_dict(),
        "tokens_per_s": batch / st.seconds,
        "tokens_per_s_per_user": 1.0 / st.seconds,
        "tokens_per_s_per_gpu": batch / st.seconds / step.n_gpus,
    }


def prefill_summary(step: StepModel, batch: int, input_len: int, cached: int = 0) -> dict:
    require_fit(step, batch, input_len)
    st = step.prefill(batch, input_len, cached)
    new = batch * max(input_len - cached, 0)
    return {
        "model": step.model.name,
        "hardware": step.hw.name,
        "n_gpus": step.n_gpus,
        "batch": batch,
        "input_len": input_len,
        "cached": cached,
        "weights_dtype": step.cfg.weights_dtype,
        "mfu": step.hw.mfu,
        "mbu": step.hw.mbu,
        **st.as_dict(),
        "tokens_per_s": new / st.seconds if st.seconds > 0 else math.inf,
    }
