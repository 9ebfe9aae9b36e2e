"""Measured decode-step time of the engine at a (batch, context): what tokenomics calibrates against."""

from __future__ import annotations

import time

import torch

from scalinglab.engine.engine import Engine, SamplingParams
from scalinglab.engine.steps import _Cache


def decode_step_seconds(engine: Engine, batch: int, context: int, steps: int = 8, warmup: int = 2, compiled: bool = False) -> float:
    """Median seconds of one decode step of `batch` sequences that each hold `context` tokens.

    The cache is filled with random keys/values (their values do not change the work done),
    so no prefill is timed; each timed call is exactly the engine's decode step: the native C++
    step where `generate` would use it (CPU, float32), else the PyTorch one (`compiled`: the
    torch.compile step with greedy sampling; its compilation happens in the warm-up).
    """
    cfg, dev = engine.cfg, engine.device
    native = not compiled and engine._native_ok()  # the step `generate` would take
    dtype = torch.float32 if native else engine.model.lm_head.weight.dtype
    cache = _Cache(cfg, batch, 1, context, steps + warmup + 1, dev, dtype)
    cache.ks.normal_()
    cache.vs.normal_()
    plen = torch.full((batch,), context, dtype=torch.long, device=dev)
    tokens = torch.randint(4, cfg.vocab_size, (batch,), device=dev)
    greedy, gen = SamplingParams(greedy=True), torch.Generator(device=dev)
    if native:  # the scheduler's record arrays; no slot ever finishes (no EOS, budget never reached)
        budget = steps + warmup + 1
        record = [torch.zeros(batch, budget, dtype=torch.long), torch.zeros(batch, budget, dtype=torch.float64),
                  torch.zeros(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.bool), torch.zeros(batch, dtype=torch.int8)]
    times = []
    for i in range(steps + warmup):
        slen = torch.full((batch,), i, dtype=torch.long, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        if native:
            engine._native_steps(cache, 1, batch, tokens, plen, slen, record, budget + 1, greedy, gen, None, 1)
        elif compiled:
            engine._decode_compiled(cache, tokens, plen, slen, context + i + 1, greedy, gen, batch)
        else:
            engine._decode(cache, batch, 1, tokens, plen, slen, context + i + 1)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def engine_measure(model_path, device: str = "cpu"):
    """(measure_decode(batch, context) -> seconds, tokenomics ModelSpec) for a model directory."""
    from scalinglab.model.hf import load_model, resolve_model_dir
    from scalinglab.tokenomics.hf_config import load_config_file

    model, tok = load_model(model_path, device=device)
    engine = Engine(model, tok, max_batch=256)
    spec = load_config_file(resolve_model_dir(model_path) / "config.json")
    return (lambda batch, context: decode_step_seconds(engine, batch, context)), spec
