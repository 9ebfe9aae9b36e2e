"""Kaplan et al. 2020's joint law L(N, D) = [(Nc/N)^(α_N/α_D) + Dc/D]^α_D (their eq. 1.5).

Fitted like the Chinchilla law: in log space (log L̂ = α_D·log[(Nc/N)^(α_N/α_D) + Dc/D]), with a
Huber loss (δ = 1e-3, via `least_squares(loss="huber")`) from a small grid of starts including
Kaplan's published values (Nc = 8.8e13, Dc = 5.4e13, α_N = 0.076, α_D = 0.095); the bootstrap
refits resamples warm-started from the optimum. This form has no irreducible loss, which is why
Hoffmann et al. replaced it; it is here to compare the two on the same ladder.
Run: `scalinglab fit kaplan DATA.csv --json` (columns N, D, loss).
"""

from __future__ import annotations

import itertools

import numpy as np

from scalinglab.scaling.fit import FitResult, failed, fit_curve


def fit_kaplan(N, D, loss, *, bootstrap: int = 200, seed: int = 0, delta: float = 1e-3) -> FitResult:
    names = ("Nc", "Dc", "alpha_N", "alpha_D")
    N, D, L = (np.asarray(v, float).ravel() for v in (N, D, loss))
    if not (len(N) == len(D) == len(L)):
        return failed("kaplan", names, f"N, D and loss have different lengths ({len(N)}, {len(D)}, {len(L)})", len(L))
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[ok], D[ok], L[ok]
    if len(L) < 5:
        return failed("kaplan", names, f"{len(L)} usable points for 4 parameters; need at least 5", len(L))
    X = np.column_stack([np.log(N), np.log(D)])

    def model(th, x):  # th = (log Nc, log Dc, α_N, α_D); returns L̂ (fit compares logs)
        t1 = (th[2] / th[3]) * (th[0] - x[:, 0])
        t2 = th[1] - x[:, 1]
        return np.exp(th[3] * np.logaddexp(t1, t2))

    starts = [(np.log(8.8e13), np.log(5.4e13), 0.076, 0.095)]
    starts += list(itertools.product((25.0, 35.0), (25.0, 35.0), (0.05, 0.3), (0.05, 0.3)))
    bounds = {"log Nc": (0.0, 200.0), "log Dc": (0.0, 200.0), "alpha_N": (1e-4, 3.0), "alpha_D": (1e-4, 3.0)}

    def to_params(th):
        return {
            "Nc": float(np.exp(th[0])),
            "Dc": float(np.exp(th[1])),
            "alpha_N": float(th[2]),
            "alpha_D": float(th[3]),
        }

    def corr_view(s):
        return ("log Nc", "log Dc", "alpha_N", "alpha_D"), np.column_stack([np.log(s[:, :2]), s[:, 2:]])

    res = fit_curve(
        "kaplan",
        names,
        model,
        X,
        L,
        starts,
        bounds,
        bootstrap=bootstrap,
        seed=seed,
        loss="huber",
        f_scale=delta,
        transform=np.log,
        to_params=to_params,
        corr_view=corr_view,
        min_distinct=3,
        distinct_what="model sizes N",
    )
    return res
