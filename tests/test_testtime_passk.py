"""pass@k: hand values, brute force over all k-subsets, and stability at large n."""

import itertools
import math

import pytest

from scalinglab.errors import UserError
from scalinglab.testtime.passk import mean_pass_at_k, pass_at_k


def test_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c/n
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 4) == 1.0  # every 4-subset of 4 holds the correct one
    assert pass_at_k(6, 2, 5) == 1.0  # n - c < k


def test_brute_force_over_all_subsets():
    for n in range(1, 9):
        for c in range(n + 1):
            labels = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(labels, k))
                exact = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)


def test_large_n_is_stable():
    # C(200, 100) ~ 9e58: the binomial form needs big integers; the product form does not.
    exact = 1 - math.comb(197, 100) / math.comb(200, 100)
    assert pass_at_k(200, 3, 100) == pytest.approx(exact, rel=1e-12)
    assert 0.0 <= pass_at_k(10_000, 1, 1) == pytest.approx(1e-4)


def test_mean_and_bad_input():
    assert mean_pass_at_k([4, 4], [0, 2], 1) == pytest.approx(0.25)
    with pytest.raises(UserError):
        pass_at_k(4, 5, 1)
    with pytest.raises(UserError):
        pass_at_k(4, 1, 5)


def test_pure_modules_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, scalinglab.testtime.passk, scalinglab.testtime.vote; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_coverage_curve_by_hand():
    from scalinglab.testtime.passk import coverage_curve

    # three problems, 4 samples each, 0 / 2 / 4 correct
    cov = coverage_curve([4, 4, 4], [0, 2, 4], bootstrap=200)
    assert cov["k"] == [1, 2, 4]
    # pass@1 = (0 + 1/2 + 1)/3; pass@2 = (0 + (1 - 1/6) + 1)/3; pass@4 = (0 + 1 + 1)/3
    assert cov["pass_at_k"] == pytest.approx([0.5, (5 / 6 + 1) / 3, 2 / 3])
    for (lo, hi), c in zip(cov["ci95"], cov["pass_at_k"]):
        assert 0 <= lo <= c <= hi <= 1 and hi > lo  # problems differ, so the interval has width
    assert coverage_curve([64] * 2, [1, 3])["k"] == [1, 2, 4, 8, 16, 32, 64]
    assert coverage_curve([6, 9], [1, 3])["k"] == [1, 2, 4, 6]  # up to the fewest samples a problem has


def test_coverage_law_is_fitted_only_when_the_curve_is_resolved():
    from scalinglab.testtime.evaluate import _coverage

    assert _coverage([(8, 0)] * 99 + [(8, 1)])["law"] is None  # one correct sample in 800: no law
    rng = __import__("random").Random(0)
    counts = [(16, sum(rng.random() < q for _ in range(16))) for q in [0.05, 0.1, 0.2, 0.4] * 25]
    law = _coverage(counts)["law"]
    assert law is not None and law["success"] and law["params"]["a"] < 0 and law["params"]["b"] < 0
