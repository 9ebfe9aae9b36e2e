"""Advantages: group-relative baselines for GRPO, GAE and whitening for PPO.

Group variants are separate small functions chosen from `ADVANTAGES` (STYLE.md 8), each
mapping (G, n) group rewards to (G, n) advantages: `group_zscore` (GRPO, Shao et al.
2024), `group_center` (Dr. GRPO, Liu et al. 2025: no division by the group std, which
biases towards easy/hard questions), `leave_one_out` (RLOO, Ahmadian et al. 2024).

Verifier errors (a timeout or sandbox fault) are not wrong answers: `group_advantages`
computes each group's advantages over its answered samples only and gives errored samples
zero advantage.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from scalinglab.train.common import masked_mean

# -- group-relative advantages (GRPO family; one scalar per sequence) ----------------


def group_zscore(r: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: (r − mean_g) / (std_g + eps), std with Bessel's correction (as trl)."""
    return (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + eps)


def group_center(r: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO: r − mean_g (no std: it weights low-variance groups up)."""
    return r - r.mean(-1, keepdim=True)


def leave_one_out(r: torch.Tensor) -> torch.Tensor:
    """RLOO: r_i − mean_{j≠i} r_j = n/(n−1)·(r_i − mean_g)."""
    n = r.shape[-1]
    return (r - (r.sum(-1, keepdim=True) - r) / max(n - 1, 1)) if n > 1 else torch.zeros_like(r)


ADVANTAGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "zscore": group_zscore,
    "center": group_center,
    "rloo": leave_one_out,
}


def zero_std_groups(r: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(G,) bool: groups whose rewards are all equal (no learning signal; DAPO filters them).

    With `valid` (G, n) bool, only those samples count, and a group with fewer than two is
    without signal too."""
    if valid is None:
        return (r.max(-1).values - r.min(-1).values).abs() < 1e-8
    hi = torch.where(valid, r, torch.full_like(r, -math.inf)).max(-1).values
    lo = torch.where(valid, r, torch.full_like(r, math.inf)).min(-1).values
    return (valid.sum(-1) < 2) | ((hi - lo).abs() < 1e-8)


def group_advantages(r: torch.Tensor, valid: torch.Tensor, how: str) -> torch.Tensor:
    """`ADVANTAGES[how]` of each group computed over its `valid` samples only (G, n);
    invalid samples (verifier errors) get advantage 0, and so does a group with < 2 valid."""
    adv = ADVANTAGES[how](r)
    if bool(valid.all()):
        return adv
    adv = adv.clone()
    for g in (~valid).any(-1).nonzero()[:, 0].tolist():
        v = valid[g]
        adv[g] = 0.0
        if int(v.sum()) >= 2:
            adv[g, v] = ADVANTAGES[how](r[g, v][None])[0]
    return adv


# -- PPO: generalised advantage estimation and whitening (per token) --------------


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (Schulman et al. 2016).

    rewards, values, mask: (B, T); mask marks one contiguous block per row. Reverse loop
    δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}, with V and A zero past the block.
    Returns (advantages, returns = A + V), both zero outside the mask.
    """
    m = mask.float()
    B, T = rewards.shape
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    last = torch.zeros(B, dtype=torch.float32, device=rewards.device)
    for t in reversed(range(T)):
        nxt = m[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        next_v = values[:, t + 1] * nxt if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * nxt * last
        adv[:, t] = last
    adv = adv * m
    return adv, (adv + values) * m


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean)/std over masked entries (unbiased variance); shift_mean=False keeps the mean."""
    m = mask.float()
    n = m.sum().clamp_min(1)
    mean = masked_mean(x, m)  # the same operations as (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / (n - 1).clamp_min(1)
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * m
