"""Benchmark: our batched Chinchilla fit against a straightforward SciPy implementation.

Both sides run the same procedure on the same data (Epoch AI's 240 points, or any N, D, loss):
the Huber (δ = 1e-3, summed) log-space objective with its analytic gradient, L-BFGS from
Hoffmann's 4,500-start grid keeping the best, then B bootstrap resamples (the SAME resample
weights on both sides) each warm-started from the full-data optimum.

- ours: `fit_chinchilla` — every start, then every resample, in one batched NumPy L-BFGS;
- SciPy: one `scipy.optimize.minimize(method="L-BFGS-B", jac=True)` per start and per resample,
  with tolerances tightened (ftol=1e-15, gtol=1e-10) so it reaches the same optimum (SciPy's
  default ftol is absolute for objectives below 1 and stops early here, the failure Epoch found).

The SciPy side is slow (minutes), so by default it runs on a random subset of the starts and
of the resamples and its time is extrapolated linearly; the result says so (`naive_extrapolated`).
Both wall-clock and CPU (process) time are reported: on a shared machine other jobs stretch the
wall clock of whichever side happens to run while they do, so `speedup_cpu` is the steadier ratio.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.optimize import minimize

from scalinglab.scaling import chinchilla as ch

EPOCH_CSV = "epoch_chinchilla_svg_extracted_data.csv"


def load_epoch(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch AI's points as Epoch used them: drop the 5 highest losses, D = FLOP / (6 N)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(L)[: len(L) - 5]
    keep.sort()
    return N[keep], C[keep] / (6.0 * N[keep]), L[keep]


def scipy_objective(theta: np.ndarray, logN, logD, logL, w, delta: float = ch.HUBER_DELTA):
    """The same objective written the way one would for `scipy.optimize.minimize` (one problem)."""
    e, a, b, al, be = theta
    t1, t2 = a - al * logN, b - be * logD
    lse = np.logaddexp(np.logaddexp(t1, t2), e)
    r = lse - logL
    c = np.clip(r, -delta, delta)
    f = float(np.sum(w * c * (r - 0.5 * c)))
    psi = w * c
    s1, s2, s3 = np.exp(t1 - lse), np.exp(t2 - lse), np.exp(e - lse)
    g = np.array([psi @ s3, psi @ s1, psi @ s2, -(psi * s1) @ logN, -(psi * s2) @ logD])
    return f, g


def _scipy_min(theta0, logN, logD, logL, w):
    return minimize(
        scipy_objective,
        theta0,
        args=(logN, logD, logL, w),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 15000},
    )


def run(
    N,
    D,
    L,
    *,
    bootstrap: int = 4000,
    naive_starts: int | None = 450,
    naive_resamples: int | None = 400,
    seed: int = 0,
    progress: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Time both sides; compare their answers. `None` for a naive_* count means run it in full."""
    report = progress or (lambda *a, **k: None)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    n = len(L)

    t0, c0 = time.perf_counter(), time.process_time()
    ours = ch.fit_chinchilla(N, D, L, bootstrap=bootstrap, seed=seed)
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    report(1, 3, side="ours", seconds=t_ours)

    grid = ch.hoffmann_grid()
    rng = np.random.default_rng(seed + 1)
    n_st = len(grid) if naive_starts is None else min(naive_starts, len(grid))
    pick = np.sort(rng.choice(len(grid), n_st, replace=False))
    w1 = np.ones(n)
    t0, c0 = time.perf_counter(), time.process_time()
    best = None
    with np.errstate(all="ignore"):
        for s in grid[pick]:
            r = _scipy_min(s, logN, logD, logL, w1)
            if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
                best = r
    t_grid, c_grid = time.perf_counter() - t0, time.process_time() - c0
    report(2, 3, side="scipy grid", seconds=t_grid)

    n_bs = bootstrap if naive_resamples is None else min(naive_resamples, bootstrap)
    W = ch.bootstrap_weights(n, bootstrap, seed)[:n_bs]  # the same resamples as ours, first n_bs of them
    t0, c0 = time.perf_counter(), time.process_time()
    with np.errstate(all="ignore"):
        naive_bs = np.array([_scipy_min(best.x, logN, logD, logL, W[i]).x for i in range(n_bs)])
    t_bs, c_bs = time.perf_counter() - t0, time.process_time() - c0
    report(3, 3, side="scipy bootstrap", seconds=t_bs)

    naive_grid_full = t_grid * len(grid) / n_st
    naive_bs_full = t_bs * bootstrap / max(n_bs, 1)
    naive_total = naive_grid_full + naive_bs_full
    naive_cpu = c_grid * len(grid) / n_st + c_bs * bootstrap / max(n_bs, 1)
    ours_params = np.array(list(ours.params.values()))
    naive_params = ch.to_params(best.x[None])[0]
    ours_bs = ours.samples[:n_bs] if ours.samples is not None else np.empty((0, 5))
    naive_bs_p = ch.to_params(naive_bs)
    rel = np.abs(ours_bs - naive_bs_p) / np.abs(naive_bs_p)
    # where the two disagree, whose optimum is better? compare objectives on the same resample
    ours_th = np.column_stack([np.log(ours_bs[:, :3]), ours_bs[:, 3:]])
    f_ours = np.array([scipy_objective(ours_th[i], logN, logD, logL, W[i])[0] for i in range(n_bs)])
    f_naive = np.array([scipy_objective(naive_bs[i], logN, logD, logL, W[i])[0] for i in range(n_bs)])
    names = list(ours.params)
    return {
        "benchmark": "chinchilla fit: Huber/LSE, 4,500-start L-BFGS grid + bootstrap",
        "data_points": n,
        "bootstrap": bootstrap,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "ours": {
            "seconds": t_ours,
            "cpu_seconds": c_ours,
            "seconds_grid": ours.info["seconds_grid"],
            "seconds_bootstrap": ours.info["seconds_bootstrap"],
            "params": ours.params,
            "objective": ours.objective,
            "ci95": {k: list(v) for k, v in ours.ci.items()},
            "se": ours.se,
        },
        "scipy": {
            "seconds_total": naive_total,
            "cpu_seconds_total": naive_cpu,
            "seconds_grid": naive_grid_full,
            "seconds_bootstrap": naive_bs_full,
            "measured_seconds": t_grid + t_bs,
            "starts_run": int(n_st),
            "resamples_run": int(n_bs),
            "params": dict(zip(names, map(float, naive_params))),
            "objective": float(best.fun),
        },
        "naive_extrapolated": bool(n_st < len(grid) or n_bs < bootstrap),
        "note": (
            f"SciPy side ran {n_st}/{len(grid)} starts and {n_bs}/{bootstrap} resamples; its times are scaled up linearly"
            if (n_st < len(grid) or n_bs < bootstrap)
            else "both sides ran in full"
        ),
        "speedup": naive_total / t_ours,
        "speedup_cpu": naive_cpu / c_ours,
        "same_answer": {
            "max_rel_diff_params": float(np.max(np.abs(ours_params - naive_params) / np.abs(naive_params))),
            "objective_rel_diff": float((ours.objective - best.fun) / best.fun),
            "bootstrap_max_rel_diff": float(np.max(rel)) if rel.size else None,
            "bootstrap_median_rel_diff": float(np.median(rel)) if rel.size else None,
            "bootstrap_p99_rel_diff": float(np.percentile(rel.max(axis=1), 99)) if rel.size else None,
            "bootstrap_ours_objective_not_worse": float(np.mean(f_ours <= f_naive * (1 + 1e-9))) if rel.size else None,
            "bootstrap_se_ratio_on_shared_resamples": {
                k: float(np.std(ours_bs[:, i]) / np.std(naive_bs_p[:, i])) for i, k in enumerate(names)
            }
            if n_bs > 2
            else None,
        },
    }
