"""Approach 2 (IsoFLOP parabolas), the Approach 3 exponent, predict-then-train and loss to accuracy, on
data drawn from a known law: each must recover what generated it, and say when it cannot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalinglab.scaling import fit_chinchilla
from scalinglab.scaling import isoflop as iso
from scalinglab.scaling.laws import chinchilla
from scalinglab.scaling.planning import optimal_allocation

TRUE = {"E": 1.2, "A": 60.0, "B": 400.0, "alpha": 0.34, "beta": 0.30}


def _ladder(budgets, n_sizes=7, noise=0.0, seed=0, spread=3.0):
    """Sizes around each budget's true optimum (×spread each way), losses from TRUE, with log-normal noise."""
    rng = np.random.default_rng(seed)
    C, N, L = [], [], []
    for c in budgets:
        n_opt = float(optimal_allocation(c, **TRUE)[0])
        for n in np.geomspace(n_opt / spread, n_opt * spread, n_sizes):
            d = c / (6 * n)
            C.append(c)
            N.append(n)
            L.append(float(chinchilla(n, d, **TRUE)) * math.exp(noise * rng.standard_normal()))
    return np.array(C), np.array(N), np.array(L)


def test_optimal_allocation_minimises_the_law_at_fixed_compute():
    C = 1e15
    n_star = float(optimal_allocation(C, **TRUE)[0])
    grid = np.geomspace(n_star / 10, n_star * 10, 2001)
    losses = [chinchilla(n, C / (6 * n), **TRUE) for n in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(n_star, rel=0.01)


def test_approach2_recovers_the_exponent_of_the_law():
    budgets = [1e13, 4e13, 1.6e14, 6.4e14]
    C, N, L = _ladder(budgets, noise=0.003)
    a2 = iso.isoflop_fit(C, N, L, bootstrap=300, seed=1)
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert a2.warnings == []
    assert len(a2.used) == 4 and all(p.inside for p in a2.profiles)
    assert a2.a == pytest.approx(a_true, abs=0.05)
    lo, hi = a2.a_ci
    assert lo < a2.a < hi and lo <= a_true <= hi


def test_approach2_warns_when_a_vertex_lies_outside_the_sizes():
    C, N, L = _ladder([1e13, 4e13, 1.6e14], n_sizes=9, noise=0.0, spread=8.0)
    keep = ~(
        (C == 1e13) & (N < float(optimal_allocation(1e13, **TRUE)[0]) * 1.5)
    )  # only sizes above the optimum at the first budget
    assert ((C == 1e13) & keep).sum() >= 3
    a2 = iso.isoflop_fit(C[keep], N[keep], L[keep], bootstrap=50)
    assert any("outside the sizes trained" in w for w in a2.warnings)
    assert 1e13 not in a2.used and len(a2.used) == 2


def test_approach2_needs_two_budgets_with_a_vertex():
    C, N, L = _ladder([1e13], noise=0.0)
    a2 = iso.isoflop_fit(C, N, L, bootstrap=20)
    assert math.isnan(a2.a) and any("exponent needs 2" in w for w in a2.warnings)


def test_the_two_approaches_agree_on_data_from_one_law():
    C, N, L = _ladder([1e13, 4e13, 1.6e14, 6.4e14], n_sizes=5, noise=0.004, seed=3)
    a2 = iso.isoflop_fit(C, N, L, bootstrap=300, seed=0)
    fit = fit_chinchilla(N, C / (6 * N), L, bootstrap=300, seed=0, grid="small")
    a3 = iso.approach3_exponent(fit)
    cmp = iso.compare_exponents((a2.a, a2.a_ci), a3)
    assert cmp["agree"], cmp
    # and they disagree when one interval is moved away
    assert not iso.compare_exponents((a2.a, a2.a_ci), (a3[0] + 1, (a3[1][0] + 1, a3[1][1] + 1)))["agree"]


def test_predict_then_train_on_a_known_law():
    budgets = [1e13, 2e13, 4e13, 8e13]
    C, N, L = _ladder(budgets, n_sizes=5, noise=0.005, seed=7)
    fit = fit_chinchilla(N, C / (6 * N), L, bootstrap=400, seed=0, grid="small")
    sizes = {d: int(1e4 * 1.6**d) for d in range(1, 30)}  # a dial
    pred = iso.predict_optimum(fit, 3.2e14, sizes, seed=0)
    assert set(pred) >= {"predicted", "interval95", "N", "D", "size", "C"}
    assert pred["N"] == sizes[pred["size"]]
    # the chosen dial size is the nearest (in log N) to the fitted optimum
    assert all(
        abs(math.log(pred["N"] / pred["N_opt_fit"])) <= abs(math.log(n / pred["N_opt_fit"])) for n in sizes.values()
    )
    truth = float(chinchilla(pred["N"], pred["D"], **TRUE))
    rec = iso.score_prediction(pred, truth)
    assert abs(rec["relative_error"]) < 0.02 and rec["inside"]
    lo, hi = rec["interval95"]
    assert lo < rec["predicted"] < hi
    bad = iso.score_prediction(pred, truth * 1.5)
    assert not bad["inside"] and bad["relative_error"] < -0.3


def test_loss_to_accuracy_sigmoid_recovers_its_curve():
    L = np.linspace(2.0, 5.0, 12)
    true = dict(a=0.8, b=0.0, k=3.0, L0=3.4)
    acc = iso.sigmoid_accuracy(L, **true)
    fit = iso.fit_loss_to_accuracy(L[2:], acc[2:], floor=0.0)  # the two lowest-loss rungs held out
    assert fit["rmse"] < 1e-3
    assert iso.predict_accuracy(fit, L[0]) == pytest.approx(acc[0], abs=0.02)
    assert iso.predict_accuracy(fit, L[1]) == pytest.approx(acc[1], abs=0.02)
    with pytest.raises(ValueError, match="at least 3"):
        iso.fit_loss_to_accuracy([3.0, 2.0], [0.1, 0.2])


def test_frontier_extrapolates_a_pure_power_law_in_compute():
    """Profiles whose minima lie on L_opt = G·C^-γ exactly (E = 0): the frontier recovers γ and the next loss."""
    law = {**TRUE, "E": 0.0}
    budgets = [1e13, 2e13, 4e13, 8e13]
    C, N, L = [], [], []
    rng = np.random.default_rng(3)
    for c in budgets:
        n_opt = float(optimal_allocation(c, **law)[0])
        for n in np.geomspace(n_opt / 3, n_opt * 3, 5):
            C.append(c)
            N.append(n)
            L.append(float(chinchilla(n, c / (6 * n), **law)) * math.exp(0.002 * rng.standard_normal()))
    a2 = iso.isoflop_fit(C, N, L, bootstrap=300, seed=0)
    f = iso.predict_frontier(a2, 3.2e14, bootstrap=300, seed=0)
    # with E = 0 the optimum's loss is a power law in C of exponent αβ/(α+β)
    gamma = law["alpha"] * law["beta"] / (law["alpha"] + law["beta"])
    assert f["gamma"] == pytest.approx(gamma, rel=0.05)
    assert f["gamma_ci95"][0] < f["gamma"] < f["gamma_ci95"][1]
    n_opt = float(optimal_allocation(3.2e14, **law)[0])
    truth = float(chinchilla(n_opt, 3.2e14 / (6 * n_opt), **law))
    assert abs(f["predicted"] - truth) / truth < 0.01
    assert f["interval95"][0] < truth < f["interval95"][1]
    # the held-out prediction: Approach 2 names the size, the frontier predicts it, the parametric law beside it
    sizes = {i: int(n) for i, n in enumerate(np.geomspace(1e5, 1e9, 80))}
    fit = fit_chinchilla(N, [c / (6 * n) for c, n in zip(C, N)], L, bootstrap=100, seed=0, grid="small")
    pred = iso.predict_heldout(a2, fit, 3.2e14, sizes, bootstrap=300, seed=0)
    assert pred["method"] == "frontier" and pred["predicted"] == f["predicted"]
    assert pred["size"] == iso.nearest_size(sizes, a2.n_opt(3.2e14)) and pred["N"] == sizes[pred["size"]]
    assert pred["approach3"]["N"] == pred["N"] and pred["approach3"]["D"] == pytest.approx(pred["D"])
    rec = iso.score_prediction(pred, truth)
    assert rec["relative_error"] == pytest.approx((f["predicted"] - truth) / truth) and rec["inside"]
    a3 = rec["approach3"]  # the noise-free law fits itself: its prediction of the same model is right too
    assert a3["relative_error"] == pytest.approx((a3["predicted"] - truth) / truth) and abs(a3["relative_error"]) < 0.02


def test_frontier_needs_two_profiles_with_a_minimum():
    C, N, L = _ladder([1e13], n_sizes=5)
    a2 = iso.isoflop_fit(C, N, L, bootstrap=20)
    f = iso.predict_frontier(a2, 1e14, bootstrap=20)
    assert math.isnan(f["predicted"]) and math.isnan(f["gamma"])
    # then the parametric law names the size and predicts alone, and without it there is no prediction
    C2, N2, L2 = _ladder([1e13, 2e13, 4e13], n_sizes=5)
    fit = fit_chinchilla(N2, [c / (6 * n) for c, n in zip(C2, N2)], L2, bootstrap=50, seed=0, grid="small")
    sizes = {i: int(n) for i, n in enumerate(np.geomspace(1e5, 1e9, 80))}
    pred = iso.predict_heldout(a2, fit, 1e14, sizes, bootstrap=20)
    assert pred["method"] == "approach3" and pred["size"] == iso.nearest_size(sizes, pred["N_opt_fit"])
    assert iso.predict_heldout(a2, None, 1e14, sizes) is None
