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

This module is the scheduler (`Engine.generate`) and its results; the per-call slot state is
`engine.slots`. The forward passes are in `engine.steps`, and a call picks one decode path
before it starts: "native" (on a CPU the decode loop runs in C++ for as many steps as no group
finishes, the scheduler below staying in Python), "compiled" (`Engine(compile=True)`, n = 1: a
`torch.compile` step) or "pytorch" (one eager step at a time). Sampling is `engine.sampling`'s.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from scalinglab.engine.sampling import SamplingParams, sample_tokens
from scalinglab.engine.slots import EOS, REASONS, STOP, Slots
from scalinglab.engine.steps import KVCache, ModelSteps
from scalinglab.errors import UserError
from scalinglab.model.transformer import Transformer


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
    seconds: float = 0.0  # the whole call, pack_seconds included
    pack_seconds: float = 0.0  # of which packing the weights for the native loop (first call after a weight change)
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
        return {
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "prefills": self.prefills,
            "prompt_flops": self.prompt_flops,
            "generated_flops": self.generated_flops,
            "flops": self.flops,
            "seconds": self.seconds,
            "pack_seconds": self.pack_seconds,
            "tokens_per_s": self.tokens_per_s,
            "kv_bytes": self.kv_bytes,
        }


def sequence_flops(cfg, start: int, count: int) -> float:
    """Forward FLOPs of `count` decoded tokens at positions start..start+count-1, logits at each."""
    return cfg.forward_flops(start, count)  # model/config.py counts every inference FLOP


@dataclass
class _Call:
    """One generate call: its prompts and sampling, the decode path chosen for it, its cache and
    slots, the prompts still waiting, and the result being filled."""

    prompt_ids: list[list[int]]
    params: SamplingParams
    path: str  # "native", "compiled" or "pytorch" (GenerationResult.decode_path)
    cache: KVCache
    slots: Slots
    gen: torch.Generator  # every sample of the call draws from this one generator, in step order
    result: GenerationResult
    queue: deque = field(default_factory=deque)  # prompts waiting for a free group
    finished: int = 0  # prompts retired


