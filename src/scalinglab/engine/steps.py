"""The model side of the engine: the KV cache layout, prefill and the three decode steps.

`KVCache` holds one generate call's keys/values (flat or shared-prefix layout, see
engine.py). `ModelSteps`, which `Engine` extends, turns the model's weights into fused
matrices and runs them: `prefill` (a batch of prompts: in C++, `scalinglab::prefill_rows`,
beside the native decode loop; else eager PyTorch), and decode steps in one of three ways:
- `decode_native`: many steps in C++ (`scalinglab::decode_steps`; CPU; float32 activations and
  K/V, matrices packed by `_packed` in float32 or bf16, see `matmul_kind`), the default where it can be built
  (`native_ok`);
- `decode` + `sample_tokens`: one eager PyTorch step (bf16, CUDA, no C++ compiler), with the C++
  decode-attention kernel where it exists, else matmuls;
- `decode_compiled`: one static-shape `torch.compile` step of `engine.compiled` (n = 1).
All three sample the same tokens from the same generator draws (tests/test_engine.py).
`engine.measure` times these public steps; `Engine.generate` picks one per call.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from scalinglab.engine import kernels
from scalinglab.engine.compiled import CompiledDecode
from scalinglab.engine.kernels import decode_attention, decode_steps, pack_rows, prefill_rows
from scalinglab.engine.sampling import SamplingParams, sample_tokens
from scalinglab.errors import UserError
from scalinglab.model.transformer import Transformer, rope_inv_freq


def pack_weight(w: torch.Tensor, dtype: torch.dtype = torch.float32, pairs: bool = False) -> torch.Tensor:
    """W (N, K) -> (ceil(N/16), K, 16) in `dtype`: panels of 16 output columns, zero-padded (csrc/gemm.cpp's layout).
    With `pairs` (bf16, K a multiple of 32): (ceil(N/16), K/2, 32), each line the 16 columns' values at k and k+1
    interleaved, the layout bf16 dot products multiply (csrc/gemm.h)."""
    N, K = w.shape
    P = -(-N // 16)
    w = F.pad(w.detach().to(dtype), (0, 0, 0, P * 16 - N))
    if pairs:
        return w.view(P, 16, K // 2, 2).permute(0, 2, 1, 3).reshape(P, K // 2, 32).contiguous()
    return w.view(P, 16, K).transpose(1, 2).contiguous()


class KVCache:
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
        # cos/sin (P, D/2, 2) of every position a slot can reach: made once per call by `ModelSteps._rope_table`
        self.rope: torch.Tensor | None = None
        self.rows = self.noise = self.no_noise = self.temp = self.kernel = (
            None  # the compiled step's per-call constants
        )
        self.prefix_bytes = 2 * self.kp.numel() * self.kp.element_size()
        self.bytes = self.prefix_bytes + 2 * self.ks.numel() * self.ks.element_size()

    def move_group(self, src: int, dst: int, n: int) -> None:
        """Copy group src's keys/values (its prompt's and its n samples') into group dst."""
        if not self.flat:
            self.kp[:, dst] = self.kp[:, src]
            self.vp[:, dst] = self.vp[:, src]
        a, b = slice(src * n, src * n + n), slice(dst * n, dst * n + n)
        self.ks[:, b] = self.ks[:, a]
        self.vs[:, b] = self.vs[:, a]


DTYPES = ("auto", "fp32", "bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_dot_products() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 weights pay off."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def bf16_products() -> bool:
    """Whether the native path multiplies bf16 matrices by activations rounded to bf16 (AVX512-BF16 dot
    products, AMX tiles from 2 rows on: csrc/gemm.cpp), where this CPU and build have them. Otherwise bf16
    matrices are widened to float32 in registers, which is exact: the float32 path's results on the rounded
    matrices. $SCALINGLAB_BF16_PRODUCTS=0 asks for the widening where both exist."""
    return os.environ.get("SCALINGLAB_BF16_PRODUCTS", "1") != "0" and kernels.bf16_products() > 0


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weight dtype a command decodes in: `fp32`, `bf16`, or `auto` = bf16 on CUDA, float32 on
    every CPU. A CPU stays float32 unless asked, even where bf16 is twice as fast: float32 samples the
    same tokens for a seed whatever the batch size, thread count and vector level, and is what
    `transformers` and the tests compare against; bf16 rounding changes greedy tokens at near ties, and
    with bf16 dot products a lone row's sums differ from a batch's (docs/engine.md). `--dtype bf16`
    halves the bytes a decode step reads (batch 1 and 8 gain everywhere); large batches gain only where
    the CPU multiplies bf16 natively (`cpu_bf16_dot_products`: 2.1x on SmolLM2 at batch 64 with AMX)."""
    if name not in DTYPES:
        raise UserError(f"--dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if name == "bf16" else torch.float32


def decode_dtypes(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(dtype to load the model in, `weight_dtype` for the Engine) for `--dtype name`: on CUDA the
    model itself is loaded in that dtype; on a CPU it stays float32 (prefill, training) and only the
    decode loop's packed matrices take it."""
    dt = pick_dtype(name, device)
    return (dt, None) if device.type == "cuda" else (torch.float32, dt)


class ModelSteps:
    """Fused weights, prefill and decode steps of a `Transformer` (see the module docstring)."""

    def __init__(self, model: Transformer, weight_dtype: torch.dtype | None = None):
        self.model = model.eval()
        self.cfg = model.config
        # the native path's packed matrices: the model's dtype (bf16 models: bf16), or bf16 for an fp32 model when asked
        self.weight_dtype = weight_dtype

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    def _weights_version_now(self) -> int:
        """The sum of the parameters' version counters: it changes when an optimizer step updates them in place."""
        if getattr(self, "_params", None) is None:
            self._params = list(
                self.model.parameters()
            )  # walking the module tree every step cost half as much as its GEMMs
        return sum(p._version for p in self._params)

    def _fused(self) -> list[tuple]:
        """Per layer: (ln1, Wqkv, bqkv, Wo, ln2, Wgate_up, Wdown), rebuilt when weights change.

        Fusing q/k/v and gate/up into one matrix each halves the matmul launches per step.
        The q and k rows of each head are permuted from the rotate-half layout to
        interleaved pairs, so RoPE becomes one complex multiply; q·k is unchanged because
        both sides get the same permutation (the cache holds permuted keys, read only here).
        Parameters' version counters tell when an optimizer step changed them in place.
        """
        version = self._weights_version_now()
        if getattr(self, "_fused_version", None) != version:
            rows = self._qkv_rows().to(self.device)
            layers = []
            for b in self.model.model.layers:
                a = b.self_attn
                wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])[rows].detach()
                bqkv = (
                    torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])[rows].detach()
                    if a.q_proj.bias is not None
                    else None
                )
                wgu = torch.cat([b.mlp.gate_proj.weight, b.mlp.up_proj.weight]).detach()
                layers.append(
                    (
                        b.input_layernorm,
                        wqkv,
                        bqkv,
                        a.o_proj.weight.detach(),
                        b.post_attention_layernorm,
                        wgu,
                        b.mlp.down_proj.weight.detach(),
                    )
                )
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
        qk = torch.view_as_complex(
            qkv[..., : H + Hkv, :].float().unflatten(-1, (D // 2, 2))
        )  # one rotation for q and k
        qk = torch.view_as_real(qk * rot).flatten(-2).to(h.dtype)
        return qk[..., :H, :], qk[..., H:, :], qkv[..., H + Hkv :, :]

    @staticmethod
    def _mlp(x: torch.Tensor, ln2, wgu: torch.Tensor, wdown: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(ModelSteps._norm(x, ln2), wgu).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, wdown)

    # -- the two forward passes --------------------------------------------------
    @torch.inference_mode()
    def prefill(self, cache: KVCache, groups: list[int], ids: list[list[int]], native: bool = False) -> torch.Tensor:
        """Run prompts `ids` into the cache at `groups`; logits at each last token (k, V).

        native: through `scalinglab::prefill_rows` (the prompts packed without padding, the same
        layer code as the native decode loop), else eager PyTorch with SDPA.
        """
        m, dev = self.model, self.device
        if native:
            kc, vc = (cache.ks, cache.vs) if cache.flat else (cache.kp, cache.vp)
            toks = torch.tensor([t for x in ids for t in x])
            crow = torch.tensor([g for g, x in zip(groups, ids) for _ in x])
            pos = torch.tensor([i for x in ids for i in range(len(x))])
            last = torch.tensor([len(x) for x in ids]).cumsum(0) - 1  # each prompt's final row
            embed, norm_w, lm_head, flat = self._packed()
            return prefill_rows()(
                embed,
                flat,
                norm_w,
                lm_head,
                self.cfg.num_attention_heads,
                self.cfg.rms_norm_eps,
                self._rope_table(cache),
                kc,
                vc,
                toks,
                crow,
                pos,
                last,
            )
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
    def decode(
        self, cache: KVCache, G: int, n: int, tokens: torch.Tensor, plen: torch.Tensor, slen: torch.Tensor, tcur: int
    ) -> torch.Tensor:
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
        slots = (
            (torch.arange(S, device=dev)[:, None] * Hkv + torch.arange(Hkv, device=dev)[None, :]) * T + wpos[:, None]
        ).reshape(-1)
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
    def decode_compiled(
        self,
        cache: KVCache,
        tokens: torch.Tensor,
        plen: torch.Tensor,
        slen: torch.Tensor,
        tcur: int,
        p: SamplingParams,
        gen: torch.Generator,
        live: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One flat-mode decode step of every slot through `engine.compiled`: sampled ids and log-probs (G,).

        Slots from `live` on are empty: they are computed (the graph's shapes are fixed) and ignored.

        Attention reads the cache up to `tcur` rounded up to 16 (the compiled graph takes
        any length). Top-k/top-p sampling happens outside the graph, on its logits.
        """
        cfg, dev = self.cfg, self.device
        L, _, G, Hkv, T, D = cache.kv.shape
        V = cfg.vocab_size
        if cache.rows is None:  # per-call constants: cache row offsets, greedy noise
            cache.rows = (torch.arange(L * 2 * G * Hkv, device=dev) * T).view(L, 2, G, Hkv)
            cache.no_noise = torch.full((G, V), math.exp(-1.0), device=dev)
            cache.noise = torch.empty(G, V, device=dev)
        (embed, norm_w, lm_head), w, _ = self._weights()
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
        tok, lp, logits, new = CompiledDecode.step(
            tokens,
            pos,
            cache.kv[..., :tb, :],
            *self._rope_table(cache, exact=False).unbind(-1),  # cos, sin (P, D/2)
            embed,
            w,
            norm_w,
            lm_head,
            (cfg.num_attention_heads, Hkv),
            cfg.rms_norm_eps,
            uniform,
            temp,
            kernel,
        )
        rows = (cache.rows + pos[None, None, :, None]).view(-1)  # row (l, k|v, g, h, pos[g]) of the flat cache
        cache.kv.view(-1, D).index_copy_(0, rows, new.reshape(-1, D))
        if truncated:
            return sample_tokens(logits[:live], p, gen)
        return tok, lp

    def native_ok(self) -> bool:
        """Whether the C++ operators serve this model: CPU, float32 or bfloat16 weights, head_dim <= 256, and the extension built."""
        return (
            self.device.type == "cpu"
            and self.model.lm_head.weight.dtype in (torch.float32, torch.bfloat16)
            and self.cfg.head_dim <= 256
            and decode_steps() is not None
        )

    def decode_dtype(self) -> torch.dtype:
        """The dtype of the native path's matrices (what `--dtype` chose; commands report it): `weight_dtype`, else bf16 for a bf16 model, else float32."""
        if self.weight_dtype is not None:
            return self.weight_dtype
        return torch.bfloat16 if self.model.lm_head.weight.dtype == torch.bfloat16 else torch.float32

    def matmul_kind(self) -> str:
        """What multiplies the native path's matrices: "fp32", "bf16-widened" (exact, float32 arithmetic),
        "bf16-avx512" or "bf16-amx" (activations rounded to bf16, see `bf16_products`)."""
        if self.decode_dtype() != torch.bfloat16:
            return "fp32"
        if not bf16_products():
            return "bf16-widened"
        return "bf16-amx" if kernels.bf16_products() >= 2 else "bf16-avx512"

    def _packed(self) -> tuple:
        """(embed, final norm, packed LM head, flat per-layer list): what the C++ operators take, rebuilt when weights change.

        Matrices are packed for csrc/gemm.cpp in `decode_dtype()` (bf16: in the pairs layout where
        `bf16_products`, for every matrix whose K is a multiple of 32), straight from the model's own
        weights by `scalinglab::pack_rows` (the fusions and the q/k permutation of `_fused` become
        its row index, so no fused copy is made); norms and biases are float32, and so is the
        embedding (a row lookup; its values rounded to bf16 in bf16). 7 tensors per layer (ln1,
        Wqkv, bqkv or empty, Wo, ln2, Wgate_up, Wdown).
        """
        wdt, key = self.decode_dtype(), self._weights_version_now()
        pairs = wdt == torch.bfloat16 and bf16_products()
        if getattr(self, "_packed_key", None) != (key, wdt, pairs):
            self._packed_cache = None  # free the old copy before building the new one
            m, dev, none, pack = self.model, self.device, torch.empty(0, device=self.device), pack_rows()
            qkv_rows = self._qkv_rows()

            def f32(t):
                return t.detach().float().contiguous()

            def pack_m(ws, rows):  # bf16 dot products take matrices whose K is a multiple of 32; others are widened
                return pack(ws, rows, wdt, pairs and ws[0].shape[1] % 32 == 0)

            def packed(*ws):  # the row-concatenation of ws, packed
                ws = [w.detach() for w in ws]
                return pack_m(ws, torch.arange(sum(w.shape[0] for w in ws)))

            flat = []
            for b in m.model.layers:
                a, mlp = b.self_attn, b.mlp
                qkv = [a.q_proj.weight.detach(), a.k_proj.weight.detach(), a.v_proj.weight.detach()]
                bias = (a.q_proj.bias, a.k_proj.bias, a.v_proj.bias)
                flat += [
                    f32(b.input_layernorm.weight),
                    pack_m(qkv, qkv_rows),
                    none if bias[0] is None else f32(torch.cat(bias)[qkv_rows.to(dev)]),
                    packed(a.o_proj.weight),
                    f32(b.post_attention_layernorm.weight),
                    packed(mlp.gate_proj.weight, mlp.up_proj.weight),
                    packed(mlp.down_proj.weight),
                ]
            embed = f32(m.model.embed_tokens.weight.to(wdt))  # bf16: the embedding rows rounded like every matrix
            self._packed_cache = (embed, f32(m.model.norm.weight), packed(m.lm_head.weight), flat)
            self._packed_key = (key, wdt, pairs)
        return self._packed_cache

    def _qkv_rows(self) -> torch.Tensor:
        """Row index into cat(Wq, Wk, Wv) giving the fused Wqkv: each q and k head's rows from the
        rotate-half layout to interleaved pairs (see `_fused`), then v unchanged."""
        cfg = self.cfg
        H, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        perm = torch.arange(D).view(2, D // 2).t().reshape(-1)  # [0, D/2, 1, D/2+1, ...]
        heads = (torch.arange(H + Hkv)[:, None] * D + perm).flatten()
        return torch.cat([heads, torch.arange((H + Hkv) * D, (H + 2 * Hkv) * D)])

    def _weights(self) -> tuple[tuple, list[tuple], list[torch.Tensor]]:
        """The fused weights as plain contiguous tensors, rebuilt with `_fused`: what the compiled step and the C++ operators take.

        (embed, final norm, LM head); per layer (ln1, Wqkv, bqkv | None, Wo, ln2, Wgate_up, Wdown);
        and the same flattened, 7 per layer with an empty tensor for no bias (the C++ operators' `Tensor[]`).
        """
        layers = self._fused()
        if getattr(self, "_weights_version", None) != self._fused_version:
            m, none = self.model, torch.empty(0, device=self.device)
            head = tuple(
                t.detach().contiguous() for t in (m.model.embed_tokens.weight, m.model.norm.weight, m.lm_head.weight)
            )
            per_layer = [
                tuple(
                    None if t is None else t.detach().contiguous()
                    for t in (ln1.weight, wqkv, bqkv, wo, ln2.weight, wgu, wdown)
                )
                for ln1, wqkv, bqkv, wo, ln2, wgu, wdown in layers
            ]
            flat = [none if t is None else t for layer in per_layer for t in layer]
            self._weights_cache, self._weights_version = (head, per_layer, flat), self._fused_version
        return self._weights_cache

    def _rope_table(self, cache: KVCache, exact: bool = True) -> torch.Tensor:
        """cos/sin (P, D/2, 2) of every position a slot of `cache` can reach, made once per call (`cache.rope`).

        exact: frequencies in float32 from the config, as the C++ prefill and loop use them (a bf16
        model's own `inv_freq` buffer is rounded to bf16); else the model's buffer, as the eager
        prefill that fills the compiled step's cache uses it.
        """
        if cache.rope is None:
            P = (0 if cache.flat else cache.kp.shape[3]) + cache.kv.shape[4] + 1
            inv_freq = rope_inv_freq(self.cfg).to(self.device) if exact else self.model.inv_freq
            angles = torch.arange(P, device=self.device).float()[:, None] * inv_freq
            cache.rope = torch.stack([angles.cos(), angles.sin()], -1)
        return cache.rope

    @torch.inference_mode()
    def decode_native(
        self,
        cache: KVCache,
        n: int,
        S: int,
        tokens: torch.Tensor,
        plen: torch.Tensor,
        slen: torch.Tensor,
        record: list[torch.Tensor],
        budget: int,
        p: SamplingParams,
        gen: torch.Generator,
        eos: int | None,
        max_steps: int,
    ) -> int:
        """Decode steps of the first S slots in C++ until a group finishes or `max_steps`; returns the steps taken.

        tokens and slen advance in place; each live slot's tokens and log-probs go into
        `record` = (buf_tok, buf_lp, ntok, done, reason), the scheduler's arrays, where a slot
        also finishes (EOS, or `budget` tokens). Samples as `sample_tokens` does.
        """
        embed, norm_w, lm_head, flat = self._packed()
        return decode_steps()(
            embed,
            flat,
            norm_w,
            lm_head,
            self.cfg.num_attention_heads,
            self.cfg.rms_norm_eps,
            self._rope_table(cache),
            cache.kp,
            cache.vp,
            plen,
            cache.kv,
            cache.flat,
            n,
            S,
            tokens,
            slen,
            *record,
            budget,
            p.temperature,
            p.greedy,
            p.top_k,
            p.top_p,
            -1 if eos is None else eos,
            max_steps,
            gen,
        )

    @staticmethod
    def _shared_attention(
        q, cache: KVCache, li: int, G: int, n: int, rep: int, scale: float, pmask, future, tcur: int
    ) -> torch.Tensor:
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
