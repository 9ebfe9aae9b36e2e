"""The data-wall fit (`scaling/datawall.py`): Muennighoff et al.'s effective data, recovered from synthetic ladders."""

import math

import numpy as np
import pytest

from scalinglab.scaling.datawall import (
    PUBLISHED_R_D,
    datawall_loss,
    effective_data,
    fit_datawall,
    fresh_equivalent,
    worth,
)

U = 1e5
EPOCHS = np.array([1, 2, 4, 8, 16], float)


def ladder(r_star, sizes=((4e4, 3.0), (1e5, 2.7)), noise=0.0, seed=0, B=300.0, beta=0.4):
    """Repeated rungs (U fixed) and fresh rungs (U = D) at every epoch count, for each (N, E_N)."""
    rows = [(N, e * U, u, E) for N, E in sizes for e in EPOCHS for u in (U, e * U)]
    N, D, Uu, E = map(np.array, zip(*rows))
    L = datawall_loss(D, Uu, E, B, beta, r_star) * np.exp(np.random.default_rng(seed).normal(0, noise, len(D)))
    return N, D, Uu, L


def test_effective_data_by_hand():
    # R = 0: D' = U; R = 1, R* = 1: U + U(1 - e^-1) = 1.6321 U; R -> inf: U (1 + R*)
    assert effective_data(U, U, 5.0) == pytest.approx(U)
    assert effective_data(2 * U, U, 1.0) == pytest.approx(U * (2 - math.exp(-1)))
    assert effective_data(1e9 * U, U, 3.0) == pytest.approx(4 * U)
    # a partial first epoch repeats nothing
    assert effective_data(0.5 * U, U, 3.0) == pytest.approx(U)
    # the paper's R_D* = 15.4: 4 epochs are worth 93% of fresh data, 16 epochs 66%
    w = effective_data(EPOCHS, 1.0, PUBLISHED_R_D) / EPOCHS
    assert w[2] == pytest.approx(0.9315, abs=1e-4) and w[4] == pytest.approx(0.6616, abs=1e-4)


def test_exact_data_give_the_exact_parameters():
    f = fit_datawall(*ladder(5.0), bootstrap=0)
    assert f.success and not f.warnings
    assert f.params["R_D*"] == pytest.approx(5.0, rel=1e-4)
    assert f.params["beta"] == pytest.approx(0.4, rel=1e-4) and f.params["B"] == pytest.approx(300.0, rel=1e-3)
    assert f.params["E@N=40000"] == pytest.approx(3.0, rel=1e-5) and f.params["E@N=100000"] == pytest.approx(
        2.7, rel=1e-5
    )


@pytest.mark.parametrize("r_star", [2.0, 5.0, 15.4])
def test_noisy_ladder_recovers_r_star_within_its_interval(r_star):
    f = fit_datawall(*ladder(r_star, noise=0.004, seed=3), bootstrap=200, seed=1)
    lo, hi = f.ci["R_D*"]
    assert f.success
    assert lo <= r_star <= hi, (r_star, lo, hi)
    assert hi / lo < 3  # an interval that pins it, not one that spans everything
    assert lo <= f.params["R_D*"] <= hi


def test_one_size_is_enough():
    f = fit_datawall(*ladder(4.0, sizes=((4e4, 3.0),), noise=0.003, seed=5), bootstrap=200)
    assert f.success and list(f.params) == ["E@N=40000", "B", "beta", "R_D*"]
    lo, hi = f.ci["R_D*"]
    assert lo <= 4.0 <= hi


def test_a_wall_beyond_the_data_is_flagged_not_hidden():
    # repetition costs nothing in the data (R_D* = 1e6, far past 15 repetitions): R_D* is not pinned
    f = fit_datawall(*ladder(1e6, noise=0.003, seed=2), bootstrap=100)
    assert f.warnings and any("R_D*" in w for w in f.warnings)
    assert "ill-determined" in f.message


def hetero_ladder(r_star, seed):
    """The measured data wall's noise: short rungs (early plateau) scatter 6%, long ones under 1%."""
    N, D, Uu, L = ladder(r_star)
    sd = np.where(D <= 2 * U, 0.06, np.where(D <= 4 * U, 0.03, 0.008))
    return N, D, Uu, L * np.exp(np.random.default_rng(seed).normal(0, sd))


