"""A decode step with static shapes for `torch.compile` (opt-in: `Engine(compile=True)`).

Eager PyTorch spends most of a small model's decode step launching ~150 operators, each
a few microseconds of dispatch for very little arithmetic. Compiled, the step becomes the
few matrix products it really is plus a handful of fused C++ (CPU) or Triton (CUDA) loops.

For one graph to serve every step, nothing in it may depend on the step:
- every one of the batch's slots is computed (finished ones too), over the whole cache
  length, with a mask for the positions not yet written;
- the graph only *reads* the cache: the new token's key and value are returned and
  written by one `index_put_` afterwards, and the token attends to itself through a
  separate score merged into the softmax (writing inside the graph would make the
  compiler copy the whole cache every step);
- attention is written as broadcast-multiply-and-sum, which the compiler fuses into one
  loop per layer: batched matmuls of 2×32 by 32×T matrices are mostly call overhead.
Weights are arguments, not constants, so an optimiser step or a new model of the same
shape reuses the compiled code. Keys use the engine's interleaved-pair RoPE layout, so
the eager prefill and the compiled decode share one cache.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved-pair RoPE: (x0, x1) -> (x0·c − x1·s, x0·s + x1·c); cos/sin (S, 1, D/2)."""
    x0, x1 = x.unflatten(-1, (-1, 2)).float().unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2).to(x.dtype)


def _norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm exactly as `model.transformer.RMSNorm` computes it (fp32 inside)."""
    return w * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, pos: torch.Tensor
) -> torch.Tensor:
    """Attention of q (S, H, D) over cached kc/vc (S, Hkv, T, D) at positions < pos, and over its own k/v (S, Hkv, D).

    Broadcast-multiply-and-sum, which the compiler fuses into loops (see the module docstring).
    """
    S, H, D = q.shape
    Hkv, T = kc.shape[1], kc.shape[2]
    q = q.float().view(S, Hkv, H // Hkv, D) / math.sqrt(D)
    scores = (q[:, :, :, None, :] * kc.float()[:, :, None, :, :]).sum(-1)  # (S, Hkv, rep, T)
    hidden = torch.arange(T, device=pos.device)[None, :] >= pos[:, None]  # (S, T): not written yet
    scores = scores.masked_fill(hidden[:, None, None, :], -math.inf)
    own = (q * k.float()[:, :, None, :]).sum(-1, keepdim=True)  # (S, Hkv, rep, 1): the token itself
    top = torch.maximum(scores.amax(-1, keepdim=True), own)
    e, e_own = (scores - top).exp(), (own - top).exp()
    y = (e[..., None] * vc.float()[:, :, None, :, :]).sum(-2) + e_own * v.float()[:, :, None, :]
    return y / (e.sum(-1, keepdim=True) + e_own)


def decode_step(
    tokens: torch.Tensor,
    pos: torch.Tensor,
    kv: torch.Tensor,
    cos_t: torch.Tensor,
    sin_t: torch.Tensor,
    embed: torch.Tensor,
    layers: list[tuple],
    norm_w: torch.Tensor,
    lm_head: torch.Tensor,
    heads: tuple[int, int],
    eps: float,
    uniform: torch.Tensor,
    temperature: torch.Tensor,
    kernel: bool = False,
):
    """One decode step: sampled ids (S,), their log-probs (S,), logits (S, V) and new K/V (L, 2, S, Hkv, D).

    tokens, pos (S,): the last ids and their positions; kv (L, 2, S, Hkv, T, D) holds each
    slot's positions < pos (T may be a prefix of the cache); cos_t/sin_t (T', D/2);
    layers: per layer (ln1, Wqkv, bqkv | None, Wo, ln2, Wgate_up, Wdown). Sampling is
    Gumbel-max on log_softmax(logits / temperature) with uniform noise (S, V), the same draw as
    `engine.sample_tokens` makes; the log-prob is under the full tempered distribution.
    Greedy: temperature 1 and uniform e⁻¹ everywhere, which makes the Gumbel noise zero.
    kernel: attend with the `scalinglab::decode_attention` operator (CPU, float32; see
    `engine.kernels`) instead of `_attend`.
    """
    H, Hkv = heads
    S, D = tokens.shape[0], kv.shape[5]
    x = F.embedding(tokens, embed)
    cos, sin = cos_t[pos][:, None, :], sin_t[pos][:, None, :]
    new = []
    for li, (ln1, wqkv, bqkv, wo, ln2, wgu, wdown) in enumerate(layers):
        qkv = F.linear(_norm(x, ln1, eps), wqkv, bqkv).unflatten(-1, (H + 2 * Hkv, D))
        q = _rotate(qkv[:, :H], cos, sin)
        k, v = _rotate(qkv[:, H : H + Hkv], cos, sin), qkv[:, H + Hkv :]
        new.append(torch.stack([k, v]))
        if kernel:
            no_prefix = kv.new_empty(0, Hkv, 1, D)
            y = torch.ops.scalinglab.decode_attention(
                q, no_prefix, no_prefix, pos, kv[li, 0], kv[li, 1], pos, k, v, 1.0 / math.sqrt(D)
            )
        else:
            y = _attend(q, k, v, kv[li, 0], kv[li, 1], pos)
        x = x + F.linear(y.reshape(S, H * D).to(x.dtype), wo)
        gate, up = F.linear(_norm(x, ln2, eps), wgu).chunk(2, dim=-1)
        x = x + F.linear(F.silu(gate) * up, wdown)
    logits = F.linear(_norm(x, norm_w, eps), lm_head)
    logp = (logits.float() / temperature).log_softmax(-1)
    tok = (logp - torch.log(-torch.log(uniform.clamp(1e-10, 1.0)))).argmax(-1)
    return tok, logp.gather(-1, tok[:, None])[:, 0], logits, torch.stack(new)


class CompiledDecode:
    """`decode_step` compiled once per process, device type and shape; falls back to eager if compiling fails."""

    _compiled: dict = {}  # device type -> compiled function; shared by every engine (the code does not depend on the weights)
    _failed: str | None = None

    @classmethod
    def step(cls, *args, **kwargs):
        if cls._failed is None:
            device = args[0].device.type
            if device not in cls._compiled:
                # on a CPU, inductor's C++ wrapper instead of its Python one: less per-step overhead
                options = {"cpp_wrapper": True} if device == "cpu" else {}
                # one graph per batch bucket, dtype and device: allow more than dynamo's default 8
                torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
                cls._compiled[device] = torch.compile(decode_step, fullgraph=True, dynamic=False, options=options)
            try:
                torch._dynamo.mark_dynamic(args[2], 4)  # attended length: one graph for every step
                return cls._compiled[device](*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - no C++ compiler, unsupported backend, ...: eager still works
                cls._failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                warnings.warn(f"torch.compile failed ({cls._failed}); decoding eagerly", RuntimeWarning, stacklevel=2)
        return decode_step(*args, **kwargs)
