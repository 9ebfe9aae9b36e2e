"""Chinchilla's parametric law L(N, D) = E + A/N^α + B/D^β, fitted as Hoffmann et al. / Epoch AI do.

Method (Hoffmann et al. 2022, Approach 3 / Appendix D.2; Besiroglu et al. 2024, "Chinchilla
Scaling: A replication attempt", arXiv:2404.10102):
- fit in log space: log L̂ = LSE(a − α·log N, b − β·log D, e) with A = e^a, B = e^b, E = e^e;
- Huber loss with δ = 1e-3 on log L̂ − log L, SUMMED over points (Epoch showed that Hoffmann's
  averaging shrank the objective ~400× and made L-BFGS stop early);
- L-BFGS from a grid of initialisations (default: Hoffmann's 4,500-point grid α, β ∈ {0, .5, …, 2},
  e ∈ {−1, −.5, …, 1}, a, b ∈ {0, 5, …, 25}); keep the best;
- confidence intervals from a case-resampling bootstrap (Epoch: 4,000 resamples).

Our deviation, for speed only: all starts, and then all resamples, are solved as ONE batched
L-BFGS problem (`lbfgs.minimize_batch`) with the analytic gradient; a bootstrap resample is
represented by integer weights (how often each point was drawn) on the same data, and each
resample is warm-started from the full-data optimum. `benchmarks/bench_fit.py` checks that this
gives the same answers as one `scipy.optimize.minimize` per start and per resample.

Run: `scalinglab fit chinchilla DATA.csv --bootstrap 4000 --json` (columns N, D, loss).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from scalinglab.errors import UserError
from scalinglab.scaling.fit import FitResult, diagnose, failed, percentile_ci, wide_intervals
from scalinglab.scaling.lbfgs import minimize_batch

NAMES = ("E", "A", "B", "alpha", "beta")
CENTRED = ("A/N̄^α", "B/D̄^β")  # the amplitudes at the centre of the data (judged_intervals)
THETA = ("e", "a", "b", "alpha", "beta")  # optimiser coordinates: e = log E, a = log A, b = log B
HUBER_DELTA = 1e-3
# Box used only to flag fits whose exponents ran off to implausible values (the solve is unconstrained).
EXPONENT_BOUNDS = (1e-3, 2.5)
# Relative-decrease stopping rule. The grid runs looser (stragglers crawling along flat valleys far
# from the optimum would otherwise eat the time); the best starts and every bootstrap refit run tight,
# where 1e-10 left 1 resample in 300 visibly short of SciPy's optimum and 1e-14 costs ~10% more iterations.
FTOL, GRID_FTOL, POLISH = 1e-14, 1e-10, 32


def hoffmann_grid() -> np.ndarray:
    """Hoffmann et al.'s grid of 4,500 starting points, as rows (e, a, b, alpha, beta)."""
    ex = np.arange(-1.0, 1.01, 0.5)
    ab = np.arange(0.0, 25.1, 5.0)
    al = np.arange(0.0, 2.01, 0.5)
    return np.array([(e, a, b, x, y) for e, a, b, x, y in itertools.product(ex, ab, ab, al, al)])


def small_grid() -> np.ndarray:
    """A 243-point grid for quick fits (same ranges as Hoffmann's, coarser)."""
    return np.array(
        list(
            itertools.product((-1.0, 0.0, 1.0), (0.0, 10.0, 20.0), (0.0, 10.0, 20.0), (0.0, 0.5, 1.0), (0.0, 0.5, 1.0))
        )
    )


