"""Sampling parameters and the sampler every decode path reproduces.

Temperature, top-k, top-p or greedy, from a seeded generator; Gumbel-max on uniforms drawn
with shape (batch, vocab) per step, which the compiled step and the native C++ loop draw alike.
The log-prob returned for each sampled token is under the temperature-scaled *full*
distribution (before top-k/top-p truncation; RL_CHECKLIST item 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scalinglab.errors import UserError

_RULES = {
    "n": (lambda v: v >= 1, "at least 1"),
    "max_new_tokens": (lambda v: v >= 1, "at least 1"),
    "max_batch": (lambda v: v >= 1, "at least 1"),
    "top_k": (lambda v: v >= 0, "0 (all) or more"),
    "temperature": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def check_sampling(as_flags: bool = False, **values) -> None:
    """One line naming the first nonsense sampling value: `max_new_tokens=-3: must be at least 1`,
    or with `as_flags` `--max-new-tokens -3: ...` (commands call it before loading a model;
    SamplingParams calls it on every build, so configs and library callers get the same line)."""
    for k, v in values.items():
        ok, wanted = _RULES[k]
        if not ok(v):
            name = f"--{k.replace('_', '-')} {v}" if as_flags else f"{k}={v}"
            raise UserError(f"{name}: must be {wanted}")


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

    def __post_init__(self) -> None:
        check_sampling(
            n=self.n,
            max_new_tokens=self.max_new_tokens,
            top_k=self.top_k,
            top_p=self.top_p,
            **({} if self.greedy else {"temperature": self.temperature}),
        )


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
