"""The per-call decoding state of `Engine.generate`: G groups of n sample slots.

Slot s belongs to group s // n; a group holds one prompt (`prompt[g]`, -1 when free) and the
groups [0, active) are live. The device tensors are what a decode step reads and advances; the
host arrays are what the scheduler reads, kept in step with them so that it never waits on the
device. The C++ loop records into the same host arrays through `shared` (the same memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

EOS, STOP, LENGTH = 1, 2, 3  # finish codes in `Slots.reason`; 0 = still running
REASONS = ("length", "eos", "stop", "length")  # by code; a slot still running at the end is retired as "length"


@dataclass
class Slots:
    n: int  # samples per prompt: the slots of one group
    budget: int  # max_new_tokens: a slot that has recorded this many tokens finishes ("length")
    eos: int | None  # the id that finishes a slot ("eos"); None when EOS is ignored
    prompt: list[int]  # (G,) the prompt each group holds, -1 when the group is free
    tokens: torch.Tensor  # (S,) each slot's last sampled id: the next step's input
    plen: torch.Tensor  # (G,) each group's prompt length
    slen: torch.Tensor  # (S,) tokens generated so far: the suffix position of the next one
    plen_host: np.ndarray  # (G,) plen on the host
    slen_host: np.ndarray  # (S,) slen on the host
    buf_tok: np.ndarray  # (S, budget) the sampled ids
    buf_lp: np.ndarray  # (S, budget) their log-probs
    ntok: np.ndarray  # (S,) tokens recorded
    reason: np.ndarray  # (S,) int8 finish code, 0 while running
    done: np.ndarray  # (S,) finished; a free slot counts as finished
    active: int = 0  # groups [0, active) are live
    shared: list[torch.Tensor] = field(default_factory=list)  # buf_tok, buf_lp, ntok, done, reason as tensors

    @classmethod
    def empty(cls, groups: int, n: int, budget: int, eos: int | None, device) -> Slots:
        S = groups * n
        st = cls(
            n=n,
            budget=budget,
            eos=eos,
            prompt=[-1] * groups,
            tokens=torch.zeros(S, dtype=torch.long, device=device),
            plen=torch.zeros(groups, dtype=torch.long, device=device),
            slen=torch.zeros(S, dtype=torch.long, device=device),
            plen_host=np.zeros(groups, dtype=np.int64),
            slen_host=np.zeros(S, dtype=np.int64),
            buf_tok=np.zeros((S, budget), dtype=np.int64),
            buf_lp=np.zeros((S, budget), dtype=np.float64),
            ntok=np.zeros(S, dtype=np.int64),
            reason=np.zeros(S, dtype=np.int8),
            done=np.ones(S, dtype=bool),
        )
        st.shared = [torch.from_numpy(a) for a in (st.buf_tok, st.buf_lp, st.ntok, st.done, st.reason)]
        return st

    def live(self, S: int) -> np.ndarray:
        """The unfinished slots among the first S."""
        return np.nonzero(~self.done[:S])[0]

    def free_groups(self) -> list[int]:
        return [g for g in range(self.active) if self.prompt[g] < 0]

    def finished_groups(self) -> np.ndarray:
        """Live groups whose every sample has finished."""
        return np.nonzero(self.done[: self.active * self.n].reshape(-1, self.n).all(1))[0]

    def start(self, groups: list[int], prompts: list[int], lengths: list[int], tok: torch.Tensor, lp: torch.Tensor):
        """Free `groups` now hold `prompts` (of `lengths` tokens): reset their slots and record their
        first tokens tok, lp (k·n,), sampled from the prefill. Returns those slots (host indices)."""
        for g, p, length in zip(groups, prompts, lengths):
            self.prompt[g] = p
            self.plen[g] = length
            self.plen_host[g] = length
        dev, n = self.tokens.device, self.n
        gi = torch.tensor(groups, device=dev)
        slots = (gi[:, None] * n + torch.arange(n, device=dev)[None, :]).reshape(-1)
        self.tokens[slots] = tok
        self.slen[slots] = 0
        slots_h = slots.cpu().numpy()
        self.slen_host[slots_h] = 0
        self.done[slots_h] = False
        self.reason[slots_h], self.ntok[slots_h] = 0, 0
        self.record(slots_h, tok.cpu().numpy(), lp.double().cpu().numpy())
        self.active = max(self.active, max(groups) + 1)
        return slots_h

    def record(self, slots: np.ndarray, toks: np.ndarray, lps: np.ndarray) -> None:
        """Append the sampled tokens of live `slots` and mark the ones that end on EOS or the budget."""
        at = self.ntok[slots]
        self.buf_tok[slots, at], self.buf_lp[slots, at] = toks, lps
        self.ntok[slots] = at + 1
        why = np.where(self.ntok[slots] >= self.budget, LENGTH, 0).astype(np.int8)
        if self.eos is not None:
            why[toks == self.eos] = EOS
        ended = why > 0
        self.reason[slots[ended]] = why[ended]
        self.done[slots[ended]] = True

    def advance(self, S: int, tok: torch.Tensor, lp: torch.Tensor) -> None:
        """After one Python decode step of the first S slots, which sampled tok, lp (S,): feed the
        tokens back and record those of the live slots."""
        self.slen[:S] += 1
        self.slen_host[:S] += 1
        self.tokens[:S] = tok
        live = self.live(S)
        self.record(live, tok.cpu().numpy()[live], lp.double().cpu().numpy()[live])

    def attended(self, S: int, flat: bool) -> int:
        """Cache positions the next step attends to: one past the furthest live slot's new token
        (suffix positions; flat mode: prompt and suffix together)."""
        live = ~self.done[:S]
        pos = self.slen_host[:S][live] + (self.plen_host[:S][live] if flat else 0)  # flat: n == 1, slot == group
        return int(pos.max(initial=0)) + 1

    def move(self, src: int, dst: int) -> None:
        """Move live group src's state into free group dst (the cache moves apart: `KVCache.move_group`)."""
        a, b = slice(src * self.n, src * self.n + self.n), slice(dst * self.n, dst * self.n + self.n)
        self.plen[dst], self.plen_host[dst] = self.plen[src], self.plen_host[src]
        self.slen[b], self.tokens[b] = self.slen[a], self.tokens[a]
        self.slen_host[b], self.done[b] = self.slen_host[a], self.done[a]
        self.buf_tok[b], self.buf_lp[b], self.ntok[b], self.reason[b] = (
            self.buf_tok[a],
            self.buf_lp[a],
            self.ntok[a],
            self.reason[a],
        )
        self.done[a] = True
        self.prompt[dst], self.prompt[src] = self.prompt[src], -1