def objective(
    theta: np.ndarray,
    logN: np.ndarray,
    logD: np.ndarray,
    logL: np.ndarray,
    W: np.ndarray | None,
    delta: float = HUBER_DELTA,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Huber objective and its gradient for a batch of parameter vectors.

    theta: (R, 5) rows (e, a, b, alpha, beta); W: (R, n) point weights (bootstrap counts) or None
    for all ones. Returns f (R,) and grad (R, 5). Written with in-place ops because this is the
    whole cost of a fit: every pass over an (R, n) array counts.
    """
    e, a, b, al, be = (theta[:, i : i + 1] for i in range(5))
    # the three LSE terms; exponents clipped so a wild line-search trial cannot overflow
    x1 = np.multiply(al, -logN)  # A/N^α, (R, n), computed in place
    x1 += a
    np.clip(x1, -700.0, 700.0, out=x1)
    np.exp(x1, out=x1)
    x2 = np.multiply(be, -logD)  # B/D^β
    x2 += b
    np.clip(x2, -700.0, 700.0, out=x2)
    np.exp(x2, out=x2)
    x3 = np.exp(np.clip(e, -700.0, 700.0))  # E, (R, 1)
    tot = x1 + x2
    tot += x3
    r = np.log(tot)
    r -= logL  # residual in log space
    c = np.clip(r, -delta, delta)  # Huber derivative ψ(r)
    r -= 0.5 * c
    r *= c  # Huber(r) = ψ(r)·(r − ψ(r)/2), one formula for both branches
    c /= tot  # ψ(r) / L̂: d LSE / d(term k) = term_k / L̂
    if W is not None:
        r *= W
        c *= W
    x1 *= c
    x2 *= c
    g = np.empty((theta.shape[0], 5))
    g[:, 0] = x3[:, 0] * c.sum(axis=1)
    g[:, [1, 3]] = x1 @ np.stack([np.ones_like(logN), -logN], axis=1)  # d/da, d/dα in one BLAS pass
    g[:, [2, 4]] = x2 @ np.stack([np.ones_like(logD), -logD], axis=1)
    return r.sum(axis=1), g


def _blocked(logN, logD, logL, W, delta, pool, block: int = 512):
    """fg(x, idx) for `minimize_batch`: evaluates rows in cache-sized blocks, spread over threads
    (NumPy releases the GIL inside its ufuncs, so blocks run in parallel)."""

    def one(x, idx):
        return objective(x, logN, logD, logL, None if W is None else W[idx], delta)

    def fg(x, idx):
        if len(idx) <= block:
            return one(x, idx)
        parts = [(x[s : s + block], idx[s : s + block]) for s in range(0, len(idx), block)]
        outs = list(pool.map(lambda p: one(*p), parts)) if pool is not None else [one(*p) for p in parts]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    return fg


def to_params(theta: np.ndarray) -> np.ndarray:
    """(R, 5) optimiser coordinates → (R, 5) law parameters (E, A, B, alpha, beta)."""
    out = np.array(theta, float, copy=True)
    out[..., :3] = np.exp(out[..., :3])
    return out


def _solve(theta0: np.ndarray, logN, logD, logL, W, delta, threads: int = 1, ftol: float = FTOL):
    """Batched L-BFGS over the rows of theta0 (one problem per row). Threads help only on an idle
    machine with large batches; on a shared 2-core box they lost to one thread, hence the default."""
    with ThreadPoolExecutor(threads) if threads > 1 else contextlib.nullcontext() as pool:
        res = minimize_batch(_blocked(logN, logD, logL, W, delta, pool), theta0, ftol=ftol)
    return res.x, res.f, res.converged


def bootstrap_weights(n: int, B: int, seed: int) -> np.ndarray:
    """(B, n) resample weights: how often each point is drawn when drawing n rows with replacement."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=B).astype(float)


def judged_intervals(ci: dict, samples: np.ndarray | None, mean_log_N: float, mean_log_D: float) -> dict:
    """The intervals the wide-interval check judges: E, α, β, and each amplitude at the centre of the data.

    A and B are the terms' sizes at N = 1 and D = 1, four or more decades below any rung: their
    intervals there mostly restate α's and β's (judged on their own) and would flag a well-pinned law.
    A/N̄^α and B/D̄^β (N̄, D̄ the data's geometric means) are the losses the two terms contribute
    where the rungs are, the quantities the data measure, as the correlation check judges them.
    """
    out = {k: ci[k] for k in ("E", "alpha", "beta")}
    if samples is not None and len(samples):
        with np.errstate(all="ignore"):
            terms = np.column_stack(
                [
                    samples[:, 1] * np.exp(-samples[:, 3] * mean_log_N),
                    samples[:, 2] * np.exp(-samples[:, 4] * mean_log_D),
                ]
            )
        out.update(percentile_ci(terms, CENTRED))
    return out


def fit_chinchilla(
    N, D, loss, *, bootstrap: int = 4000, seed: int = 0, grid: str | np.ndarray = "hoffmann", delta: float = HUBER_DELTA
) -> FitResult:
    """Fit L(N, D) = E + A/N^α + B/D^β; `bootstrap` resamples give 95% percentile intervals.

    N: parameters, D: training tokens, loss: final loss (all positive, same length).
    `grid`: "hoffmann" (4,500 starts), "small" (243 starts) or an (S, 5) array of (e, a, b, alpha, beta).
    `info` carries `n_starts`, `best_start_hits` (starts within 1e-9 of the best objective) and
    `bootstrap_converged` (fraction of resamples whose solve met its tolerance).
    """
    N, D, L = (np.asarray(v, float).ravel() for v in (N, D, loss))
    n = len(L)
    if not (len(N) == len(D) == n):
        return failed("chinchilla", NAMES, f"N, D and loss have different lengths ({len(N)}, {len(D)}, {n})", n)
    good = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    if good.sum() < 6:
        return failed(
            "chinchilla", NAMES, f"{good.sum()} usable points (positive, finite N, D, loss); need at least 6", n
        )
    N, D, L = N[good], D[good], L[good]
    n = len(L)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    if isinstance(grid, str):
        if grid not in ("hoffmann", "small"):
            raise UserError(f"grid must be 'hoffmann', 'small' or an (S, 5) array, got {grid!r}")
        starts = hoffmann_grid() if grid == "hoffmann" else small_grid()
    else:
        starts = np.asarray(grid, float).reshape(-1, 5)

    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        xs, fs, conv = _solve(starts, logN, logD, logL, None, delta, ftol=GRID_FTOL)
        fs = np.where(np.isfinite(fs), fs, np.inf)
        top = np.argsort(fs)[:POLISH]  # polish the best starts to full precision, then keep the best
        xs[top], fs[top], conv[top] = _solve(xs[top], logN, logD, logL, None, delta)
        t_grid = time.perf_counter() - t0
        fs = np.where(np.isfinite(fs), fs, np.inf)
        k = int(np.argmin(fs))
        theta, fbest = xs[k], float(fs[k])
        if not np.isfinite(fbest):
            return failed("chinchilla", NAMES, "every start diverged", n)
        hits = int(np.sum(fs <= fbest + 1e-9 * max(abs(fbest), 1e-12)))
        samples = None
        boot_conv = float("nan")
        if bootstrap > 0:
            W = bootstrap_weights(n, bootstrap, seed)
            bx, _, bconv = _solve(np.repeat(theta[None], bootstrap, axis=0), logN, logD, logL, W, delta)
            samples = to_params(bx)
            boot_conv = float(bconv.mean())
        t_boot = time.perf_counter() - t0 - t_grid
        t1 = np.exp(theta[1] - theta[3] * logN) + np.exp(theta[2] - theta[4] * logD) + np.exp(theta[0])
        resid = logL - np.log(t1)

    params = dict(zip(NAMES, (float(v) for v in to_params(theta[None])[0])))
    warns = diagnose(params, None, None, len(np.unique(N)), 3, "model sizes N")
    lo, hi = EXPONENT_BOUNDS
    warns += [
        f"{k}={params[k]:.4g} lies outside the plausible range [{lo:g}, {hi:g}] (the solve is unconstrained)"
        for k in ("alpha", "beta")
        if not lo <= params[k] <= hi
    ]
    warns += diagnose(params, None, None, len(np.unique(D)), 3, "token counts D")
    if samples is not None:
        # Correlations are judged with each amplitude taken at the centre of the data (A/N̄^α, B/D̄^β):
        # log A and α are always nearly collinear merely because log N is far from 0.
        mN, mD = logN.mean(), logD.mean()
        with np.errstate(divide="ignore", invalid="ignore"):  # E -> 0 in a resample: log E = -inf, judged below
            view = np.column_stack(
                [
                    np.log(samples[:, 0]),
                    np.log(samples[:, 1]) - samples[:, 3] * mN,
                    np.log(samples[:, 2]) - samples[:, 4] * mD,
                    samples[:, 3],
                    samples[:, 4],
                ]
            )
        warns += diagnose(
            dict(zip(("log E", "log A/N̄^α", "log B/D̄^β", "alpha", "beta"), view[0])), None, view, 10**9, 0
        )
        if boot_conv < 0.95:
            warns.append(f"only {boot_conv:.0%} of bootstrap refits converged")
    ci = percentile_ci(samples, NAMES)
    judged = judged_intervals(ci, samples, logN.mean(), logD.mean())
    warns += wide_intervals(judged)
    success = bool(conv[k]) or hits > 1
    msg = f"best of {len(starts)} starts (objective {fbest:.6g}, reached by {hits} starts)"
    if not success:
        msg = "the best start did not converge; " + msg
    if warns:
        msg += "; ill-determined: " + "; ".join(warns)
    return FitResult(
        law="chinchilla",
        params=params,
        ci=ci,
        residuals=resid,
        success=success,
        message=msg,
        n_points=n,
        warnings=warns,
        samples=samples,
        objective=fbest,
        info={
            "n_starts": int(len(starts)),
            "best_start_hits": hits,
            "bootstrap_converged": boot_conv,
            "huber_delta": delta,
            "judged_ci95": {k: judged[k] for k in CENTRED if k in judged},  # the amplitudes at the data's centre
            "seconds_grid": t_grid,
            "seconds_bootstrap": t_boot,
        },
    )
