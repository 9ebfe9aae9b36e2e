"""The data wall: what repeated tokens are worth (Muennighoff et al. 2023, arXiv:2305.16264).

A model trained for D tokens on only U_D distinct ones has seen R_D = D / U_D − 1 repetitions.
Muennighoff et al. model repeated data as less valuable fresh data, the effective data

    D' = U_D + U_D · R_D* · (1 − exp(−R_D / R_D*)),

so the first repetitions are worth almost as much as new tokens and the value of one more decays
with scale R_D* (the paper fits R_D* = 15.4 on its runs); D' never exceeds U_D · (1 + R_D*). The
loss is Chinchilla's form with D' in place of D.

Our variant, and why. The paper fits L(N', D') = E + A/N'^α + B/D'^β on hundreds of runs of
many sizes, with a matching excess-parameter term R_N*. A CPU ladder has one or two sizes, so
E + A/N^α cannot be split into E, A and α: it is one offset E_N per size. We fit

    L(N, D, U) = E_N + B / D'(D, U)^β        (E_N per size; B, β, R_D* shared)

in log space (least squares on log L, as Hoffmann et al.'s Huber in log space, but with
residuals far above its δ), from a small grid of starts. The fresh rungs (U = D, R_D = 0) pin
E_N, B and β; the repeated rungs pin R_D*. R_N* is not fitted (every size here sees the same
data, so nothing constrains it).

Intervals: a wild bootstrap (each rung's fitted log-loss plus its own residual times a random
sign, the residual divided by 1 − its leverage as in HC3, refitted from the full-data optimum;
Wu 1986, Davidson & Flachaire 2008).
A case bootstrap would leave resamples with no repeated rung at all, which say nothing about
R_D*. The plain residual bootstrap (`resample="residual"`: residuals drawn from the whole pool)
assumes one noise level everywhere, and the data wall's is not: one run's loss scatters by up to
15% between seeds in the 300-step rungs that leave the early plateau and by about 1% in the
5,000-step rungs that pin R_D* (docs/scaling.md). Pooled, the short rungs' residuals land on the
long ones and widen R_D*'s interval to its box; the wild bootstrap keeps each residual where it
was measured (tests/test_scaling_datawall.py checks its coverage on synthetic ladders with and
without such noise). R_D* is searched in [0.01, 10^4]; an interval that runs into that box, or
that starts 5x past the largest repetition count, says the data do not pin it (a wall far past
the data, or none at all), and is flagged, not hidden.

`worth(fit, epochs)` gives D'/D, the fitted value of a repeated token relative to a fresh one,
and `fresh_equivalent(fit, N, loss)` inverts the fitted fresh-data curve: how many fresh tokens
would have reached a measured loss. Torch-free, like all of `scaling/`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from scalinglab.scaling.fit import FitResult, failed, percentile_ci

R_BOUNDS = (0.01, 1e4)  # search box of R_D*
BETA_BOUNDS = (0.01, 3.0)
PUBLISHED_R_D = 15.4  # Muennighoff et al. 2023, fitted on their runs


def effective_data(D, U, r_star: float) -> np.ndarray:
    """D' = U + U·R*·(1 − exp(−R/R*)) with R = D/U − 1 (clipped at 0: a partial first epoch repeats nothing)."""
    D, U = np.asarray(D, float), np.asarray(U, float)
    R = np.clip(D / U - 1.0, 0.0, None)
    return U + U * r_star * -np.expm1(-R / r_star)


def datawall_loss(D, U, E, B: float, beta: float, r_star: float) -> np.ndarray:
    """E + B / D'^β (E: the size's offset E_N, scalar or per point)."""
    return np.asarray(E, float) + B / effective_data(D, U, r_star) ** beta


@dataclass
class DataWallFit(FitResult):
    """FitResult with params E@N=<N> (one per size), B, beta and R_D*; `sizes` in sorted order."""

    sizes: tuple[float, ...] = ()

    def offset(self, N, params: dict | None = None) -> np.ndarray:
        p = params or self.params
        return np.array([p[_ename(n)] for n in np.atleast_1d(N)], float)

    def predict(self, N, D, U) -> np.ndarray:  # type: ignore[override]
        p = self.params
        return datawall_loss(D, U, self.offset(N), p["B"], p["beta"], p["R_D*"])

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["sizes"] = list(self.sizes)
        return out


def _ename(N: float) -> str:
    return f"E@N={int(N)}"


RESAMPLE = ("wild", "residual")
# an R_D* interval whose lower end lies this far past the largest R_D measured is a wall beyond the
# data (at R_D = R_D*/5 a repeated token is still worth 90% of a fresh one), not a measurement of it
FAR_PAST = 5.0


