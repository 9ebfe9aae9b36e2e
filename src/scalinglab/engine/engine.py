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

This module is the scheduler (`Engine.generate`) and its results. The forward passes are in
`engine.steps`: on a CPU (float32) the decode loop runs in C++ for as many steps as no group
finishes, and the scheduler below stays in Python. Sampling is `engine.sampling`'s.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from scalinglab.engine.sampling import SamplingParams, sample_tokens
from scalinglab.engine.steps import ModelSteps, _Cache
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
        return {
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "prefills": self.prefills,
            "prompt_flops": self.prompt_flops,
            "generated_flops": self.generated_flops,
            "flops": self.flops,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
            "kv_bytes": self.kv_bytes,
        }


def sequence_flops(cfg, start: int, count: int) -> float:
    """Forward FLOPs of `count` decoded tokens at positions start..start+count-1, logits at each."""
    return cfg.forward_flops(start, count)  # model/config.py counts every inference FLOP


_EOS, _STOP, _LENGTH = 1, 2, 3
_REASONS = ("length", "eos", "stop", "length")  # by code; 0 = still running (retired at the end: "length")


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

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str | Sequence[int]],
        params: SamplingParams = SamplingParams(),
        progress: Callable[..., None] | None = None,
    ) -> GenerationResult:
        """Complete every prompt `params.n` times. Prompts are strings or token-id lists."""
        t0 = time.perf_counter()
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
        compiled, cache_ts = self.compile and n == 1, Ts
        if compiled:  # few distinct shapes, so few compilations: batch to a power of two, length to 64s
            G = min(1 << (G - 1).bit_length(), max(1, self.max_batch))
            cache_ts = -(-(Tp + Ts) // 64) * 64 - Tp
        native = not compiled and self._native_ok()  # the whole loop in C++ (engine.kernels)
        dtype = torch.float32 if native else self.model.lm_head.weight.dtype  # the native loop keeps K/V in float32
        cache = _Cache(cfg, G, n, Tp, cache_ts, dev, dtype)
        gen = torch.Generator(device=dev).manual_seed(params.seed)
        stop_strs = tuple(params.stop)
        eos = None if params.ignore_eos else self.tok.eos_id

        result = GenerationResult(
            generations=[
                Generation(prompt=p if isinstance(p, str) else self.tok.decode(p), prompt_ids=ids, completions=[])
                for p, ids in zip(prompts, prompt_ids)
            ]
        )
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
                tail = self.tok.decode(buf_tok[s_, max(0, ntok[s_] - 32) : ntok[s_]].tolist())
                if any(tail.endswith(st) or st in tail[-(len(st) + 8) :] for st in stop_strs):
                    reason[s_], done_host[s_] = _STOP, True

        def admit(free: list[int]) -> None:
            nonlocal active_groups
            take = [queue.popleft() for _ in range(min(len(free), len(queue)))]
            if not take:
                return
            groups = free[: len(take)]
            logits = self._prefill(cache, groups, [prompt_ids[p] for p in take], native=native)  # (k, V)
            for g, p in zip(groups, take):
                group_prompt[g] = p
                plen[g] = len(prompt_ids[p])
                plen_host[g] = len(prompt_ids[p])
                result.prompt_tokens += len(prompt_ids[p])
                result.prompt_flops += cfg.prefill_flops(len(prompt_ids[p]))  # LM head at the last position only
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
                ids, why = buf_tok[s_, : ntok[s_]].tolist(), _REASONS[reason[s_]]
                text_ids = ids[:-1] if why == "eos" else ids
                gen_out.completions.append(
                    Completion(self.tok.decode(text_ids), ids, buf_lp[s_, : ntok[s_]].tolist(), why)
                )
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
            for g in np.nonzero(done_host[: active_groups * n].reshape(-1, n).all(1))[0]:
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
            if native:  # as many steps as no group finishes (one when stop strings need checking)
                live = np.nonzero(~done_host[:S])[0]
                steps = self._native_steps(
                    cache, n, S, tokens, plen, slen, shared, Ts, params, gen, eos, 1 if stop_strs else Ts
                )
                result.steps += steps
                slen_host[:S] += steps
                check_stops(live)
                continue
            # the token sampled last step goes in at suffix position slen; attend over slen+1
            live_pos = slen_host[:S][~done_host[:S]] + (plen_host[:S][~done_host[:S]] if cache.flat else 0)
            tcur = int(live_pos.max(initial=0)) + 1
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
