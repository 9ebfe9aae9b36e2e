"""`FitResult`, the checks that flag an ill-determined fit, and a generic bootstrapped curve fit.

Shaped like statsmodels `Results` / scipy `OptimizeResult`: a fit returns a `FitResult` with
`params`, `ci` (95% percentile-bootstrap intervals), `residuals`, `success` and `message`, plus
`.predict()` and `.summary()`. A fit that fails is reported (`success=False`), never raised.

Ill-determined fits are flagged in `warnings` (and the message), not hidden:
- a parameter pinned at a bound of its search box (an exponent at 0 or at its cap);
- two parameters whose bootstrap samples are almost perfectly correlated (|r| > `CORR_LIMIT`),
  i.e. the data only pins a combination of them;
- too few distinct x values (sizes) for the number of parameters;
- bootstrap intervals that are unbounded or span orders of magnitude.

`fit_curve` (multi-start `scipy.optimize.least_squares`, then a case-resampling bootstrap warm-started
from the optimum) serves the small laws (power, coverage, majority vote, sigmoid, Kaplan); the
Chinchilla fit has its own vectorised solver in `chinchilla.py`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import least_squares

from scalinglab.scaling import laws

CORR_LIMIT = 0.999  # |corr| of bootstrap samples above which two parameters are "not separately determined"
AT_BOUND_RTOL = 1e-3  # a parameter within this fraction of its box width from a bound is "at the bound"

PREDICTORS: dict[str, Callable[..., Any]] = {
    "chinchilla": laws.chinchilla,
    "kaplan": laws.kaplan,
    "power": laws.power,
    "offset_power": laws.offset_power,
    "coverage": laws.coverage,
    "majority_vote": laws.majority_vote,
    "sigmoid": laws.sigmoid,
}


@dataclass
class FitResult:
    """The outcome of fitting one law; `success=False` carries the reason in `message`."""

    law: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]  # 95% percentile bootstrap interval per parameter (NaN if no bootstrap)
    residuals: np.ndarray  # data minus prediction, in the space the fit minimised (log space for Chinchilla)
    success: bool
    message: str
    n_points: int = 0
    warnings: list[str] = field(default_factory=list)
    samples: np.ndarray | None = None  # (B, n_params) bootstrap estimates, columns in `params` order
    objective: float = float("nan")
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ill_determined(self) -> bool:
        return bool(self.warnings)

    @property
    def se(self) -> dict[str, float]:
        """Bootstrap standard error per parameter (NaN without a bootstrap)."""
        if self.samples is None or len(self.samples) < 2:
            return {k: float("nan") for k in self.params}
        sd = np.nanstd(self.samples, axis=0, ddof=1)
        return {k: float(v) for k, v in zip(self.params, sd)}

    def predict(self, *x: Any) -> np.ndarray:
        """The fitted law at new inputs: `fit.predict(N, D)` or `fit.predict(x)`."""
        return PREDICTORS[self.law](*x, **self.params)

    def sample_params(self) -> list[dict[str, float]]:
        """The bootstrap estimates as a list of param dicts (empty without a bootstrap)."""
        if self.samples is None:
            return []
        return [dict(zip(self.params, row)) for row in self.samples]

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "params": self.params,
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "se": self.se,
            "success": self.success,
            "message": self.message,
            "n_points": self.n_points,
            "warnings": self.warnings,
            "objective": self.objective,
            "n_bootstrap": 0 if self.samples is None else int(len(self.samples)),
            **self.info,
        }

    def summary(self) -> str:
        lines = [
            f"{self.law} fit: {'ok' if self.success else 'FAILED'} ({self.n_points} points) - {self.message}",
            f"{'param':>8} {'estimate':>12} {'2.5%':>12} {'97.5%':>12} {'se':>10}",
        ]
        se = self.se
        for k, v in self.params.items():
            lo, hi = self.ci.get(k, (float("nan"), float("nan")))
            lines.append(f"{k:>8} {v:12.5g} {lo:12.5g} {hi:12.5g} {se[k]:10.3g}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def failed(law: str, names: Sequence[str], message: str, n_points: int = 0) -> FitResult:
    nan = float("nan")
    return FitResult(
        law=law,
        params={k: nan for k in names},
        ci={k: (nan, nan) for k in names},
        residuals=np.array([]),
        success=False,
        message=message,
        n_points=n_points,
    )


def percentile_ci(
    samples: np.ndarray | None, names: Sequence[str], level: float = 0.95
) -> dict[str, tuple[float, float]]:
    if samples is None or len(samples) == 0:
        return {k: (float("nan"), float("nan")) for k in names}
    lo, hi = np.nanpercentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return {k: (float(a), float(b)) for k, a, b in zip(names, lo, hi)}


def diagnose(
    params: dict[str, float],
    bounds: dict[str, tuple[float, float]] | None,
    samples: np.ndarray | None,
    n_distinct: int,
    min_distinct: int,
    distinct_what: str = "x values",
) -> list[str]:
    """The list of reasons a fit is ill-determined (empty when it looks well-posed)."""
    out: list[str] = []
    if n_distinct < min_distinct:
        out.append(f"only {n_distinct} distinct {distinct_what}; at least {min_distinct} are needed to pin this law")
    for k, (lo, hi) in (bounds or {}).items():
        v = params.get(k, float("nan"))
        width = hi - lo if np.isfinite(hi - lo) else max(abs(v), 1.0)
        if np.isfinite(lo) and v - lo <= AT_BOUND_RTOL * width:
            out.append(f"{k}={v:.4g} is at its lower bound {lo:g}")
        if np.isfinite(hi) and hi - v <= AT_BOUND_RTOL * width:
            out.append(f"{k}={v:.4g} is at its upper bound {hi:g}")
    if samples is not None and len(samples) >= 10:
        ok = np.all(np.isfinite(samples), axis=1)
        s = samples[ok]
        if len(s) >= 10:
            sd = s.std(axis=0)
            names = list(params)
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.corrcoef(s, rowvar=False) if s.shape[1] > 1 else np.ones((1, 1))
            for i, j in itertools.combinations(range(len(names)), 2):
                if sd[i] > 0 and sd[j] > 0 and abs(corr[i, j]) > CORR_LIMIT:
                    out.append(
                        f"{names[i]} and {names[j]} are almost perfectly correlated (r={corr[i, j]:+.4f}): "
                        "the data pins only a combination of them"
                    )
        if ok.mean() < 0.9:
            out.append(f"{(~ok).sum()} of {len(samples)} bootstrap refits failed")
    return out


# A 95% interval wider than this ratio (hi/lo) says the data do not pin the parameter. Epoch AI's
# refit of Chinchilla's 240 runs has A in (124, 802) and alpha in (0.28, 0.40): ratios ~6 and ~1.4.
# The amplitudes are judged at the centre of the data (A/N̄^α, B/D̄^β: the losses the two terms
# contribute there, `chinchilla.judged_intervals`); a factor 10 leaves even their order of magnitude open.
WIDE_RATIO = {"E": 100.0, "A": 100.0, "B": 100.0, "alpha": 4.0, "beta": 4.0, "A/N̄^α": 10.0, "B/D̄^β": 10.0}


def wide_intervals(ci: dict[str, tuple[float, float]], ratio: dict[str, float] = WIDE_RATIO) -> list[str]:
    """Warnings for positive parameters whose bootstrap interval reaches 0 or spans orders of magnitude."""
    out = []
    for k, (lo, hi) in ci.items():
        if k not in ratio or not (np.isfinite(lo) and np.isfinite(hi)):
            continue  # not a positive parameter, or no bootstrap
        if lo <= 0 or hi / lo > ratio[k]:
            span = "reaches 0" if lo <= 0 else f"spans a factor {hi / lo:.3g}"
            out.append(f"the 95% interval of {k} ({lo:.3g}, {hi:.3g}) {span}: the data do not pin it")
    return out


def fit_curve(
    law: str,
    names: Sequence[str],
    model: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    starts: Sequence[Sequence[float]],
    bounds: dict[str, tuple[float, float]],
    *,
    bootstrap: int = 200,
    seed: int = 0,
    loss: str = "linear",
    f_scale: float = 1.0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    to_params: Callable[[np.ndarray], dict[str, float]] | None = None,
    min_distinct: int | None = None,
    distinct_what: str = "x values",
    corr_view: Callable[[np.ndarray], tuple[Sequence[str], np.ndarray]] | None = None,
) -> FitResult:
    """Least-squares fit of `model(theta, x) ≈ y` from several starts, keep the best, then bootstrap.

    `theta` lives in the optimiser's space (e.g. log-amplitudes); `to_params` maps it to the law's
    named parameters (defaults to zip(names, theta)). `transform` is applied to both model output
    and y before taking residuals (e.g. np.log to fit in log space). `bounds` are on theta.
    `corr_view(samples) -> (names, columns)` re-expresses bootstrap samples in coordinates where a
    high correlation really means "not separately determined" (e.g. a power law's amplitude taken at
    the centre of the data rather than at x = 1).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = len(y)
    to_params = to_params or (lambda th: {k: float(v) for k, v in zip(names, th)})
    tf = transform or (lambda v: v)
    ok = np.all(np.isfinite(np.atleast_2d(x.T).T.reshape(n, -1)), axis=1) & np.isfinite(y)
    if ok.sum() < len(names):
        return failed(law, names, f"{ok.sum()} usable points for {len(names)} parameters", n)
    lo = np.array([bounds[k][0] for k in bounds])
    hi = np.array([bounds[k][1] for k in bounds])

    def solve(xs, ys, th0):
        res = least_squares(
            lambda th: tf(model(th, xs)) - tf(ys),
            np.clip(th0, lo, hi),
            bounds=(lo, hi),
            loss=loss,
            f_scale=f_scale,
            x_scale="jac",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
            max_nfev=2000,
        )
        return res

    with np.errstate(all="ignore"):
        best = None
        for th0 in starts:
            try:
                r = solve(x, y, np.asarray(th0, float))
            except (ValueError, FloatingPointError):
                continue
            if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
                best = r
        if best is None:
            return failed(law, names, "no start gave a finite objective", n)
        theta = best.x
        rng = np.random.default_rng(seed)
        samples = theta_samples = None
        if bootstrap > 0:
            rows, thetas = [], []
            for _ in range(bootstrap):
                i = rng.integers(0, n, n)
                try:
                    th = solve(x[i], y[i], theta).x
                    rows.append(list(to_params(th).values()))
                    thetas.append(th)
                except (ValueError, FloatingPointError):
                    rows.append([np.nan] * len(names))
            samples = np.array(rows)
            theta_samples = np.array(thetas) if thetas else None
        resid = tf(y) - tf(model(theta, x))
    params = to_params(theta)
    # bounds in theta space name the optimiser's coordinates; report them on the matching params
    theta_named = dict(zip(bounds, theta))
    warns = diagnose(
        theta_named,
        bounds,
        None,
        len(np.unique(x if x.ndim == 1 else x[:, 0])),
        min_distinct or len(names) + 1,
        distinct_what,
    )
    if theta_samples is not None:
        # a 95% interval that runs into the search box means the data does not bound that parameter
        qlo, qhi = np.percentile(theta_samples, [2.5, 97.5], axis=0)
        for j, (k, (blo, bhi)) in enumerate(bounds.items()):
            tol = AT_BOUND_RTOL * (bhi - blo)
            if (qlo[j] - blo <= tol or bhi - qhi[j] <= tol) and not any(w.startswith(f"{k}=") for w in warns):
                warns.append(
                    f"the 95% interval of {k} runs into its bound [{blo:g}, {bhi:g}]: the data does not pin it"
                )
    if samples is not None and corr_view is not None:
        cn, cs = corr_view(samples)
        warns += diagnose(dict(zip(cn, cs[0])), None, cs, 10**9, 0)
    else:
        warns += diagnose(params, None, samples, 10**9, 0)
    msg = "converged" if best.success else f"optimizer: {best.message}"
    if warns:
        msg += "; ill-determined: " + "; ".join(warns)
    return FitResult(
        law=law,
        params=params,
        ci=percentile_ci(samples, names),
        residuals=resid,
        success=bool(best.success),
        message=msg,
        n_points=n,
        warnings=warns,
        samples=samples,
        objective=float(best.cost),
    )