def fit_datawall(N, D, U, loss, *, bootstrap: int = 1000, seed: int = 0, resample: str = "wild") -> DataWallFit:
    """Fit L = E_N + B/D'^β with D' = U + U·R*·(1 − e^(−R/R*)); 95% wild-bootstrap intervals.

    N: the size of each rung (any label; one offset per distinct value), D: tokens trained,
    U: distinct tokens among them (U = D for fresh data), loss: held-out loss. Needs at least
    one fresh-or-1-epoch and one repeated rung per fit, and more rungs than parameters.
    resample: "wild" (each residual stays on its rung, random sign) or "residual" (drawn from the pool).
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample={resample!r}: one of {', '.join(RESAMPLE)}")
    N, D, U, L = (np.asarray(v, float).ravel() for v in (N, D, U, loss))
    n = len(L)
    sizes = tuple(float(s) for s in np.unique(N)) if n else ()
    names = [*(_ename(s) for s in sizes), "B", "beta", "R_D*"]
    if not (len(N) == len(D) == len(U) == n):
        return _failed(names, f"N, D, U and loss have different lengths ({len(N)}, {len(D)}, {len(U)}, {n})", n, sizes)
    if not np.all(np.isfinite(np.stack([N, D, U, L]))) or np.any(D <= 0) or np.any(U <= 0) or np.any(L <= 0):
        return _failed(names, "every N, D, U and loss must be positive and finite", n, sizes)
    R = D / U - 1.0
    k = len(sizes)
    p = k + 3
    if n <= p:
        return _failed(names, f"{n} rungs for {p} parameters; need more rungs than parameters", n, sizes)
    if not np.any(R > 0.5):
        return _failed(names, "no rung repeats its data (every D <= 1.5·U): nothing pins R_D*", n, sizes)
    if len(np.unique(D[R < 0.01])) < 2:
        return _failed(
            names, "fewer than two distinct D among the fresh (U = D) rungs: nothing pins B and beta", n, sizes
        )
    idx = np.searchsorted(np.array(sizes), N)
    logL = np.log(L)
    lo = np.array([*([0.0] * k), -30.0, BETA_BOUNDS[0], math.log(R_BOUNDS[0])])
    hi = np.array([*(L[idx == j].min() * (1 - 1e-9) for j in range(k)), 60.0, BETA_BOUNDS[1], math.log(R_BOUNDS[1])])

    def model(th: np.ndarray) -> np.ndarray:
        return np.log(datawall_loss(D, U, th[:k][idx], math.exp(th[k]), th[k + 1], math.exp(th[k + 2])))

    def solve(y: np.ndarray, th0: np.ndarray):
        return least_squares(
            lambda th: model(th) - y,
            np.clip(th0, lo + 1e-12, hi - 1e-12),
            bounds=(lo, hi),
            x_scale="jac",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
            max_nfev=4000,
        )

    with np.errstate(all="ignore"):
        best = None
        for e_frac in (0.3, 0.6, 0.85):
            for beta in (0.2, 0.5, 1.0):
                for r0 in (1.0, 5.0, 20.0, 200.0):
                    E0 = hi[:k] * e_frac
                    # B from the largest fresh rung's excess loss at this beta
                    j = int(np.argmax(np.where(R < 0.01, D, -np.inf)))
                    logB = math.log(max(L[j] - E0[idx[j]], 1e-6)) + beta * math.log(D[j])
                    try:
                        r = solve(logL, np.array([*E0, logB, beta, math.log(r0)]))
                    except (ValueError, FloatingPointError):
                        continue
                    if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
                        best = r
        if best is None:
            return _failed(names, "no start gave a finite objective", n, sizes)
        theta = best.x
        fitted = model(theta)
        resid = logL - fitted
        if resample == "wild":  # HC3-style: each residual divided by 1 - its leverage
            J = best.jac
            h = np.clip(np.einsum("ij,ji->i", J, np.linalg.pinv(J.T @ J) @ J.T), 0.0, 0.99)
            resid_boot = resid / (1.0 - h)
        else:  # pooled residuals, rescaled for the p fitted parameters
            resid_boot = resid * math.sqrt(n / (n - p))
        samples = None
        if bootstrap > 0:
            rng = np.random.default_rng(seed)
            rows = []
            for _ in range(bootstrap):
                noise = (
                    resid_boot * rng.choice((-1.0, 1.0), size=n)
                    if resample == "wild"
                    else rng.choice(resid_boot, size=n)
                )
                y = fitted + noise
                try:
                    th = solve(y, theta).x
                    rows.append(_params(th, k))
                except (ValueError, FloatingPointError):
                    rows.append([np.nan] * p)
            samples = np.array(rows)
    params = dict(zip(names, _params(theta, k)))
    ci = percentile_ci(samples, names)
    warns = []
    for key, (blo, bhi), log in (("R_D*", R_BOUNDS, True), ("beta", BETA_BOUNDS, False)):
        v, (clo, chi) = params[key], ci[key]
        near = (
            (lambda a, b: abs(math.log(a) - math.log(b)) < 0.01)
            if log
            else (lambda a, b: abs(a - b) < 1e-3 * (bhi - blo))
        )
        if near(v, blo) or near(v, bhi):
            warns.append(f"{key}={v:.4g} is at the edge of its search box [{blo:g}, {bhi:g}]")
        elif samples is not None and (near(clo, blo) or near(chi, bhi)):
            warns.append(
                f"the 95% interval of {key} ({clo:.3g}, {chi:.3g}) runs into its search box [{blo:g}, {bhi:g}]: "
                "the data do not pin it"
            )
    r_max = float(R.max())
    if samples is not None and not any(map(is_r_star_warning, warns)):
        if ci["R_D*"][0] > FAR_PAST * r_max:
            warns.append(
                f"R_D*'s 95% interval ({ci['R_D*'][0]:.3g}, {ci['R_D*'][1]:.3g}) starts {FAR_PAST:g}x past the largest "
                f"repetition count ({r_max:.3g}): repetition costs almost nothing in the data, the wall is beyond them"
            )
    if samples is not None and np.mean(np.all(np.isfinite(samples), axis=1)) < 0.9:
        warns.append("more than 10% of bootstrap refits failed")
    msg = "converged" if best.success else f"optimizer: {best.message}"
    if warns:
        msg += "; ill-determined: " + "; ".join(warns)
    return DataWallFit(
        law="datawall",
        params=params,
        ci=ci,
        residuals=resid,
        success=bool(best.success),
        message=msg,
        n_points=n,
        warnings=warns,
        samples=samples,
        objective=float(best.cost),
        info={"residual_sd": float(np.sqrt(np.sum(resid**2) / (n - p))), "resample": resample},
        sizes=sizes,
    )


def is_r_star_warning(w: str) -> bool:
    """Whether a fit warning says R_D* is not pinned (at its box's edge, its interval in the box, or far past the data)."""
    return w.startswith("R_D*") or "of R_D*" in w


def _params(th: np.ndarray, k: int) -> list[float]:
    return [*(float(v) for v in th[:k]), math.exp(th[k]), float(th[k + 1]), math.exp(th[k + 2])]


def _failed(names, message: str, n: int, sizes) -> DataWallFit:
    f = failed("datawall", names, message, n)
    return DataWallFit(
        **{k: getattr(f, k) for k in ("law", "params", "ci", "residuals", "success", "message", "n_points")},
        sizes=tuple(sizes),
    )


def worth(fit: DataWallFit, epochs) -> dict:
    """D'/D at each epoch count (the fitted value of a repeated token relative to a fresh one), with 95% bands."""
    e = np.asarray(epochs, float)

    def frac(r_star):
        return effective_data(e, 1.0, r_star) / e

    out = {"epochs": e.tolist(), "worth": frac(fit.params["R_D*"]).tolist()}
    if fit.samples is not None:
        rs = fit.samples[:, list(fit.params).index("R_D*")]
        rs = rs[np.isfinite(rs)]
        band = np.array([frac(r) for r in rs])
        out["ci95"] = np.percentile(band, [2.5, 97.5], axis=0).T.tolist()
    return out


def fresh_equivalent(fit: DataWallFit, N, loss) -> dict:
    """Fresh tokens that the fitted fresh-data curve needs to reach `loss` at size N, with a 95% band.

    Inverts E_N + B/D^β = loss: D = (B / (loss − E_N))^(1/β); infinite when loss <= E_N.
    """
    names = list(fit.params)

    def inv(p: dict) -> float:
        gap = float(loss) - p[_ename(N)]
        return float((p["B"] / gap) ** (1.0 / p["beta"])) if gap > 0 else math.inf

    out = {"tokens": inv(fit.params)}
    if fit.samples is not None:
        vals = np.sort([inv(dict(zip(names, row))) for row in fit.samples if np.all(np.isfinite(row))])
        # order statistics, not interpolation: a resample whose offset lies above the loss gives +inf
        out["ci95"] = (
            [float(vals[int(q * (len(vals) - 1))]) for q in (0.025, 0.975)] if len(vals) else [math.nan, math.nan]
        )
    return out
