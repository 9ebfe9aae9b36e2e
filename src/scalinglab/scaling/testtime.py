"""Test-time compute laws: repeated-sampling coverage and majority-vote accuracy against k.

- `fit_coverage`: c(k) = exp(a·k^b) with a < 0, b < 0 (Brown et al. 2024, "Large Language
  Monkeys", Sec. 3: coverage, i.e. pass@k with a perfect verifier, follows an exponentiated
  power law). Least squares on c itself, started from the linearisation
  log(−log c) = log(−a) + b·log k on points with 0 < c < 1.
- `fit_majority_vote`: acc(k) = A∞ − (A∞ − A1)·k^(−b), 0 ≤ A1, A∞ ≤ 1, b ≥ 0 — a saturating form
  (our choice): majority vote plateaus below 1 because a wrong answer that is the model's most
  common one stays the vote's answer however many samples are drawn.

k may be any compute axis (samples, tokens); both fits keep their predictions inside [0, 1].
Run: `scalinglab fit coverage DATA.csv --x k --y coverage --json`.
"""

from __future__ import annotations

import numpy as np

from scalinglab.scaling.fit import FitResult, failed, fit_curve


def _clean(x, y, law, names):
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if len(x) != len(y):
        return None, None, failed(law, names, f"x and y have different lengths ({len(x)}, {len(y)})", len(y))
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    if np.any((y < 0) | (y > 1)):
        return None, None, failed(law, names, "y must be a fraction in [0, 1] (accuracy or coverage)", len(y))
    if len(y) < len(names) + 1:
        return (
            None,
            None,
            failed(law, names, f"{len(y)} usable points for {len(names)} parameters; need {len(names) + 1}", len(y)),
        )
    return x, y, None


def fit_coverage(k, c, *, bootstrap: int = 500, seed: int = 0) -> FitResult:
    """c(k) = exp(a·k^b): a = log c(1) < 0, b < 0 sets how fast misses vanish with more samples."""
    names = ("a", "b")
    k, c, bad = _clean(k, c, "coverage", names)
    if bad is not None:
        return bad
    mid = (c > 0) & (c < 1)
    starts = [(-1.0, -0.3), (-3.0, -0.1), (-0.3, -1.0)]
    if mid.sum() >= 2 and len(np.unique(k[mid])) >= 2:
        b0, la0 = np.polyfit(np.log(k[mid]), np.log(-np.log(c[mid])), 1)
        starts.insert(0, (-np.exp(la0), min(b0, -1e-3)))
    bounds = {"a": (-50.0, -1e-9), "b": (-5.0, 0.0)}
    lk = float(np.mean(np.log(k)))

    def corr_view(s):  # log(−a) at the centre of the data, not at k = 1
        return ("a·kc^b", "b"), np.column_stack([np.log(-s[:, 0]) + s[:, 1] * lk, s[:, 1]])

    return fit_curve(
        "coverage",
        names,
        lambda th, x: np.exp(th[0] * x ** th[1]),
        k,
        c,
        starts,
        bounds,
        bootstrap=bootstrap,
        seed=seed,
        corr_view=corr_view,
        distinct_what="k values",
    )


def fit_majority_vote(k, acc, *, bootstrap: int = 500, seed: int = 0) -> FitResult:
    """acc(k) = A∞ − (A∞ − A1)·k^(−b), fractions in [0, 1], b ≥ 0."""
    names = ("A_inf", "A1", "b")
    k, acc, bad = _clean(k, acc, "majority_vote", names)
    if bad is not None:
        return bad
    first = acc[np.argmin(k)]
    starts = [(min(acc.max() + 0.05, 1.0), first, b) for b in (0.1, 0.5, 1.0)] + [(1.0, first, 0.05)]
    bounds = {"A_inf": (0.0, 1.0), "A1": (0.0, 1.0), "b": (0.0, 5.0)}
    return fit_curve(
        "majority_vote",
        names,
        lambda th, x: th[0] - (th[0] - th[1]) * x ** (-th[2]),
        k,
        acc,
        starts,
        bounds,
        bootstrap=bootstrap,
        seed=seed,
        distinct_what="k values",
    )
