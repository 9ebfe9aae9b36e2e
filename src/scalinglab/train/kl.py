"""KL estimators of KL(π ‖ π_ref) from samples of π (Schulman, "Approximating KL"), and
the sampler-vs-trainer mismatch metrics (RL_CHECKLIST item 6)."""

from __future__ import annotations

import torch

from scalinglab.train.common import masked_mean

LOG_RATIO_CLAMP = 20.0  # exp(clamp(Δ, ±20)) keeps ratios finite in fp32 (item 5)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref: unbiased, high variance, can be negative."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (log π − log π_ref)²: biased value, but its gradient is the KL's."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = e^{−d} − 1 + d with d = log π − log π_ref; ≥ 0, unbiased. Clamped as verl:
    log-ratio to [−20, 20], value to [−10, 10]."""
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (d.exp() - d - 1).clamp(-10.0, 10.0)


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def mismatch_stats(engine_logp: torch.Tensor, train_logp: torch.Tensor, mask: torch.Tensor) -> dict:
    """How far the sampler's log-probs are from the trainer's on the sampled tokens (item 6).

    mismatch_abs = mean |Δ|; mismatch_kl = mean k3 estimate of KL(π_sampler ‖ π_train)
    (prime-rl alerts above 0.01); mismatch_prob_ratio = mean e^{|Δ|} (NeMo's
    token_mult_prob_error, alert above 1.1).
    """
    m = mask.float()
    n = m.sum().clamp_min(1)
    d = (train_logp - engine_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP) * m
    return {
        "mismatch_abs": float(d.abs().sum() / n),
        "mismatch_kl": float(masked_mean(d.exp() - 1 - d, m)),
        "mismatch_prob_ratio": float(masked_mean(d.abs().exp(), m)),
    }
