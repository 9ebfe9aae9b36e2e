"""Batched L-BFGS: many small, independent minimisations advanced in lock-step with NumPy.

Why: a Chinchilla fit is a 5-parameter problem, solved thousands of times (a 4,500-start grid,
then 4,000 bootstrap resamples). One `scipy.optimize.minimize` per problem spends most of its
time in Python overhead; here every iteration handles all R problems at once as (R, p) arrays,
so the work per iteration is a few large vectorised operations.

The method is textbook L-BFGS (Nocedal & Wright 2006, Algorithm 7.4, two-loop recursion) with
a backtracking Armijo line search; a curvature pair is stored only when s·y > 0, so the inverse
Hessian estimate stays positive definite without a Wolfe search. Each problem stops on its own
(small gradient, or a relative objective decrease below `ftol`) and drops out of the batch.

`fg(x, idx)` must return (f, g) for problems `idx` at points `x` (shape (len(idx), p)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

FG = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class BatchResult:
    x: np.ndarray  # (R, p) final points
    f: np.ndarray  # (R,) final objective values
    converged: np.ndarray  # (R,) bool: met gtol/ftol (not just ran out of iterations)
    n_iter: np.ndarray  # (R,) iterations used


def minimize_batch(
    fg: FG,
    x0: np.ndarray,
    *,
    m: int = 10,
    max_iter: int = 1000,
    gtol: float = 1e-9,
    ftol: float = 1e-10,
    c1: float = 1e-4,
    max_backtrack: int = 30,
) -> BatchResult:
    """Minimise R independent objectives from starting points x0 (R, p).

    The working arrays hold only the still-active problems (compacted when some finish), so
    late iterations on a few stragglers cost little.
    """
    x_out = np.array(x0, dtype=float, copy=True)
    R, p = x_out.shape
    f_out = np.full(R, np.inf)
    n_iter = np.zeros(R, int)
    converged = np.zeros(R, bool)

    idx = np.arange(R)  # original row of each working problem
    x = x_out.copy()
    f, g = fg(x, idx)
    f, g = np.asarray(f, float).copy(), np.asarray(g, float).copy()
    S = np.zeros((R, m, p))  # curvature pairs, newest last
    Y = np.zeros((R, m, p))
    rho = np.zeros((R, m))  # 0 marks an empty slot, which the two-loop recursion then ignores
    finite = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    done = ~finite | (np.abs(g).max(axis=1) <= gtol)
    converged[idx[finite & done]] = True

    for _ in range(max_iter + 1):
        if done.any():  # write out finished problems and compact the working set
            x_out[idx[done]], f_out[idx[done]] = x[done], f[done]
            keep = ~done
            idx, x, f, g, S, Y, rho = idx[keep], x[keep], f[keep], g[keep], S[keep], Y[keep], rho[keep]
        if idx.size == 0 or _ == max_iter:
            break
        B = idx.size
        # two-loop recursion, vectorised over the batch
        q = -g
        alphas = np.empty((B, m))
        for j in range(m - 1, -1, -1):
            alphas[:, j] = rho[:, j] * np.einsum("ij,ij->i", S[:, j], q)
            q -= alphas[:, j, None] * Y[:, j]
        has = rho[:, -1] > 0
        yy = np.einsum("ij,ij->i", Y[:, -1], Y[:, -1])
        gamma = np.where(has, 1.0 / np.where(has, rho[:, -1] * yy, 1.0), 1.0 / np.maximum(np.abs(g).max(axis=1), 1.0))
        q *= gamma[:, None]
        for j in range(m):
            beta_j = rho[:, j] * np.einsum("ij,ij->i", Y[:, j], q)
            q += (alphas[:, j] - beta_j)[:, None] * S[:, j]
        d = q
        slope = np.einsum("ij,ij->i", g, d)
        bad = ~(slope < 0) | ~np.all(np.isfinite(d), axis=1)
        if bad.any():  # not a descent direction: restart from steepest descent
            d[bad] = -g[bad]
            slope[bad] = -np.einsum("ij,ij->i", g[bad], g[bad])
            rho[bad] = 0.0
        fresh = bad | ~has  # this step is plain (scaled) steepest descent

        # backtracking Armijo line search, all problems in parallel
        t = np.ones(B)
        x_new, f_new, g_new = x.copy(), f.copy(), g.copy()
        pending = np.ones(B, bool)
        pi = np.arange(B)
        for _bt in range(max_backtrack):
            xt = x[pi] + t[pi, None] * d[pi]
            ft, gt = fg(xt, idx[pi])
            ok = np.isfinite(ft) & (ft <= f[pi] + c1 * t[pi] * slope[pi]) & np.all(np.isfinite(gt), axis=1)
            acc = pi[ok]
            x_new[acc], f_new[acc], g_new[acc] = xt[ok], ft[ok], gt[ok]
            pending[acc] = False
            pi = pi[~ok]
            if pi.size == 0:
                break
            t[pi] *= 0.5
        stalled = pending  # no acceptable step: we are at the resolution limit of this problem

        s = x_new - x
        yv = g_new - g
        sy = np.einsum("ij,ij->i", s, yv)
        upd = (sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(yv, axis=1)) & ~stalled
        if upd.any():
            S[upd] = np.roll(S[upd], -1, axis=1)
            Y[upd] = np.roll(Y[upd], -1, axis=1)
            rho[upd] = np.roll(rho[upd], -1, axis=1)
            S[upd, -1], Y[upd, -1], rho[upd, -1] = s[upd], yv[upd], 1.0 / sy[upd]

        rel_drop = (f - f_new) / np.maximum(np.maximum(np.abs(f), np.abs(f_new)), 1e-300)
        x, f, g = x_new, f_new, g_new
        n_iter[idx] += 1
        ok_now = (np.abs(g).max(axis=1) <= gtol) | (~stalled & (rel_drop <= ftol)) | (stalled & fresh)
        converged[idx[ok_now]] = True
        # a stalled quasi-Newton step: drop the history and retry from steepest descent next time
        rho[stalled & ~fresh] = 0.0
        done = ok_now
    if idx.size:  # ran out of iterations
        x_out[idx], f_out[idx] = x, f
    return BatchResult(x=x_out, f=f_out, converged=converged, n_iter=n_iter)
