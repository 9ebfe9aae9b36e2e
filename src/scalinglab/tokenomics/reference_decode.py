"""A NumPy decode step for a dense GQA `ModelSpec`: the stand-in engine for calibration.

`calibrate(measure_decode=...)` wants the seconds of one decode step of the engine's model at
(batch, context). The real engine is torch code and is injected by its owner; this module gives
a torch-free engine with the same arithmetic (FP32 weights: fused QKV, output projection,
SwiGLU MLP, lm_head; attention of each query over a `context`-token KV cache) so calibration and
its tests run anywhere. Weights are random: only the timing matters. Not for MLA or MoE models.
"""

from __future__ import annotations

import time

import numpy as np

from scalinglab.errors import UserError
from scalinglab.tokenomics.spec import ModelSpec


class NumpyDecoder:
    def __init__(self, model: ModelSpec, seed: int = 0):
        if model.is_mla or model.is_moe:
            raise UserError(f"{model.name}: the NumPy reference decoder covers dense GQA models only")
        rng = np.random.default_rng(seed)
        m = model
        self.m = m
        qkv = (m.heads + 2 * m.kv_heads) * m.head_dim

        def w(*shape):
            return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

        self.layers = [
            (
                w(m.hidden, qkv),
                w(m.heads * m.head_dim, m.hidden),
                w(m.hidden, 2 * m.intermediate),
                w(m.intermediate, m.hidden),
            )
            for _ in range(m.layers)
        ]
        self.head = w(m.hidden, m.vocab)
        self._kv: dict[tuple[int, int], list] = {}

    def _cache(self, batch: int, context: int) -> list:
        key = (batch, context)
        if key not in self._kv:
            self._kv.clear()  # hold one cache at a time
            m = self.m
            shape = (batch, m.kv_heads, context, m.head_dim)
            self._kv[key] = [(np.ones(shape, np.float32), np.ones(shape, np.float32)) for _ in range(m.layers)]
        return self._kv[key]

    def step(self, batch: int, context: int) -> np.ndarray:
        m = self.m
        cache = self._cache(batch, context)
        x = np.ones((batch, m.hidden), dtype=np.float32)
        g = m.heads // m.kv_heads
        for (wqkv, wo, wgu, wd), (k, v) in zip(self.layers, cache):
            qkv = x @ wqkv  # (B, (H + 2 KV) D)
            q = qkv[:, : m.heads * m.head_dim].reshape(batch, m.kv_heads, g, m.head_dim)
            s = np.matmul(q, k.transpose(0, 1, 3, 2)) / np.sqrt(m.head_dim)  # (B, KV, g, C)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = np.matmul(s, v).reshape(batch, m.heads * m.head_dim)  # (B, H D)
            x = x + a @ wo
            gu = x @ wgu
            gate, up = gu[:, : m.intermediate], gu[:, m.intermediate :]
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ wd
        return x @ self.head  # (B, vocab)

    def measure(self, batch: int, context: int, repeats: int = 3) -> float:
        """Best-of-`repeats` seconds of one decode step."""
        self.step(batch, context)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            self.step(batch, context)
            best = min(best, time.perf_counter() - t)
        return best
