"""Measured decode-step time of the engine at a (batch, context): what tokenomics calibrates against.

`engine_measure` hands `tokenomics.calibrate` a `DecodeTimer`: one *sample* per call (the fastest
of a few steps). Calibrate calls it in interleaved rounds over all its points and keeps the
fastest sample of each, so load from other processes, which only ever adds time, drops out (see
tokenomics/calibrate.py). The timer keeps each point's cache between calls (up to a memory cap),
so a sample costs its steps and little else.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import torch

from scalinglab.engine.engine import Engine, SamplingParams
from scalinglab.engine.steps import KVCache


class _Point:
    """What timing decode steps at one (batch, context) needs: a filled cache and the step's inputs."""

    def __init__(self, engine: Engine, batch: int, context: int, slots: int, compiled: bool):
        cfg, dev = engine.cfg, engine.device
        self.native = not compiled and engine.native_ok()  # the step `generate` would take
        self.compiled, self.batch, self.context, self.slots = compiled, batch, context, slots
        dtype = torch.float32 if self.native else engine.model.lm_head.weight.dtype
        self.cache = KVCache(cfg, batch, 1, context, slots + 1, dev, dtype)
        # random keys/values (their values do not change the work done): one block broadcast over
        # layers and sequences, as filling the whole cache with normal_() took longer than the steps it serves
        self.cache.kv.copy_(torch.randn(self.cache.kv.shape[-3:], device=dev))  # (Hkv, T, D) over (L, 2, B)
        self.plen = torch.full((batch,), context, dtype=torch.long, device=dev)
        self.tokens = torch.randint(4, cfg.vocab_size, (batch,), device=dev)
        self.greedy, self.gen = SamplingParams(greedy=True), torch.Generator(device=dev)
        # the scheduler's record arrays; no slot ever finishes (no EOS, budget never reached): reset per run
        self.record = (
            [
                torch.zeros(batch, slots + 1, dtype=torch.long),
                torch.zeros(batch, slots + 1, dtype=torch.float64),
                torch.zeros(batch, dtype=torch.long),
                torch.zeros(batch, dtype=torch.bool),
                torch.zeros(batch, dtype=torch.int8),
            ]
            if self.native
            else None
        )
        self.bytes = self.cache.bytes

    def run(self, engine: Engine, steps: int, warmup: int) -> list[float]:
        """Seconds of each of `steps` decode steps after `warmup` untimed ones (steps + warmup <= slots)."""
        b, dev = self.batch, self.cache.kv.device
        if self.native:
            for r in self.record:
                r.zero_()
        times = []
        for i in range(steps + warmup):
            slen = torch.full((b,), i, dtype=torch.long, device=dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            if self.native:
                engine.decode_native(
                    self.cache,
                    1,
                    b,
                    self.tokens,
                    self.plen,
                    slen,
                    self.record,
                    self.slots + 2,
                    self.greedy,
                    self.gen,
                    None,
                    1,
                )
            elif self.compiled:
                engine.decode_compiled(
                    self.cache, self.tokens, self.plen, slen, self.context + i + 1, self.greedy, self.gen, b
                )
            else:
                engine.decode(self.cache, b, 1, self.tokens, self.plen, slen, self.context + i + 1)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t)
        return times


def decode_step_times(
    engine: Engine, batch: int, context: int, steps: int = 8, warmup: int = 2, compiled: bool = False
) -> list[float]:
    """Seconds of each of `steps` decode steps of `batch` sequences that each hold `context` tokens.

    The cache is filled with random keys/values, so no prefill is timed; each timed call is exactly
    the engine's decode step: the native C++ step where `generate` would use it (CPU, float32), else
    the PyTorch one (`compiled`: the torch.compile step with greedy sampling; its compilation
    happens in the warm-up).
    """
    return _Point(engine, batch, context, steps + warmup, compiled).run(engine, steps, warmup)


def decode_step_seconds(
    engine: Engine, batch: int, context: int, steps: int = 8, warmup: int = 2, compiled: bool = False
) -> float:
    """Median seconds of one decode step (see `decode_step_times`)."""
    times = sorted(decode_step_times(engine, batch, context, steps, warmup, compiled))
    return times[len(times) // 2]


class DecodeTimer:
    """`timer(batch, context) -> seconds`: one sample, the fastest of `steps` decode steps after `warmup`
    (none by default: the first of the steps warms the caches, and the fastest is taken anyway).

    Each point's cache is kept for the next call while the kept caches total at most `keep_bytes`
    (least recently used dropped first), so repeated samples cost their steps, not a cache fill."""

    def __init__(self, engine: Engine, steps: int = 3, warmup: int = 0, keep_bytes: float = 512 * 2**20):
        self.engine, self.steps, self.warmup, self.keep_bytes = engine, steps, warmup, keep_bytes
        self._points: OrderedDict[tuple[int, int], _Point] = OrderedDict()

    def __call__(self, batch: int, context: int) -> float:
        key = (batch, context)
        pt = self._points.pop(key, None) or _Point(self.engine, batch, context, self.steps + self.warmup, False)
        t = min(pt.run(self.engine, self.steps, self.warmup))
        self._points[key] = pt
        while sum(p.bytes for p in self._points.values()) > self.keep_bytes and len(self._points) > 1:
            self._points.popitem(last=False)
        if pt.bytes > self.keep_bytes:
            self._points.pop(key)
        return t


def engine_measure(model_path, device: str = "cpu"):
    """(measure_decode(batch, context) -> seconds, tokenomics ModelSpec) for a model directory: a `DecodeTimer`."""
    from scalinglab.model.hf import load_model, resolve_model_dir
    from scalinglab.tokenomics.hf_config import load_config_file

    model, tok = load_model(model_path, device=device)
    engine = Engine(model, tok, max_batch=256)
    spec = load_config_file(resolve_model_dir(model_path) / "config.json")
    return DecodeTimer(engine), spec