@pytest.mark.slow
@pytest.mark.parametrize("make", ["homoscedastic", "heteroscedastic"])
def test_wild_bootstrap_covers_r_star(make):
    """20 synthetic ladders each: the 95% interval holds the true R_D* = 15.4 in at least 17 (85%)."""
    gen = {
        "homoscedastic": lambda s: ladder(PUBLISHED_R_D, noise=0.01, seed=s),
        "heteroscedastic": lambda s: hetero_ladder(PUBLISHED_R_D, s),
    }[make]
    fits = [fit_datawall(*gen(s), bootstrap=100, seed=s) for s in range(20)]
    assert sum(f.ci["R_D*"][0] <= PUBLISHED_R_D <= f.ci["R_D*"][1] for f in fits) >= 17
    assert all(f.info["resample"] == "wild" for f in fits)


def test_one_uneven_ladder_wild_pins_what_pooled_residuals_lose():
    data = hetero_ladder(PUBLISHED_R_D, 1)
    lo, hi = fit_datawall(*data, bootstrap=100, seed=1).ci["R_D*"]
    assert lo <= PUBLISHED_R_D <= hi < 100
    assert fit_datawall(*data, bootstrap=100, seed=1, resample="residual").ci["R_D*"][1] > 0.99e4
    with pytest.raises(ValueError, match="resample"):
        fit_datawall(*ladder(5.0), bootstrap=0, resample="case")


@pytest.mark.slow
def test_pooled_residuals_lose_r_star_when_the_noise_is_uneven():
    """Where short rungs are noisy and long ones quiet, the pooled residual bootstrap puts the short rungs' noise
    on the rungs that pin R_D* and its interval runs into the box; the wild bootstrap pins it."""
    boxed = {"wild": 0, "residual": 0}  # intervals whose upper end is the search box's
    for s in range(20):
        data = hetero_ladder(PUBLISHED_R_D, s)
        for how in boxed:
            boxed[how] += fit_datawall(*data, bootstrap=100, seed=s, resample=how).ci["R_D*"][1] > 0.99e4
    assert boxed["residual"] >= 14 and boxed["wild"] <= 8, boxed  # measured: 16 and 6 of 20


def test_worth_and_fresh_equivalent():
    f = fit_datawall(*ladder(5.0, noise=0.002, seed=4), bootstrap=100)
    w = worth(f, EPOCHS)
    assert w["worth"][0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(w["worth"], w["worth"][1:]))  # each epoch is worth less than the one before
    exact = effective_data(EPOCHS, 1.0, f.params["R_D*"]) / EPOCHS
    assert w["worth"] == pytest.approx(exact.tolist())
    assert all(lo <= v <= hi for v, (lo, hi) in zip(w["worth"][1:], w["ci95"][1:]))
    # the fresh curve inverted: the loss the fit predicts for a fresh D maps back to D
    D = 3.3e5
    pred = float(f.predict([4e4], [D], [D])[0])
    eq = fresh_equivalent(f, 4e4, pred)
    assert eq["tokens"] == pytest.approx(D, rel=1e-9)
    assert eq["ci95"][0] < D < eq["ci95"][1]
    # a loss at or below the size's offset needs infinite fresh data
    assert fresh_equivalent(f, 4e4, f.params["E@N=40000"] - 0.01)["tokens"] == math.inf


def test_designs_that_pin_nothing_fail_with_a_reason():
    N, D, Uu, L = ladder(5.0)
    fresh = Uu == D
    f = fit_datawall(N[fresh], D[fresh], Uu[fresh], L[fresh], bootstrap=0)
    assert not f.success and "R_D*" in f.message
    rep = ~fresh | (D == U)
    f = fit_datawall(
        N[rep & (D <= 2 * U)], D[rep & (D <= 2 * U)], Uu[rep & (D <= 2 * U)], L[rep & (D <= 2 * U)], bootstrap=0
    )
    assert not f.success
    f = fit_datawall([1, 2], [1, 2, 3], [1], [1], bootstrap=0)
    assert not f.success and "different lengths" in f.message
    f = fit_datawall(N, D, Uu, -L, bootstrap=0)
    assert not f.success and "positive" in f.message
