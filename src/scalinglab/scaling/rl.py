"""RL compute–performance curve: a sigmoid in log-compute.

R(C) = R0 + (A − R0) / (1 + (C_mid/C)^B)   (Khatri et al. 2025, "The Art of Scaling Reinforcement
Learning Compute for LLMs", eq. 1): A is the asymptotic reward/accuracy, B the efficiency
(steepness), C_mid the compute at which half the gain A − R0 is reached, R0 the starting point.

We fit (R0, A, log C_mid, B) by least squares; when every y is a fraction in [0, 1], R0 and A are
kept in [0, 1] so a noisy curve cannot promise an accuracy above 100%. With few noisy points the
asymptote and the midpoint trade off against each other; `FitResult.warnings` says so.
Run: `scalinglab fit sigmoid DATA.csv --x compute --y accuracy --json`.
"""

from __future__ import annotations

import numpy as np

from scalinglab.scaling.fit import FitResult, failed, fit_curve


def fit_sigmoid(C, R, *, bootstrap: int = 500, seed: int = 0) -> FitResult:
    """Fit R(C); C > 0 (compute), R the metric (reward, accuracy)."""
    names = ("R0", "A", "C_mid", "B")
    C, R = np.asarray(C, float).ravel(), np.asarray(R, float).ravel()
    if len(C) != len(R):
        return failed("sigmoid", names, f"x and y have different lengths ({len(C)}, {len(R)})", len(R))
    ok = np.isfinite(C) & np.isfinite(R) & (C > 0)
    C, R = C[ok], R[ok]
    if len(R) < 5:
        return failed("sigmoid", names, f"{len(R)} usable points for 4 parameters; need at least 5", len(R))
    lc = np.log(C)
    span = max(float(R.max() - R.min()), 1e-6)
    frac = bool(np.all((R >= 0) & (R <= 1)))
    lo_r, hi_r = (0.0, 1.0) if frac else (float(R.min()) - 2 * span, float(R.max()) + 2 * span)
    bounds = {"R0": (lo_r, hi_r), "A": (lo_r, hi_r), "log C_mid": (lc.min() - 10, lc.max() + 10), "B": (0.01, 10.0)}
    r_lo, r_hi = R[np.argmin(C)], R[np.argmax(C)]
    starts = [
        (r_lo, min(r_hi + s * span, hi_r), m, b)
        for s in (0.0, 0.5)
        for m in np.quantile(lc, [0.25, 0.5, 0.75])
        for b in (0.3, 1.0)
    ]

    def model(th, x):
        return th[0] + (th[1] - th[0]) / (1.0 + np.exp(th[3] * (th[2] - np.log(x))))

    def to_params(th):
        return {"R0": float(th[0]), "A": float(th[1]), "C_mid": float(np.exp(th[2])), "B": float(th[3])}

    def corr_view(s):
        return ("R0", "A", "log C_mid", "B"), np.column_stack([s[:, 0], s[:, 1], np.log(s[:, 2]), s[:, 3]])

    return fit_curve(
        "sigmoid",
        names,
        model,
        C,
        R,
        starts,
        bounds,
        bootstrap=bootstrap,
        seed=seed,
        to_params=to_params,
        corr_view=corr_view,
        distinct_what="compute values",
    )
