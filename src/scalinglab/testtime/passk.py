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
