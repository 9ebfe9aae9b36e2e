"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code", eq. 1).

From n ≥ k samples of which c are correct, the probability that at least one of k samples
drawn without replacement is correct is

    pass@k = 1 − C(n−c, k) / C(n, k) = 1 − ∏_{i=n−c+1}^{n} (1 − k/i)

The product form avoids the huge binomials (C(200, 100) overflows a float) and is the one
computed here. It is torch-free and pure.
"""

from __future__ import annotations

from typing import Sequence

from scalinglab.errors import UserError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with `c` correct out of `n` samples."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise UserError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """pass@k averaged over problems (n and c per problem)."""
    if not ns:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in zip(ns, cs)) / len(ns)


def coverage_curve(ns: Sequence[int], cs: Sequence[int], *, bootstrap: int = 1000, seed: int = 0) -> dict:
    """pass@k at k = 1, 2, 4, ... up to the fewest samples any problem has, with 95% intervals.

    The interval is a percentile bootstrap over problems (the unit that was sampled): each
    resample redraws the problem set with replacement and recomputes mean pass@k at every k, so
    the k values of one resample move together. Returns `{"k", "pass_at_k", "ci95", "problems"}`.
    """
    import numpy as np

    if not ns:
        raise UserError("coverage needs at least one problem")
    k_max = min(ns)
    ks = sorted({2**i for i in range(k_max.bit_length()) if 2**i <= k_max} | {k_max})
    per = np.array([[pass_at_k(n, c, k) for k in ks] for n, c in zip(ns, cs)])  # (problems, k)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per), size=(bootstrap, len(per)))
    boot = per[idx].mean(axis=1)  # (bootstrap, k)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return {
        "k": ks,
        "pass_at_k": per.mean(axis=0).tolist(),
        "ci95": [[float(a), float(b)] for a, b in zip(lo, hi)],
        "problems": len(per),
    }
