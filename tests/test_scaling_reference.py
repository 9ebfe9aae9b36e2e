"""Published anchors: Epoch AI's Chinchilla refit, Porian et al.'s N* ∝ C^a exponents, o1-mini on AIME.

Data live in ../shared/reference/ beside the repository (see PROVENANCE_scaling_anchors.md there);
each test skips cleanly when its file is absent.
"""

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from scalinglab.bench.fit import load_epoch, scipy_objective
from scalinglab.scaling import compute_optimal, fit_chinchilla, fit_coverage, fit_power, fit_sigmoid

REF = Path(__file__).parents[2] / "shared" / "reference"


def _need(name):
    p = REF / name
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p


@pytest.fixture(scope="module")
def epoch_fit():
    N, D, L = load_epoch(_need("epoch_chinchilla_svg_extracted_data.csv"))
    return N, D, L, fit_chinchilla(N, D, L, bootstrap=4000, seed=0)


def test_epoch_point_estimates(epoch_fit):
    N, D, L, fit = epoch_fit
    assert fit.n_points == 240 and fit.success and not fit.warnings
    # Besiroglu et al. 2024 (arXiv:2404.10102) Table 1: E=1.8172, A=482.01, B=2085.43, α=0.3478, β=0.3658
    p = fit.params
    assert p["E"] == pytest.approx(1.8172, abs=0.005)
    assert p["A"] == pytest.approx(482.01, rel=0.03)
    assert p["B"] == pytest.approx(2085.43, rel=0.05)
    assert p["alpha"] == pytest.approx(0.3478, abs=0.002)
    assert p["beta"] == pytest.approx(0.3658, abs=0.003)
    # our optimum is at least as good as Epoch's published (rounded) parameters on the same objective
    epoch_theta = np.array([np.log(1.8172), np.log(482.01), np.log(2085.43), 0.3478, 0.3658])
    f_epoch, _ = scipy_objective(epoch_theta, np.log(N), np.log(D), np.log(L), np.ones(len(L)))
    assert fit.objective <= f_epoch


def test_epoch_bootstrap_intervals(epoch_fit):
    _, _, _, fit = epoch_fit
    # Epoch's bootstrap standard errors (4,000 resamples), same table: (0.03), (124.58), (1293.23), (0.02), (0.02)
    se = fit.se
    assert 0.02 <= se["E"] <= 0.04
    assert 95 <= se["A"] <= 155
    assert 1000 <= se["B"] <= 1700
    assert 0.01 <= se["alpha"] <= 0.025 and 0.015 <= se["beta"] <= 0.025
    for k, v in {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}.items():
        assert fit.ci[k][0] < v < fit.ci[k][1]
    # Epoch: a = β/(α+β) = 0.5126 (SE 0.02) for N* ∝ C^a
    plan = compute_optimal(fit, [1e21, 1e24])
    assert plan["a"] == pytest.approx(0.5126, abs=0.005)
    lo, hi = plan["bands"]["a"]
    assert lo < 0.5126 < hi and 0.02 < hi - lo < 0.12
    assert all(lo <= n <= hi for n, lo, hi in zip(plan["N"], *plan["bands"]["N"]))


def _porian():
    pairs = defaultdict(list)
    with _need("porian2024_optimal_pairs.csv").open() as f:
        for r in csv.DictReader(f):
            if r["n_star"]:
                pairs[int(r["config_id"])].append((float(r["flops"]), float(r["n_star"]), float(r["t_star"])))
    with _need("porian2024_fits_summary.csv").open() as f:
        summary = {int(r["config_id"]): r for r in csv.DictReader(f)}
    return pairs, summary


def test_porian_exponents_per_configuration():
    pairs, summary = _porian()
    assert len(summary) == 15
    for cid, row in summary.items():
        C, n, t = np.array(pairs[cid]).T
        fn, ft = fit_power(C, n, bootstrap=0), fit_power(C, t, bootstrap=0)
        # Porian et al. fit these by unweighted least squares on logs; we reproduce their numbers
        assert fn.params["b"] == pytest.approx(float(row["a_n_exponent"]), abs=1e-6), cid
        assert ft.params["b"] == pytest.approx(float(row["b_t_exponent"]), abs=1e-6), cid
        assert fn.params["a"] == pytest.approx(float(row["n_coef"]), rel=1e-4), cid


def test_o1mini_aime_fits_stay_sane():
    rows = json.loads(_need("o1mini_aime2024_results_log_majority_vote.json").read_text())
    x = np.array([r["avg_tokens_used"] for r in rows])
    y = np.array([r["accuracy"] for r in rows])
    grid = np.geomspace(1e2, 1e7, 50)
    cov = fit_coverage(x, y, bootstrap=150)
    assert cov.success and cov.params["a"] < 0 and -1 < cov.params["b"] < 0
    pc = cov.predict(grid)
    assert np.all(np.diff(pc) > 0) and np.all((pc > 0) & (pc < 1))
    assert np.sqrt(np.mean((cov.predict(x) - y) ** 2)) < 0.08  # 1/30 steps of noise: a loose but real bound
    sig = fit_sigmoid(x, y, bootstrap=150)
    ps = sig.predict(grid)
    assert sig.success and np.all(np.diff(ps) >= 0) and np.all((ps >= 0) & (ps <= 1))
    assert np.sqrt(np.mean((sig.predict(x) - y) ** 2)) < 0.08
    # 11 noisy points cannot pin a 4-parameter sigmoid's asymptote: the fit must say so
    assert sig.ill_determined
