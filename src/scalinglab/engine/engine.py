"""Batched generation with a KV cache, shared prompt prefill and continuous batching.

Layout. A generate call with `n` samples per prompt works on G *groups* of n sample slots
(G·n ≤ `max_batch`). Each group holds one prompt: its keys/values live once in the
*prefix* cache (G, Hkv, Tp, D); each sample's generated tokens live in the *suffix* cache
(G·n, Hkv, Ts, D). So n samples cost one prefill and one copy of the prompt's KV (the
cascade/Hydragen trick): decode attention is computed over the prefix with the n·rep
queries of a group as one matrix product, over each sample's own suffix, and the two
softmax pieces are merged by their log-sum-exp.

Continuous batching. When every sample of a group has finished (EOS, a stop string or
the length limit), the group is refilled with the next waiting prompt at once; when no
prompt waits, the last active group is moved into the hole, so a step always computes
exactly the active groups. Long and short answers therefore do not hold compute hostage
(within a group, samples wait for the group's longest one).

Speed on a CPU (float32): the decode loop runs in C++ (`scalinglab::decode_steps`, see
`engine.kernels`) for as many steps as no group finishes; the scheduler below stays in Python.
It samples exactly the tokens the Python step (`_decode` + `sample_tokens`) samples, which
serves other dtypes and devices, and machines without a C++ compiler (then with matmul
attention). `Engine(compile=True)` runs the n = 1 step through the static-shape
`torch.compile` graph of `engine.compiled` instead (meant for GPUs; docs/engine.md).

Sampling: temperature, top-k, top-p or greedy, with a seeded generator. The log-prob
returned for each sampled token is under the temperature-scaled *full* distribution
(before top-k/top-p truncation; RL_CHECKLIST item 7).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scalinglab.engine.compiled import CompiledDecode
from scalinglab.engine.kernels import decode_attention, decode_steps
from scalinglab.errors import UserError
from scalinglab.model.transformer import Transformer


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # samples per prompt; they share one prefill of the prompt
    max_new_tokens: int = 64  # generated-token limit per sample (EOS included)
    temperature: float = 1.0  # softmax temperature; ignored when greedy
    top_k: int = 0  # keep the k most likely tokens (0 = all)
    top_p: float = 1.0  # nucleus sampling mass (1 = all)
    greedy: bool = False  # argmax decoding
    stop: tuple[str, ...] = ()  # strings that end a sample (kept in its text)
    ignore_eos: bool = False  # keep generating past EOS (benchmarks)
    seed: int = 0


@dataclass
class Completion:
    text: str
    token_ids: list[int]  # generated ids, EOS included when the sample stopped on it
    logprobs: list[float]  # one per token id
    finish_reason: str  # "eos", "stop" or "length"


@dataclass
class Generation:
    prompt: str
    prompt_ids: list[int]
    completions: list[Completion]


@dataclass
class GenerationResult:
    generations: list[Generation]
    prompt_tokens: int = 0  # tokens actually prefilled (each prompt once)
    generated_tokens: int = 0  # tokens sampled over all samples
    prefills: int = 0  # prompts prefilled
    prompt_flops: float = 0.0
    generated_flops: float = 0.0
    seconds: float = 0.0
    kv_bytes: int = 0  # bytes allocated for the prefix + suffix caches
    prefix_kv_bytes: int = 0  # of which the shared prompt caches
    steps: int = 0  # decode steps taken
    decode_path: str = ""  # "native" (C++ loop), "compiled" (torch.compile step) or "pytorch" (eager step)

    @property
    def flops(self) -> float:
        return self.prompt_flops + self.generated_flops

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def accounting(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens, "prefills": self.prefills,
                "prompt_flops": self.prompt_flops, "generated_flops": self.generated_flops, "flops": self.flops,
                "seconds": self.seconds, "tokens_per_s": self.tokens_per_s, "kv_bytes": self.kv_bytes}


def sequence_flops(cfg, start: int, count: int) -> float:
    """Forward FLOPs of `count` tokens at positions start..start+count-1 (closed form)."""
    if count <= 0:
        return 0.0
    per_pos = cfg.flops_per_token(1) - cfg.flops_per_token(0)
    ctx_sum = count * start + count * (count - 1) / 2 + count  # each token attends to itself and all before
    return count * cfg.flops_per_token(0) + per_pos * ctx_sum


def sample_tokens(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled ids (B,) and their log-probs (B,) from logits (B, V)."""
    logits = logits.float()
    if p.greedy:
        tok = logits.argmax(-1)
        return tok, logits.log_softmax(-1).gather(-1, tok[:, None])[:, 0]
    logits = logits / max(p.temperature, 1e-5)
    logp = logits.log_softmax(-1)  # (B, V) full distribution, for the returned log-probs
    masked = logp
    if p.top_k and p.top_k < logits.shape[-1]:
        kth = masked.topk(p.top_k, dim=-1).values[:, -1:]
        masked = masked.masked_fill(masked < kth, -math.inf)
    if p.top_p < 1.0:
        sorted_lp, idx = masked.sort(-1, descending=True)
        cum = sorted_lp.exp().cumsum(-1)
        drop = cum - sorted_lp.exp() > p.top_p  # keep the smallest prefix with mass >= top_p
        masked = masked.scatter(-1, idx, sorted_lp.masked_fill(drop, -math.inf))
    u = torch.rand(masked.shape, generator=gen, device=masked.device).clamp_(1e-10, 1.0)
    tok = (masked - torch.log(-torch.log(u))).argmax(-1)  # Gumbel-max: exact categorical sample
    return tok, logp.gather(-1, tok[:, None])[:, 0]


