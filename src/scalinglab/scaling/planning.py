"""Where should the next FLOP go? Compute-optimal, inference-aware and train-vs-test-time plans.

- `compute_optimal(fit, C)`: minimise L(N, D) s.t. 6·N·D = C for a fitted Chinchilla law
  (Hoffmann et al. 2022, eq. 4): N* = G·(C/6)^(β/(α+β)), D* = (C/6)/N*, G = (αA/(βB))^(1/(α+β)).
  With bootstrap samples in the fit, every quantity also gets a 95% band (the same formula
  applied to each resample's parameters).
- `inference_aware(fit, target_loss, inference_tokens)`: Sardana et al. 2024, "Beyond Chinchilla-
  Optimal": minimise training 6·N·D plus lifetime inference 2·N·D_inf FLOPs subject to
  L(N, D) = target; solved as a 1-D problem in log N (D follows from the target loss).
- `cheapest_mix(...)`: the train-time vs test-time trade-off. A train-compute law gives the
  single-sample accuracy p1(C_train) (e.g. the RL sigmoid); repeated sampling with k samples lifts
  it to c_k = p1^(k^b) — the coverage law c(k) = exp(a·k^b) with a = log p1 and the fitted
  exponent b assumed to carry over between checkpoints (our modelling assumption). Total cost =
  C_train + queries · k · FLOPs per sample; we return the cheapest k and the whole trade-off table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from scalinglab.errors import UserError
from scalinglab.scaling import laws
from scalinglab.scaling.fit import FitResult


def _chinchilla_params(fit: FitResult | dict[str, float]) -> dict[str, float]:
    p = fit.params if isinstance(fit, FitResult) else dict(fit)
    missing = {"E", "A", "B", "alpha", "beta"} - set(p)
    if missing:
        raise UserError(f"a Chinchilla fit is needed (params E, A, B, alpha, beta); missing {sorted(missing)}")
    return p


def optimal_allocation(C, A: float, B: float, alpha: float, beta: float, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N*, D*) for compute C = 6·N·D; E does not move the optimum. Arrays broadcast."""
    C = np.asarray(C, float)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    N = G * (C / 6.0) ** (beta / (alpha + beta))
    return N, C / 6.0 / N


def compute_optimal(fit: FitResult | dict[str, float], C, level: float = 0.95) -> dict[str, Any]:
    """N*(C), D*(C), tokens per parameter and the predicted loss, with bootstrap bands when available.

    Returns lists aligned with C: {"C", "N", "D", "tokens_per_param", "loss", "a", "b", "bands"}, where
    a = β/(α+β) and b = α/(α+β) are the exponents of N* ∝ C^a and D* ∝ C^b, and bands maps each of
    N, D, tokens_per_param, loss, a, b to [lo, hi] lists (absent without bootstrap samples).
    """
    p = _chinchilla_params(fit)
    C = np.atleast_1d(np.asarray(C, float))
    if np.any(~(C > 0)):
        raise UserError("compute budgets C must be positive FLOP counts")
    N, D = optimal_allocation(C, **p)
    out: dict[str, Any] = {
        "C": C.tolist(),
        "N": N.tolist(),
        "D": D.tolist(),
        "tokens_per_param": (D / N).tolist(),
        "loss": laws.chinchilla(N, D, **p).tolist(),
        "a": p["beta"] / (p["alpha"] + p["beta"]),
        "b": p["alpha"] / (p["alpha"] + p["beta"]),
    }
    samples = fit.sample_params() if isinstance(fit, FitResult) else []
    if samples:
        S = fit.samples  # (B, 5) in E, A, B, alpha, beta order
        E, A, Bc, al, be = (S[:, i : i + 1] for i in range(5))
        G = (al * A / (be * Bc)) ** (1.0 / (al + be))
        Nb = G * (C[None] / 6.0) ** (be / (al + be))  # (B, len(C))
        Db = C[None] / 6.0 / Nb
        Lb = E + A / Nb**al + Bc / Db**be
        q = [50 * (1 - level), 50 * (1 + level)]
        band = lambda v: np.nanpercentile(v, q, axis=0).tolist()  # noqa: E731
        out["bands"] = {
            "N": band(Nb),
            "D": band(Db),
            "tokens_per_param": band(Db / Nb),
            "loss": band(Lb),
            "a": band((be / (al + be))[:, 0]),
            "b": band((al / (al + be))[:, 0]),
        }
    return out


