"""Small pieces every trainer shares: seeding, LR schedule, optimizer, log-probs, masked means,
the gradient check before each update, and config range checks (checkpoints, the RNG state they carry, and
`--resume` are `scalinglab.runs.checkpoint`)."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from scalinglab.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warmup for `warmup` steps, then cosine decay to `min_ratio`·peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95), eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms, biases or embeddings' gains)."""
    decay, no_decay = [], []
    seen = set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(target) per position: logits (B, T, V), targets (B, T) -> (B, T), in fp32.

    Divides by the sampling temperature so training-side log-probs match the sampler's
    (RL_CHECKLIST item 4).
    """
    logits = logits.float() / temperature
    return logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of the softmax per position (B, T)."""
    logp = (logits.float() / temperature).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of `x` where `mask` is 1: Σ x·mask / max(Σ mask, 1), over `dim` (None = all)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate; returns `lr` (for the step's record)."""
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


class NonFiniteError(UserError):
    """A loss or gradient norm is NaN/inf, or the gradient exploded: the run stops before the
    update is applied, and its last good checkpoint is kept (a UserError: one line, no traceback)."""


def check_finite(step: int, **values: float) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteError(
            f"step {step}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())}; stopped, last good checkpoint kept"
        )


def check_update(
    step: int, loss: float, grad_norm: float, max_grad_norm: float = 0.0, name: str = "abort_grad_norm"
) -> None:
    """The gradient check every recipe runs after clipping and before `opt.step()`: stop on a
    non-finite loss or (pre-clip) gradient norm, or a norm above `max_grad_norm` (the config
    key `name`; 0 = no limit). `step` is the 1-based step being taken."""
    check_finite(step, loss=loss, grad_norm=grad_norm)
    if max_grad_norm > 0 and grad_norm > max_grad_norm:
        raise NonFiniteError(
            f"step {step}: gradient norm {grad_norm:.3g} exceeds {name}={max_grad_norm:g} (exploding); "
            "stopped, last good checkpoint kept"
        )


def check_fields(
    cfg, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = (), at_most: dict | None = None
) -> None:
    """Refuse (UserError naming the key) a config whose numbers make no sense: any NaN/inf,
    a `positive` field <= 0, a `non_negative` one < 0, or a field above its `at_most` cap."""
    import dataclasses

    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"config key {f.name!r}: must be a finite number, got {v!r}")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise UserError(f"config key {name!r}: must be > 0, got {getattr(cfg, name)!r}")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise UserError(f"config key {name!r}: must be >= 0, got {getattr(cfg, name)!r}")
    for name, cap in (at_most or {}).items():
        if getattr(cfg, name) > cap:
            raise UserError(f"config key {name!r}: must be <= {cap}, got {getattr(cfg, name)!r}")
    device = getattr(cfg, "device", "auto")
    if not (device in ("auto", "cpu", "mps") or device == "cuda" or device.startswith("cuda:")):
        raise UserError(f"config key 'device': {device!r} is not auto, cpu or cuda[:N]")