class Engine(ModelSteps):
    """Generation for a `Transformer` and its tokenizer. See the module docstring."""

    def __init__(
        self,
        model: Transformer,
        tokenizer,
        max_batch: int = 64,
        compile: bool = False,
        weight_dtype: torch.dtype | None = None,
    ):
        super().__init__(model, weight_dtype)
        self.tok = tokenizer
        self.max_batch = max_batch
        self.compile = compile  # n == 1 decode steps through `engine.compiled` (torch.compile)

    def encode_prompts(self, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
        ids = [list(p) if not isinstance(p, str) else self.tok.encode(p) for p in prompts]
        for i, x in enumerate(ids):
            if not x:
                raise UserError(f"prompt {i} is empty")
        return ids

    def decode_path(self, n: int) -> str:
        """The decode path of a call with `n` samples per prompt: "compiled" when asked for (n = 1
        only), else "native" where the C++ loop serves the model, else "pytorch"."""
        if self.compile and n == 1:
            return "compiled"
        return "native" if self.native_ok() else "pytorch"

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str | Sequence[int]],
        params: SamplingParams = SamplingParams(),
        progress: Callable[..., None] | None = None,
    ) -> GenerationResult:
        """Complete every prompt `params.n` times. Prompts are strings or token-id lists."""
        t0 = time.perf_counter()
        # 1. prepare: the decode path (once for the call), the cache and the slots
        call = self._prepare(prompts, params)
        step = {"native": self._step_native, "compiled": self._step_compiled, "pytorch": self._step_pytorch}[call.path]
        # 2. prefill the first prompts into every group
        self._admit(call, list(range(len(call.slots.prompt))))
        # 3. decode: retire finished groups, refill or compact them, then step the live ones
        while self._schedule(call):
            if progress is not None:
                progress(call.finished, len(call.prompt_ids))
            S = call.slots.active * call.slots.n
            live = call.slots.live(S)
            call.result.steps += step(call, S)
            self._check_stops(call, live)
        # 4. collect
        for g, p in enumerate(call.slots.prompt):
            if p >= 0:
                self._retire(call, g)
        if progress is not None:
            progress(call.finished, len(call.prompt_ids))
        call.result.seconds = time.perf_counter() - t0
        call.result.kv_bytes, call.result.prefix_kv_bytes = call.cache.bytes, call.cache.prefix_bytes
        return call.result

    # -- 1. prepare ----------------------------------------------------------------
    def _prepare(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams) -> _Call:
        prompt_ids = self.encode_prompts(prompts)
        n, dev, cfg = params.n, self.device, self.cfg
        G = max(1, min(len(prompt_ids), self.max_batch // n))
        Tp, Ts = max(len(x) for x in prompt_ids), params.max_new_tokens
        if Tp + Ts > cfg.max_position_embeddings:
            i = max(range(len(prompt_ids)), key=lambda j: len(prompt_ids[j]))
            raise UserError(
                f"prompt {i} has {Tp} tokens: with max_new_tokens {Ts} it runs past the model's context of "
                f"{cfg.max_position_embeddings} positions (max_position_embeddings)"
            )
        path, cache_ts = self.decode_path(n), Ts
        if path == "compiled":  # few distinct shapes, so few compilations: batch to a power of two, length to 64s
            G = min(1 << (G - 1).bit_length(), max(1, self.max_batch))
            cache_ts = -(-(Tp + Ts) // 64) * 64 - Tp
        dtype = (
            torch.float32 if path == "native" else self.model.lm_head.weight.dtype
        )  # the C++ loop keeps K/V in float32
        t_pack = time.perf_counter()
        if path == "native":
            self._packed()  # built once per weight version; timed apart (start-up, not decoding)
        result = GenerationResult(
            pack_seconds=time.perf_counter() - t_pack,
            generations=[
                Generation(prompt=p if isinstance(p, str) else self.tok.decode(p), prompt_ids=ids, completions=[])
                for p, ids in zip(prompts, prompt_ids)
            ],
            decode_path=path,
        )
        return _Call(
            prompt_ids=prompt_ids,
            params=params,
            path=path,
            cache=KVCache(cfg, G, n, Tp, cache_ts, dev, dtype),
            slots=Slots.empty(G, n, Ts, None if params.ignore_eos else self.tok.eos_id, dev),
            gen=torch.Generator(device=dev).manual_seed(params.seed),
            result=result,
            queue=deque(range(len(prompt_ids))),
        )

    # -- 2. prefill: admit waiting prompts into free groups ---------------------------
    def _admit(self, call: _Call, free: list[int]) -> None:
        take = [call.queue.popleft() for _ in range(min(len(free), len(call.queue)))]
        if not take:
            return
        groups, ids, res = free[: len(take)], [call.prompt_ids[p] for p in take], call.result
        logits = self.prefill(call.cache, groups, ids, native=call.path == "native")  # (k, V)
        for x in ids:
            res.prompt_tokens += len(x)
            res.prompt_flops += self.cfg.prefill_flops(len(x))  # LM head at the last position only
        res.prefills += len(take)
        tok, lp = sample_tokens(
            logits.repeat_interleave(call.slots.n, 0), call.params, call.gen
        )  # n samples per prompt
        slots = call.slots.start(groups, take, [len(x) for x in ids], tok, lp)
        self._check_stops(call, slots)

    # -- 3. the decode loop: schedule, then one step of the chosen path ------------------
    def _schedule(self, call: _Call) -> bool:
        """Retire the finished groups, refill them from the queue, close the holes left; whether any group is live."""
        st = call.slots
        for g in st.finished_groups():
            if st.prompt[g] >= 0:
                self._retire(call, int(g))
        free = st.free_groups()
        if free and call.queue:
            self._admit(call, free)
            free = st.free_groups()
        for g in sorted(free, reverse=True):  # fill holes with the last live group
            last = st.active - 1
            while last >= 0 and st.prompt[last] < 0:
                last -= 1
            if last > g:
                call.cache.move_group(last, g, st.n)
                st.move(last, g)
            st.active = max((i + 1 for i, p in enumerate(st.prompt) if p >= 0), default=0)
        return st.active > 0

    def _step_native(self, call: _Call, S: int) -> int:
        """Steps of the first S slots in C++, as many as no group finishes (one when stop strings need checking)."""
        st, p = call.slots, call.params
        max_steps = 1 if p.stop else st.budget
        steps = self.decode_native(
            call.cache, st.n, S, st.tokens, st.plen, st.slen, st.shared, st.budget, p, call.gen, st.eos, max_steps
        )
        st.slen_host[:S] += steps
        return steps

    def _step_compiled(self, call: _Call, S: int) -> int:
        """One torch.compile step of every slot (the graph's batch is fixed); the first S are live."""
        st = call.slots
        tok, lp = self.decode_compiled(
            call.cache, st.tokens, st.plen, st.slen, st.attended(S, call.cache.flat), call.params, call.gen, S
        )
        st.advance(S, tok[:S], lp[:S])
        return 1

    def _step_pytorch(self, call: _Call, S: int) -> int:
        """One eager step of the first S slots: the token sampled last goes in at suffix position slen."""
        st, G = call.slots, call.slots.active
        logits = self.decode(
            call.cache, G, st.n, st.tokens[:S], st.plen[:G], st.slen[:S], st.attended(S, call.cache.flat)
        )
        st.advance(S, *sample_tokens(logits, call.params, call.gen))
        return 1

    def _check_stops(self, call: _Call, slots: np.ndarray) -> None:
        """Finish the `slots` (just given a token) whose text now ends with a stop string."""
        stop, st = tuple(call.params.stop), call.slots
        for s in slots[st.reason[slots] != EOS] if stop else ():
            tail = self.tok.decode(st.buf_tok[s, max(0, st.ntok[s] - 32) : st.ntok[s]].tolist())
            if any(tail.endswith(x) or x in tail[-(len(x) + 8) :] for x in stop):
                st.reason[s], st.done[s] = STOP, True

    # -- 4. collect: a finished group's completions --------------------------------------
    def _retire(self, call: _Call, g: int) -> None:
        """Group g is finished: save its outputs and free the group."""
        st, p = call.slots, call.slots.prompt[g]
        out, res = call.result.generations[p], call.result
        for j in range(st.n):
            s = g * st.n + j
            ids, why = st.buf_tok[s, : st.ntok[s]].tolist(), REASONS[st.reason[s]]
            text_ids = ids[:-1] if why == "eos" else ids
            out.completions.append(Completion(self.tok.decode(text_ids), ids, st.buf_lp[s, : st.ntok[s]].tolist(), why))
            res.generated_tokens += len(ids)
            res.generated_flops += sequence_flops(self.cfg, len(call.prompt_ids[p]), len(ids))
        st.prompt[g] = -1
        call.finished += 1