def inference_aware(fit: FitResult | dict[str, float], target_loss: float, inference_tokens: float) -> dict[str, float]:
    """Cheapest (N, D) reaching `target_loss` when the model will also serve `inference_tokens` tokens.

    Minimises 6·N·D + 2·N·D_inf subject to E + A/N^α + B/D^β = target_loss. Also returns the
    Chinchilla-optimal model for the same loss (D_inf = 0) for comparison.
    """
    p = _chinchilla_params(fit)
    E, A, B, al, be = p["E"], p["A"], p["B"], p["alpha"], p["beta"]
    if not target_loss > E:
        raise UserError(f"target loss {target_loss} is at or below the irreducible loss E={E:.4g}; no model reaches it")
    if inference_tokens < 0:
        raise UserError("inference_tokens must be >= 0")
    # N must exceed the size whose A/N^α alone uses up the whole loss budget
    logn_min = math.log(A / (target_loss - E)) / al

    def tokens(logn: float) -> float:
        gap = target_loss - E - A * math.exp(-al * logn)
        return (B / gap) ** (1.0 / be)

    def cost(logn: float, d_inf: float) -> float:
        return math.log(6.0 * math.exp(logn) * tokens(logn) + 2.0 * math.exp(logn) * d_inf)

    def solve(d_inf: float) -> tuple[float, float]:
        r = minimize_scalar(
            lambda u: cost(logn_min + math.exp(u), d_inf),
            bounds=(-25.0, 6.0),
            method="bounded",
            options={"xatol": 1e-10},
        )
        logn = logn_min + math.exp(r.x)
        return math.exp(logn), tokens(logn)

    N, D = solve(inference_tokens)
    N0, D0 = solve(0.0)
    train, infer = 6 * N * D, 2 * N * inference_tokens
    return {
        "N": N,
        "D": D,
        "train_flops": train,
        "inference_flops": infer,
        "total_flops": train + infer,
        "chinchilla_N": N0,
        "chinchilla_D": D0,
        "chinchilla_total_flops": 6 * N0 * D0 + 2 * N0 * inference_tokens,
        "saving": 1.0 - (train + infer) / (6 * N0 * D0 + 2 * N0 * inference_tokens),
    }


@dataclass(frozen=True)
class Mix:
    k: int  # samples drawn per query at test time
    train_flops: float  # training compute needed so that k samples reach the target
    test_flops: float  # queries · k · flops_per_sample
    p1: float  # single-sample accuracy the training must reach

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.test_flops


def invert_monotone(f: Callable[[float], float], target: float, lo: float = 1e6, hi: float = 1e35) -> float:
    """The x in [lo, hi] (searched in log space) where an increasing f reaches target, or NaN."""
    g = lambda u: f(math.exp(u)) - target  # noqa: E731
    a, b = math.log(lo), math.log(hi)
    if g(a) >= 0:
        return lo
    if g(b) < 0:
        return float("nan")
    return math.exp(brentq(g, a, b, xtol=1e-10))


def cheapest_mix(
    train_accuracy: Callable[[float], float],
    coverage_b: float,
    target: float,
    *,
    flops_per_sample: float,
    queries: float,
    ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
    train_inverse: Callable[[float], float] | None = None,
) -> dict[str, Any]:
    """Cheapest (train compute, samples per query) reaching `target` accuracy with a verifier.

    train_accuracy(C) -> single-sample accuracy after C training FLOPs (increasing); coverage_b < 0 is
    the exponent of a fitted coverage law; flops_per_sample ≈ 2·N·tokens per answer. Pass
    `train_inverse` (e.g. `laws.sigmoid_inverse` with the fitted params) to skip the root search.
    """
    if not 0 < target < 1:
        raise UserError(f"target accuracy must be in (0, 1), got {target}")
    if not coverage_b < 0:
        raise UserError(f"coverage exponent b must be negative (coverage grows with k), got {coverage_b}")
    rows: list[Mix] = []
    for k in ks:
        p1 = target ** (1.0 / k**coverage_b)  # solve p1^(k^b) = target for p1
        c_train = float(train_inverse(p1)) if train_inverse else invert_monotone(train_accuracy, p1)
        rows.append(Mix(k=int(k), train_flops=c_train, test_flops=queries * k * flops_per_sample, p1=p1))
    feasible = [r for r in rows if math.isfinite(r.train_flops)]
    best = min(feasible, key=lambda r: r.total_flops) if feasible else None
    table = [
        {
            "k": r.k,
            "p1_needed": r.p1,
            "train_flops": r.train_flops,
            "test_flops": r.test_flops,
            "total_flops": r.total_flops,
        }
        for r in rows
    ]
    if best is None:
        return {
            "feasible": False,
            "message": f"no k in {list(ks)} reaches {target} with this training law",
            "table": table,
        }
    return {
        "feasible": True,
        "best_k": best.k,
        "train_flops": best.train_flops,
        "test_flops": best.test_flops,
        "total_flops": best.total_flops,
        "p1_needed": best.p1,
        "table": table,
    }