_EOS, _STOP, _LENGTH = 1, 2, 3
_REASONS = ("length", "eos", "stop", "length")  # by code; 0 = still running (retired at the end: "length")


class _Cache:
    """KV buffers for one generate call.

    Shared mode (n > 1): prompts in the prefix cache kp/vp (L, G, Hkv, Tp, D), generated
    tokens in the suffix cache ks/vs (L, G·n, Hkv, Ts, D). Flat mode (n == 1): there is
    nothing to share, so each sequence's prompt and continuation sit together in ks/vs
    (L, G, Hkv, Tp + Ts, D) and attention is one fused call.
    """

    def __init__(self, cfg, groups: int, n: int, tp: int, ts: int, device, dtype):
        L, kv, hd = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
        self.flat = n == 1
        self.kp = torch.zeros(L, 0 if self.flat else groups, kv, tp, hd, device=device, dtype=dtype)
        self.vp = torch.zeros_like(self.kp)
        # keys and values in one tensor, so one index_put_ writes a step's K and V of every layer
        self.kv = torch.zeros(L, 2, groups * n, kv, tp + ts if self.flat else ts, hd, device=device, dtype=dtype)
        self.ks, self.vs = self.kv[:, 0], self.kv[:, 1]
        self.rope = None  # cos/sin tables of the compiled step or of the native loop
        self.rows = self.noise = self.no_noise = self.temp = self.kernel = None  # its per-call constants
        self.prefix_bytes = 2 * self.kp.numel() * self.kp.element_size()
        self.bytes = self.prefix_bytes + 2 * self.ks.numel() * self.ks.element_size()


