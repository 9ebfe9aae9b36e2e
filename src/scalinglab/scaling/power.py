"""Power laws y = a·x^b and y = a·x^b + c, e.g. IsoFLOP optima N* ∝ C^a.

- `fit_power`: ordinary least squares of log y on log x (the method Porian et al. 2024 use for
  N*(C), D*(C): `LinearRegression` on logs, unweighted). The bootstrap is exact and vectorised:
  each resample is a weighted least-squares problem solved in closed form, all at once.
- `fit_offset_power`: y = a·x^b + c by nonlinear least squares (`fit.fit_curve`), fitting log a.

Run: `scalinglab fit power DATA.csv --x flops --y n_star --json`.
"""

from __future__ import annotations

import numpy as np

from scalinglab.scaling.fit import FitResult, diagnose, failed, fit_curve, percentile_ci


def _wls_loglog(lx: np.ndarray, ly: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form weighted least squares of ly on lx, one fit per row of W (R, n)."""
    sw, sx, sy = W.sum(1), W @ lx, W @ ly
    sxx, sxy = W @ (lx * lx), W @ (lx * ly)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
        loga = (sy - b * sx) / sw
    return loga, b


def fit_power(x, y, *, bootstrap: int = 2000, seed: int = 0) -> FitResult:
    """y = a·x^b by least squares in log-log space; percentile-bootstrap intervals."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    names = ("a", "b")
    if len(x) != len(y):
        return failed("power", names, f"x and y have different lengths ({len(x)}, {len(y)})", len(y))
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    n = len(y)
    if n < 2 or len(np.unique(x)) < 2:
        return failed("power", names, f"{n} usable points with {len(np.unique(x))} distinct positive x; need 2", n)
    lx, ly = np.log(x), np.log(y)
    loga, b = (v[0] for v in _wls_loglog(lx, ly, np.ones((1, n))))
    samples = None
    warns: list[str] = []
    if bootstrap > 0:
        W = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=bootstrap).astype(float)
        bl, bb = _wls_loglog(lx, ly, W)
        good = np.isfinite(bb)  # a resample that drew a single distinct x has no slope
        samples = np.column_stack([np.exp(bl), bb])[good]
        if good.mean() < 0.9:
            warns.append(f"{(~good).sum()} of {bootstrap} resamples had a single distinct x")
    warns += diagnose({}, None, None, len(np.unique(x)), 3, "x values")
    resid = ly - (loga + b * lx)
    r2 = 1 - resid.var() / ly.var() if ly.var() > 0 else float("nan")
    msg = "closed-form least squares in log-log space"
    if warns:
        msg += "; ill-determined: " + "; ".join(warns)
    return FitResult(
        law="power",
        params={"a": float(np.exp(loga)), "b": float(b)},
        ci=percentile_ci(samples, names),
        residuals=resid,
        success=True,
        message=msg,
        n_points=n,
        warnings=warns,
        samples=samples,
        objective=float(resid @ resid),
        info={"r2": float(r2)},
    )


def fit_offset_power(x, y, *, bootstrap: int = 200, seed: int = 0) -> FitResult:
    """y = a·x^b + c (any sign of b); starts from the plain power-law fit and a grid over c."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    names = ("a", "b", "c")
    if len(y) < 4:
        return failed("offset_power", names, f"{len(y)} usable points for 3 parameters; need at least 4", len(y))
    lx = np.log(x)
    scale = float(np.max(np.abs(y))) or 1.0

    def model(th, xs):  # th = (log a, b, c): a > 0 keeps the fit identifiable (sign absorbed by c's side)
        return np.exp(th[0] + th[1] * np.log(xs)) + th[2]

    starts = []
    for c0 in (0.0, 0.5 * y.min(), 0.9 * y.min(), y.min() - 0.1 * abs(y.min())):
        yy = y - c0
        if np.all(yy > 0):
            b0, la0 = np.polyfit(lx, np.log(yy), 1)
            starts.append((la0, b0, c0))
    starts = starts or [(np.log(scale), -0.5, 0.0)]
    bounds = {"log a": (-200.0, 200.0), "b": (-5.0, 5.0), "c": (-10 * scale, 10 * scale)}
    xc = float(np.exp(lx.mean()))

    def corr_view(s):  # amplitude at the data's centre, not at x = 1
        return ("a·xc^b", "b", "c"), np.column_stack([np.log(s[:, 0]) + s[:, 1] * np.log(xc), s[:, 1], s[:, 2]])

    return fit_curve(
        "offset_power",
        names,
        model,
        x,
        y,
        starts,
        bounds,
        bootstrap=bootstrap,
        seed=seed,
        to_params=lambda th: {"a": float(np.exp(th[0])), "b": float(th[1]), "c": float(th[2])},
        corr_view=corr_view,
    )
