"""Law functions, the batched L-BFGS, and the planning formulas, against hand-computed values."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize, rosen, rosen_der

from scalinglab.errors import UserError
from scalinglab.scaling import laws, planning
from scalinglab.scaling.chinchilla import objective
from scalinglab.scaling.lbfgs import minimize_batch

EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def test_chinchilla_value_and_log_form_agree():
    # Chinchilla itself: N = 70e9, D = 1.4e12 with Epoch's parameters, by hand:
    # 482.01 / 70e9^0.3478 = 482.01 / e^(0.3478·24.97176) = 482.01 / e^8.68524 ≈ 0.08139
    # 2085.43 / 1.4e12^0.3658 = 2085.43 / e^(0.3658·27.96749) = 2085.43 / e^10.23071 ≈ 0.07515
    L = laws.chinchilla(70e9, 1.4e12, **EPOCH)
    assert L == pytest.approx(1.8172 + 482.01 / 70e9**0.3478 + 2085.43 / 1.4e12**0.3658, rel=1e-12)
    assert L == pytest.approx(1.8172 + 0.08139 + 0.07515, abs=2e-4)
    lg = laws.chinchilla_log(
        math.log(70e9), math.log(1.4e12), math.log(482.01), math.log(2085.43), math.log(1.8172), 0.3478, 0.3658
    )
    assert math.exp(lg) == pytest.approx(L, rel=1e-12)


def test_small_laws_hand_values():
    assert laws.power(8.0, 2.0, 1 / 3) == pytest.approx(4.0)
    assert laws.offset_power(4.0, 3.0, -0.5, 1.0) == pytest.approx(2.5)
    assert laws.coverage(1, -1.0, -0.5) == pytest.approx(math.exp(-1))  # c(1) = e^a
    assert laws.coverage(4, -1.0, -0.5) == pytest.approx(math.exp(-0.5))
    assert laws.majority_vote(1, 0.8, 0.4, 0.5) == pytest.approx(0.4)
    assert laws.majority_vote(4, 0.8, 0.4, 0.5) == pytest.approx(0.6)
    assert laws.sigmoid(10.0, 0.1, 0.9, 10.0, 2.0) == pytest.approx(0.5)  # midpoint: half the gain
    assert laws.sigmoid(20.0, 0.1, 0.9, 10.0, 2.0) == pytest.approx(0.1 + 0.8 / 1.25)
    assert laws.sigmoid_inverse(0.74, 0.1, 0.9, 10.0, 2.0) == pytest.approx(20.0)
    assert np.isnan(laws.sigmoid_inverse(0.95, 0.1, 0.9, 10.0, 2.0))
    # Kaplan with D → ∞ reduces to (Nc/N)^αN
    assert laws.kaplan(1e9, 1e300, 8.8e13, 5.4e13, 0.076, 0.095) == pytest.approx((8.8e13 / 1e9) ** 0.076)


def test_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    logN, logD = rng.uniform(16, 23, 30), rng.uniform(19, 26, 30)
    logL = np.log(laws.chinchilla(np.exp(logN), np.exp(logD), **EPOCH)) + rng.normal(0, 0.01, 30)
    th = np.array([[0.6, 6.0, 7.5, 0.35, 0.37], [0.1, 3.0, 9.0, 0.2, 0.5]])
    W = rng.integers(0, 3, (2, 30)).astype(float)
    f, g = objective(th, logN, logD, logL, W)
    for j in range(5):
        e = np.zeros(5)
        e[j] = 1e-6
        fd = (objective(th + e, logN, logD, logL, W)[0] - objective(th - e, logN, logD, logL, W)[0]) / 2e-6
        np.testing.assert_allclose(g[:, j], fd, rtol=1e-4, atol=1e-10)


def test_batched_lbfgs_matches_scipy_on_rosenbrock():
    # 3 independent Rosenbrock problems in 4-D, including a shifted one: f = rosen(x - shift)
    shifts = np.array([[0, 0, 0, 0], [1, -1, 0.5, 2], [0.3, 0.3, 0.3, 0.3]], float)
    x0 = np.array([[-1.2, 1, -1.2, 1], [0, 0, 0, 0], [2, 2, 2, 2]], float)

    def fg(x, idx):
        z = x - shifts[idx]
        return np.array([rosen(r) for r in z]), np.array([rosen_der(r) for r in z])

    res = minimize_batch(fg, x0, gtol=1e-10)
    assert res.converged.all()
    for i in range(3):
        ref = minimize(
            lambda v: rosen(v - shifts[i]),
            x0[i],
            jac=lambda v: rosen_der(v - shifts[i]),
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-10},
        )
        np.testing.assert_allclose(res.x[i], ref.x, atol=1e-6)
        np.testing.assert_allclose(res.x[i], shifts[i] + 1.0, atol=1e-6)  # the true minimum is at shift + 1


def test_compute_optimal_closed_form_matches_numerical_minimum():
    C = 5.76e23  # Chinchilla's budget
    plan = planning.compute_optimal(EPOCH, C)
    # brute force: minimise L(N, C/(6N)) on a fine grid of N
    Ns = np.geomspace(1e9, 1e12, 200001)
    Ls = laws.chinchilla(Ns, C / (6 * Ns), **EPOCH)
    assert plan["N"][0] == pytest.approx(Ns[np.argmin(Ls)], rel=1e-3)
    assert plan["a"] == pytest.approx(0.3658 / (0.3478 + 0.3658))  # = 0.5126, Epoch's Table 2 value
    assert plan["a"] == pytest.approx(0.5126, abs=1e-4)
    # Epoch: their fit implies ~20 tokens per parameter at Chinchilla's budget (Chinchilla used 20)
    assert 15 < plan["tokens_per_param"][0] < 35


def test_inference_aware_shrinks_the_model_and_saves_flops():
    target = float(laws.chinchilla(70e9, 1.4e12, **EPOCH))
    base = planning.inference_aware(EPOCH, target, 0.0)
    # with no inference the plan is the Chinchilla-optimal model for that loss
    n_opt, d_opt = planning.optimal_allocation(6 * base["N"] * base["D"], **EPOCH)
    assert base["N"] == pytest.approx(float(n_opt), rel=1e-4)
    heavy = planning.inference_aware(EPOCH, target, 1e13)
    assert heavy["N"] < base["N"] and heavy["D"] > base["D"]
    assert laws.chinchilla(heavy["N"], heavy["D"], **EPOCH) == pytest.approx(target, rel=1e-9)
    assert 0 < heavy["saving"] < 1
    with pytest.raises(UserError):
        planning.inference_aware(EPOCH, 1.5, 0.0)  # below E


def test_cheapest_mix_hand_example():
    # training law p1(C) = sigmoid; coverage exponent b = -0.5 so k samples give p1^(1/sqrt(k))
    sig = dict(R0=0.0, A=0.95, C_mid=1e20, B=1.0)
    out = planning.cheapest_mix(
        lambda c: float(laws.sigmoid(c, **sig)),
        -0.5,
        0.8,
        flops_per_sample=1e12,
        queries=1e6,
        ks=(1, 4, 16),
        train_inverse=lambda p: laws.sigmoid_inverse(p, **sig),
    )
    row4 = next(r for r in out["table"] if r["k"] == 4)
    assert row4["p1_needed"] == pytest.approx(0.8**2)  # p1^(4^-0.5) = 0.8 → p1 = 0.64
    # sigmoid inverse by hand: 0.64 = 0.95/(1 + 1e20/C) → C = 1e20 / (0.95/0.64 − 1)
    assert row4["train_flops"] == pytest.approx(1e20 / (0.95 / 0.64 - 1))
    assert out["best_k"] == min(out["table"], key=lambda r: r["total_flops"])["k"]
    # the numeric inverse agrees with the analytic one
    num = planning.cheapest_mix(
        lambda c: float(laws.sigmoid(c, **sig)), -0.5, 0.8, flops_per_sample=1e12, queries=1e6, ks=(4,)
    )
    assert num["train_flops"] == pytest.approx(row4["train_flops"], rel=1e-6)