class Engine:
    """Generation for a `Transformer` and its tokenizer. See the module docstring."""

    def __init__(self, model: Transformer, tokenizer, max_batch: int = 64, compile: bool = False):
        self.model = model.eval()
        self.tok = tokenizer
        self.cfg = model.config
        self.max_batch = max_batch
        self.compile = compile  # n == 1 decode steps through `engine.compiled` (torch.compile)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    # -- fused weights ------------------------------------------------------------
    def _fused(self) -> list[tuple]:
        """Per layer: (ln1, Wqkv, bqkv, Wo, ln2, Wgate_up, Wdown), rebuilt when weights change.

        Fusing q/k/v and gate/up into one matrix each halves the matmul launches per step.
        The q and k rows of each head are permuted from the rotate-half layout to
        interleaved pairs, so RoPE becomes one complex multiply; q·k is unchanged because
        both sides get the same permutation (the cache holds permuted keys, read only here).
        Parameters' version counters tell when an optimizer step changed them in place.
        """
        if getattr(self, "_params", None) is None:
            self._params = list(self.model.parameters())  # walking the module tree every step cost half as much as its GEMMs
        version = sum(p._version for p in self._params)
        if getattr(self, "_fused_version", None) != version:
            D = self.cfg.head_dim
            perm = torch.arange(D, device=self.device).view(2, D // 2).t().reshape(-1)  # [0, D/2, 1, D/2+1, ...]

            def interleave(w: torch.Tensor) -> torch.Tensor:  # rows (heads·D, ...) -> pairs per head
                return w.unflatten(0, (-1, D))[:, perm].flatten(0, 1)

            layers = []
            for b in self.model.model.layers:
                a = b.self_attn
                wqkv = torch.cat([interleave(a.q_proj.weight), interleave(a.k_proj.weight), a.v_proj.weight]).detach()
                bqkv = (torch.cat([interleave(a.q_proj.bias), interleave(a.k_proj.bias), a.v_proj.bias]).detach()
                        if a.q_proj.bias is not None else None)
                wgu = torch.cat([b.mlp.gate_proj.weight, b.mlp.up_proj.weight]).detach()
                layers.append((b.input_layernorm, wqkv, bqkv, a.o_proj.weight.detach(), b.post_attention_layernorm, wgu,
                               b.mlp.down_proj.weight.detach()))
            self._fused_layers, self._fused_version = layers, version
        return self._fused_layers

    def _rope(self, positions: torch.Tensor) -> torch.Tensor:
        """Complex rotations e^{i·pos·freq}, (*positions.shape, D/2)."""
        angles = positions.float()[..., None] * self.model.inv_freq
        return torch.polar(torch.ones_like(angles), angles)

    @staticmethod
    def _norm(x: torch.Tensor, ln) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused kernel; same maths as RMSNorm.forward
            return F.rms_norm(x, (x.shape[-1],), ln.weight, ln.eps)
        return ln(x)

    def _qkv(self, h: torch.Tensor, wqkv: torch.Tensor, bqkv, rot: torch.Tensor):
        """h (..., d) -> rotated q (..., H, D), k (..., Hkv, D), v (..., Hkv, D); rot (..., 1, D/2)."""
        cfg = self.cfg
        H, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        qkv = F.linear(h, wqkv, bqkv).unflatten(-1, (H + 2 * Hkv, D))
        qk = torch.view_as_complex(qkv[..., : H + Hkv, :].float().unflatten(-1, (D // 2, 2)))  # one rotation for q and k
        qk = torch.view_as_real(qk * rot).flatten(-2).to(h.dtype)
        return qk[..., :H, :], qk[..., H:, :], qkv[..., H + Hkv:, :]

    @staticmethod
    def _mlp(x: torch.Tensor, ln2, wgu: torch.Tensor, wdown: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(Engine._norm(x, ln2), wgu).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, wdown)

    # -- the two forward passes --------------------------------------------------
    @torch.inference_mode()
    def _prefill(self, cache: _Cache, groups: list[int], ids: list[list[int]]) -> torch.Tensor:
        """Run prompts `ids` into the cache at `groups`; logits at each last token (k, V)."""
        m, dev = self.model, self.device
        k_, T = len(ids), max(len(x) for x in ids)
        batch = torch.full((k_, T), self.tok.pad_id, dtype=torch.long)
        for i, x in enumerate(ids):
            batch[i, : len(x)] = torch.tensor(x)
        batch = batch.to(dev)
        gidx = torch.tensor(groups, device=dev)
        kc, vc = (cache.ks, cache.vs) if cache.flat else (cache.kp, cache.vp)
        x = m.model.embed_tokens(batch)  # (k, T, d)
        rot = self._rope(torch.arange(T, device=dev))[:, None, :]  # (T, 1, D/2): broadcast over heads
        gqa = self.cfg.num_key_value_heads != self.cfg.num_attention_heads
        for li, (ln1, wqkv, bqkv, wo, ln2, wgu, wdown) in enumerate(self._fused()):
            q, k, v = self._qkv(self._norm(x, ln1), wqkv, bqkv, rot)  # (k, T, H|Hkv, D)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            kc[li, gidx, :, :T] = k
            vc[li, gidx, :, :T] = v
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)  # (k, H, T, D)
            x = x + F.linear(y.transpose(1, 2).reshape(k_, T, -1), wo)
            x = self._mlp(x, ln2, wgu, wdown)
        last = torch.tensor([len(s) - 1 for s in ids], device=dev)
        return m.lm_head(self._norm(x[torch.arange(k_, device=dev), last], m.model.norm))

    @torch.inference_mode()
    def _decode(self, cache: _Cache, G: int, n: int, tokens: torch.Tensor, plen: torch.Tensor, slen: torch.Tensor, tcur: int) -> torch.Tensor:
        """One decode step for the first G groups (S = G·n samples); logits (S, V).

        tokens (S,) the last sampled ids; plen (G,) prompt lengths; slen (S,) tokens
        generated so far. The new token's K/V go at suffix position slen (shared mode) or
        at plen + slen (flat mode); `tcur` bounds the positions attended to.
        """
        m, cfg = self.model, self.cfg
        S, H, Hkv, D = G * n, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        rep = H // Hkv
        dev = tokens.device
        x = m.model.embed_tokens(tokens)  # (S, d)
        pos = (plen.repeat_interleave(n) if n > 1 else plen) + slen  # (S,)
        rot = self._rope(pos)[:, None, :]  # (S, 1, D/2): broadcast over heads
        wpos = (pos if cache.flat else slen).clamp(max=cache.ks.shape[3] - 1)  # finished samples keep stepping
        T = cache.ks.shape[3]
        slots = ((torch.arange(S, device=dev)[:, None] * Hkv + torch.arange(Hkv, device=dev)[None, :]) * T + wpos[:, None]).reshape(-1)
        scale = 1.0 / math.sqrt(D)
        attend = decode_attention() if dev.type == "cpu" and x.dtype == torch.float32 else None
        if attend is None:  # masks for the matmul attention
            future = torch.arange(tcur, device=dev)[None, :] > wpos[:, None]  # (S, tcur)
            if not cache.flat:
                pmask = torch.arange(cache.kp.shape[3], device=dev)[None, :] >= plen[:, None]  # (G, Tp) padding
        for li, (ln1, wqkv, bqkv, wo, ln2, wgu, wdown) in enumerate(self._fused()):
            q, k, v = self._qkv(self._norm(x, ln1), wqkv, bqkv, rot)  # (S, H|Hkv, D)
            ks, vs = cache.ks[li], cache.vs[li]
            ks.view(-1, D).index_copy_(0, slots, k.reshape(-1, D))  # row (s, h, wpos[s]) of the flattened cache
            vs.view(-1, D).index_copy_(0, slots, v.reshape(-1, D))
            if attend is not None:  # the new token is in the cache at wpos and passed again as itself
                y = attend(q, cache.kp[li, :G], cache.vp[li, :G], plen, ks[:S], vs[:S], wpos, k, v, scale)
            elif cache.flat:
                # one query per sequence: two batched matmuls beat SDPA here (no GQA copy, no q-tiling)
                qs = q.view(S, Hkv, rep, D)
                sc = (qs @ ks[:S, :, :tcur].transpose(-1, -2)).float() * scale  # (S, Hkv, rep, tcur)
                sc.masked_fill_(future[:, None, None, :], -math.inf)
                y = sc.softmax(-1).to(q.dtype) @ vs[:S, :, :tcur]  # (S, Hkv, rep, D)
            else:
                y = self._shared_attention(q, cache, li, G, n, rep, scale, pmask, future, tcur)
            x = x + F.linear(y.reshape(S, H * D).to(x.dtype), wo)
            x = self._mlp(x, ln2, wgu, wdown)
        return m.lm_head(self._norm(x, m.model.norm))

    @torch.inference_mode()
    def _decode_compiled(self, cache: _Cache, tokens: torch.Tensor, plen: torch.Tensor, slen: torch.Tensor, tcur: int,
                         p: SamplingParams, gen: torch.Generator, live: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One flat-mode decode step of every slot through `engine.compiled`: sampled ids and log-probs (G,).

        Slots from `live` on are empty: they are computed (the graph's shapes are fixed) and ignored.

        Attention reads the cache up to `tcur` rounded up to 16 (the compiled graph takes
        any length). Top-k/top-p sampling happens outside the graph, on its logits.
        """
        m, cfg, dev = self.model, self.cfg, self.device
        L, _, G, Hkv, T, D = cache.kv.shape
        V = cfg.vocab_size
        if cache.rope is None:  # per-call constants: RoPE tables, cache row offsets, greedy noise
            angles = torch.arange(T, device=dev).float()[:, None] * m.inv_freq
            cache.rope = (angles.cos(), angles.sin())
            cache.rows = (torch.arange(L * 2 * G * Hkv, device=dev) * T).view(L, 2, G, Hkv)
            cache.no_noise = torch.full((G, V), math.exp(-1.0), device=dev)
            cache.noise = torch.empty(G, V, device=dev)
        layers = self._fused()
        if getattr(self, "_step_weights_version", None) != self._fused_version:
            w = [(ln1.weight.detach(), wqkv, bqkv, wo, ln2.weight.detach(), wgu, wdown) for ln1, wqkv, bqkv, wo, ln2, wgu, wdown in layers]
            self._step_weights = (m.model.embed_tokens.weight.detach(), w, m.model.norm.weight.detach(), m.lm_head.weight.detach())
            self._step_weights_version = self._fused_version
        embed, w, norm_w, lm_head = self._step_weights
        pos = (plen + slen).clamp(max=T - 1)  # finished slots keep stepping harmlessly
        truncated = (p.top_k and p.top_k < V) or p.top_p < 1.0
        if cache.temp is None:  # constant for the call
            cache.temp = torch.tensor(1.0 if p.greedy or truncated else max(p.temperature, 1e-5), device=dev)
            cache.kernel = dev.type == "cpu" and embed.dtype == torch.float32 and decode_attention() is not None
        temp, kernel = cache.temp, cache.kernel
        if p.greedy or truncated:
            uniform = cache.no_noise
        else:  # the live slots draw exactly what `sample_tokens` would, so both paths sample alike
            uniform = cache.noise
            uniform[:live].uniform_(generator=gen)
        tb = min(T, -(-tcur // 16) * 16)
        tok, lp, logits, new = CompiledDecode.step(tokens, pos, cache.kv[..., :tb, :], *cache.rope, embed, w, norm_w, lm_head,
                                                   (cfg.num_attention_heads, Hkv), cfg.rms_norm_eps, uniform, temp, kernel)
        rows = (cache.rows + pos[None, None, :, None]).view(-1)  # row (l, k|v, g, h, pos[g]) of the flat cache
        cache.kv.view(-1, D).index_copy_(0, rows, new.reshape(-1, D))
        if truncated:
            return sample_tokens(logits[:live], p, gen)
        return tok, lp

    def _native_weights(self) -> list[torch.Tensor]:
        """The fused weights as `scalinglab::decode_steps` takes them: 7 tensors per layer (no bias: empty)."""
        layers = self._fused()
        if getattr(self, "_native_version", None) != self._fused_version:
            none = torch.empty(0, device=self.device)
            self._native = [t.contiguous() for ln1, wqkv, bqkv, wo, ln2, wgu, wdown in layers  # the C++ loop reads raw rows
                            for t in (ln1.weight.detach(), wqkv, none if bqkv is None else bqkv, wo, ln2.weight.detach(), wgu, wdown)]
            self._native_version = self._fused_version
        return self._native

    @torch.inference_mode()
    def _native_steps(self, cache: _Cache, n: int, S: int, tokens: torch.Tensor, plen: torch.Tensor, slen: torch.Tensor,
                      record: list[torch.Tensor], budget: int, p: SamplingParams, gen: torch.Generator, eos: int | None,
                      max_steps: int) -> int:
        """Decode steps of the first S slots in C++ until a group finishes or `max_steps`; returns the steps taken.

        tokens and slen advance in place; each live slot's tokens and log-probs go into
        `record` = (buf_tok, buf_lp, ntok, done, reason), the scheduler's arrays, where a slot
        also finishes (EOS, or `budget` tokens). Samples as `sample_tokens` does.
        """
        m = self.model
        if cache.rope is None:  # cos/sin (P, D/2, 2) of every position a slot can reach
            P = (0 if cache.flat else cache.kp.shape[3]) + cache.kv.shape[4] + 1
            angles = torch.arange(P, device=self.device).float()[:, None] * m.inv_freq
            cache.rope = torch.stack([angles.cos(), angles.sin()], -1)
        embed, norm_w, lm_head = (t.detach().contiguous() for t in (m.model.embed_tokens.weight, m.model.norm.weight, m.lm_head.weight))
        return decode_steps()(embed, self._native_weights(), norm_w, lm_head, self.cfg.num_attention_heads, self.cfg.rms_norm_eps,
                              cache.rope, cache.kp, cache.vp, plen, cache.kv, cache.flat, n, S, tokens, slen, *record, budget,
                              p.temperature, p.greedy, p.top_k, p.top_p, -1 if eos is None else eos, max_steps, gen)

    @staticmethod
    def _shared_attention(q, cache: _Cache, li: int, G: int, n: int, rep: int, scale: float, pmask, future, tcur: int) -> torch.Tensor:
        """Attention over a shared prompt prefix and each sample's own suffix, merged by LSE."""
        S, H, D = q.shape
        Hkv = H // rep
        dt = q.dtype
        # prefix: the n·rep queries of a group against its prompt, as one matrix product
        qg = q.view(G, n, Hkv, rep, D).transpose(1, 2).reshape(G, Hkv, n * rep, D)
        sp = (qg @ cache.kp[li, :G].transpose(-1, -2)).float() * scale  # (G, Hkv, n·rep, Tp)
        sp.masked_fill_(pmask[:, None, None, :], -math.inf)
        mp = sp.amax(-1, keepdim=True)
        ep = (sp - mp).exp()
        op = ep.to(dt) @ cache.vp[li, :G]  # (G, Hkv, n·rep, D)

        def per_sample(t):  # (G, Hkv, n·rep, x) -> (S, Hkv, rep, x)
            return t.view(G, Hkv, n, rep, -1).transpose(1, 2).reshape(S, Hkv, rep, -1)

        op, zp, mp = per_sample(op).float(), per_sample(ep.sum(-1, keepdim=True)), per_sample(mp)
        # suffix: each sample against its own generated tokens
        qs = q.view(S, Hkv, rep, D)
        ss = (qs @ cache.ks[li, :S, :, :tcur].transpose(-1, -2)).float() * scale  # (S, Hkv, rep, tcur)
        ss.masked_fill_(future[:, None, None, :], -math.inf)
        ms = ss.amax(-1, keepdim=True)
        es = (ss - ms).exp()
        os_ = (es.to(dt) @ cache.vs[li, :S, :, :tcur]).float()  # (S, Hkv, rep, D)
        zs = es.sum(-1, keepdim=True)
        # merge the two softmax pieces by their maxima (log-sum-exp)
        mx = torch.maximum(mp, ms)
        a, b = (mp - mx).exp(), (ms - mx).exp()
        return (op * a + os_ * b) / (zp * a + zs * b)  # (S, Hkv, rep, D)

    # -- the scheduler -----------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
        ids = [list(p) if not isinstance(p, str) else self.tok.encode(p) for p in prompts]
        for i, x in enumerate(ids):
            if not x:
                raise UserError(f"prompt {i} is empty")
        return ids

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams = SamplingParams(),
                 progress: Callable[..., None] | None = None) -> GenerationResult:
        """Complete every prompt `params.n` times. Prompts are strings or token-id lists."""
        if params.n < 1 or params.max_new_tokens < 1:
            raise UserError("n and max_new_tokens must be >= 1")
        t0 = time.perf_counter()
        prompt_ids = self.encode_prompts(prompts)
        n, dev, cfg = params.n, self.device, self.cfg
        G = max(1, min(len(prompt_ids), self.max_batch // n))
        Tp, Ts = max(len(x) for x in prompt_ids), params.max_new_tokens
        compiled, cache_ts = self.compile and n == 1, Ts
        if compiled:  # few distinct shapes, so few compilations: batch to a power of two, length to 64s
            G = min(1 << (G - 1).bit_length(), max(1, self.max_batch))
            cache_ts = -(-(Tp + Ts) // 64) * 64 - Tp
        dtype = self.model.lm_head.weight.dtype
        native = (not compiled and dev.type == "cpu" and dtype == torch.float32 and cfg.head_dim <= 256
                  and decode_steps() is not None)  # the whole loop in C++ (engine.kernels)
        cache = _Cache(cfg, G, n, Tp, cache_ts, dev, dtype)
        gen = torch.Generator(device=dev).manual_seed(params.seed)
        stop_strs = tuple(params.stop)
        eos = None if params.ignore_eos else self.tok.eos_id

        result = GenerationResult(generations=[Generation(prompt=p if isinstance(p, str) else self.tok.decode(p), prompt_ids=ids, completions=[])
                                               for p, ids in zip(prompts, prompt_ids)])
        result.decode_path = "native" if native else "compiled" if compiled else "pytorch"
        # per-slot output buffers: a step records its tokens with a few array operations
        buf_tok = np.zeros((G * n, Ts), dtype=np.int64)
        buf_lp = np.zeros((G * n, Ts), dtype=np.float64)
        ntok = np.zeros(G * n, dtype=np.int64)  # tokens recorded per slot
        reason = np.zeros(G * n, dtype=np.int8)  # index into REASONS once the slot finishes

        queue = deque(range(len(prompt_ids)))
        group_prompt = [-1] * G  # prompt index held by each group slot
        active_groups = 0  # groups [0, active_groups) are live
        plen = torch.zeros(G, dtype=torch.long, device=dev)
        slen = torch.zeros(G * n, dtype=torch.long, device=dev)
        slen_host = np.zeros(G * n, dtype=np.int64)
        plen_host = np.zeros(G, dtype=np.int64)  # used in flat mode (n == 1), where slot == group
        tokens = torch.zeros(G * n, dtype=torch.long, device=dev)
        done_host = np.ones(G * n, dtype=bool)
        finished_prompts = 0
        if native:  # the C++ loop records into the same arrays
            shared = [torch.from_numpy(a) for a in (buf_tok, buf_lp, ntok, done_host, reason)]

        def record(slots: np.ndarray, toks: np.ndarray, lps: np.ndarray) -> None:
            """Append the sampled tokens of live `slots` and mark the ones that finish."""
            at = ntok[slots]
            buf_tok[slots, at], buf_lp[slots, at] = toks, lps
            ntok[slots] = at + 1
            why = np.where(ntok[slots] >= Ts, _LENGTH, 0).astype(np.int8)
            if eos is not None:
                why[toks == eos] = _EOS
            ended = why > 0
            reason[slots[ended]] = why[ended]
            done_host[slots[ended]] = True
            check_stops(slots)

        def check_stops(slots: np.ndarray) -> None:
            """Finish the `slots` (just given a token) whose text now ends with a stop string."""
            for s_ in slots[reason[slots] != _EOS] if stop_strs else ():
                tail = self.tok.decode(buf_tok[s_, max(0, ntok[s_] - 32):ntok[s_]].tolist())
                if any(tail.endswith(st) or st in tail[-(len(st) + 8):] for st in stop_strs):
                    reason[s_], done_host[s_] = _STOP, True

        def admit(free: list[int]) -> None:
            nonlocal active_groups
            take = [queue.popleft() for _ in range(min(len(free), len(queue)))]
            if not take:
                return
            groups = free[: len(take)]
            logits = self._prefill(cache, groups, [prompt_ids[p] for p in take])  # (k, V)
            for g, p in zip(groups, take):
                group_prompt[g] = p
                plen[g] = len(prompt_ids[p])
                plen_host[g] = len(prompt_ids[p])
                result.prompt_tokens += len(prompt_ids[p])
                result.prompt_flops += sequence_flops(cfg, 0, len(prompt_ids[p]))
            result.prefills += len(take)
            gi = torch.tensor(groups, device=dev)
            tok, lp = sample_tokens(logits.repeat_interleave(n, 0), params, gen)  # n samples per prompt
            slots = (gi[:, None] * n + torch.arange(n, device=dev)[None, :]).reshape(-1)
            tokens[slots] = tok
            slen[slots] = 0
            slots_h = slots.cpu().numpy()
            slen_host[slots_h] = 0
            done_host[slots_h] = False
            reason[slots_h], ntok[slots_h] = 0, 0
            record(slots_h, tok.cpu().numpy(), lp.double().cpu().numpy())
            active_groups = max(active_groups, max(groups) + 1)

        def retire(g: int) -> None:
            """Group g is finished: save its outputs and free the slot."""
            nonlocal finished_prompts
            p = group_prompt[g]
            gen_out = result.generations[p]
            for j in range(n):
                s_ = g * n + j
                ids, why = buf_tok[s_, :ntok[s_]].tolist(), _REASONS[reason[s_]]
                text_ids = ids[:-1] if why == "eos" else ids
                gen_out.completions.append(Completion(self.tok.decode(text_ids), ids, buf_lp[s_, :ntok[s_]].tolist(), why))
                result.generated_tokens += len(ids)
                result.generated_flops += sequence_flops(cfg, len(prompt_ids[p]), len(ids))
            group_prompt[g] = -1
            finished_prompts += 1

        def move(src: int, dst: int) -> None:
            """Move live group src into free slot dst (keeps live groups contiguous)."""
            if not cache.flat:
                cache.kp[:, dst] = cache.kp[:, src]
                cache.vp[:, dst] = cache.vp[:, src]
            a, b = slice(src * n, src * n + n), slice(dst * n, dst * n + n)
            cache.ks[:, b] = cache.ks[:, a]
            cache.vs[:, b] = cache.vs[:, a]
            plen[dst], plen_host[dst] = plen[src], plen_host[src]
            slen[b], tokens[b] = slen[a], tokens[a]
            slen_host[b], done_host[b] = slen_host[a], done_host[a]
            buf_tok[b], buf_lp[b], ntok[b], reason[b] = buf_tok[a], buf_lp[a], ntok[a], reason[a]
            done_host[a] = True
            group_prompt[dst], group_prompt[src] = group_prompt[src], -1

        admit(list(range(G)))
        while active_groups > 0:
            # retire finished groups; refill them from the queue or compact
            for g in np.nonzero(done_host[:active_groups * n].reshape(-1, n).all(1))[0]:
                if group_prompt[g] >= 0:
                    retire(int(g))
            free = [g for g in range(active_groups) if group_prompt[g] < 0]
            if free and queue:
                admit(free)
                free = [g for g in range(active_groups) if group_prompt[g] < 0]
            for g in sorted(free, reverse=True):  # fill holes with the last live group
                last = active_groups - 1
                while last >= 0 and group_prompt[last] < 0:
                    last -= 1
                if last > g:
                    move(last, g)
                active_groups = max((i + 1 for i in range(G) if group_prompt[i] >= 0), default=0)
            if active_groups == 0:
                break
            if progress is not None:
                progress(finished_prompts, len(prompt_ids))
            S = active_groups * n
            # the token sampled last step goes in at suffix position slen; attend over slen+1
            live_pos = slen_host[:S][~done_host[:S]] + (plen_host[:S][~done_host[:S]] if cache.flat else 0)
            tcur = int(live_pos.max(initial=0)) + 1
            if native:  # as many steps as no group finishes (one when stop strings need checking)
                live = np.nonzero(~done_host[:S])[0]
                steps = self._native_steps(cache, n, S, tokens, plen, slen, shared, Ts, params, gen, eos, 1 if stop_strs else Ts)
                result.steps += steps
                slen_host[:S] += steps
                check_stops(live)
                continue
            if compiled:
                tok, lp = self._decode_compiled(cache, tokens, plen, slen, tcur, params, gen, S)
                tok, lp = tok[:S], lp[:S]
            else:
                logits = self._decode(cache, active_groups, n, tokens[:S], plen[:active_groups], slen[:S], tcur)
                tok, lp = sample_tokens(logits, params, gen)
            result.steps += 1
            slen[:S] += 1
            slen_host[:S] += 1
            tokens[:S] = tok
            live = np.nonzero(~done_host[:S])[0]
            record(live, tok.cpu().numpy()[live], lp.double().cpu().numpy()[live])
        for g in range(G):
            if group_prompt[g] >= 0:
                retire(g)
        if progress is not None:
            progress(finished_prompts, len(prompt_ids))
        result.seconds = time.perf_counter() - t0
        result.kv_bytes, result.prefix_kv_bytes = cache.bytes, cache.prefix_bytes
        return result
