"""Scaling laws: pure law functions, robust fits with bootstrap uncertainty, compute-optimal plans.

    from scalinglab.scaling import fit_chinchilla, compute_optimal
    fit = fit_chinchilla(N, D, loss, bootstrap=4000)   # FitResult(params, ci, residuals, success, message)
    plan = compute_optimal(fit, [1e21, 1e23])          # N*, D* with 95% bootstrap bands

Torch-free: NumPy and SciPy only.
"""

from scalinglab.scaling.chinchilla import fit_chinchilla
from scalinglab.scaling.data import fit_file, read_table
from scalinglab.scaling.fit import FitResult
from scalinglab.scaling.kaplan import fit_kaplan
from scalinglab.scaling.planning import cheapest_mix, compute_optimal, inference_aware, optimal_allocation
from scalinglab.scaling.power import fit_offset_power, fit_power
from scalinglab.scaling.rl import fit_sigmoid
from scalinglab.scaling.testtime import fit_coverage, fit_majority_vote

__all__ = [
    "FitResult",
    "fit_chinchilla",
    "fit_kaplan",
    "fit_power",
    "fit_offset_power",
    "fit_coverage",
    "fit_majority_vote",
    "fit_sigmoid",
    "compute_optimal",
    "optimal_allocation",
    "inference_aware",
    "cheapest_mix",
    "fit_file",
    "read_table",
]
