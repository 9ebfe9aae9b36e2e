"""The scaling laws themselves, as pure NumPy functions (no fitting here).

Each law broadcasts over array inputs and takes its parameters by name, so a fitted
`FitResult.params` dict can be splatted straight in: `chinchilla(N, D, **fit.params)`.

Sources:
- `chinchilla`: Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", eq. 2.
- `kaplan`: Kaplan et al. 2020, "Scaling Laws for Neural Language Models", eq. 1.5.
- `power`, `offset_power`: plain power laws, used for IsoFLOP optima N* ∝ C^a.
- `coverage`: Brown et al. 2024, "Large Language Monkeys", coverage c(k) ≈ exp(a·k^b).
- `majority_vote`: a saturating power law acc(k) = A∞ − (A∞ − A1)·k^(−b) (our choice: the
  majority-vote curve levels off below 1, unlike coverage).
- `sigmoid`: Khatri et al. 2025, "The Art of Scaling RL Compute", R(C) = R0 + (A − R0)/(1 + (C_mid/C)^B).
"""

from __future__ import annotations

import numpy as np


def chinchilla(N, D, E: float, A: float, B: float, alpha: float, beta: float):
    """Pre-training loss L(N, D) = E + A/N^α + B/D^β (N parameters, D tokens)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return E + A / N**alpha + B / D**beta


def chinchilla_log(logN, logD, a: float, b: float, e: float, alpha: float, beta: float):
    """log L as Hoffmann et al. fit it: LSE(a − α·log N, b − β·log D, e), with A=e^a, B=e^b, E=e^e."""
    t = np.stack(
        np.broadcast_arrays(
            a - alpha * np.asarray(logN), b - beta * np.asarray(logD), np.full_like(np.asarray(logN, float), e)
        )
    )
    return np.logaddexp.reduce(t, axis=0)


def kaplan(N, D, Nc: float, Dc: float, alpha_N: float, alpha_D: float):
    """Kaplan et al.'s joint law L(N, D) = [(Nc/N)^(α_N/α_D) + Dc/D]^α_D (no irreducible term)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return ((Nc / N) ** (alpha_N / alpha_D) + Dc / D) ** alpha_D


def power(x, a: float, b: float):
    """y = a·x^b."""
    return a * np.asarray(x, float) ** b


def offset_power(x, a: float, b: float, c: float):
    """y = a·x^b + c (c is the asymptote when b < 0)."""
    return a * np.asarray(x, float) ** b + c


def coverage(k, a: float, b: float):
    """Fraction of problems solved by at least one of k samples: c(k) = exp(a·k^b), a < 0, b < 0."""
    return np.exp(a * np.asarray(k, float) ** b)


def majority_vote(k, A_inf: float, A1: float, b: float):
    """Majority-vote accuracy with k votes: A∞ − (A∞ − A1)·k^(−b); equals A1 at k = 1, tends to A∞."""
    return A_inf - (A_inf - A1) * np.asarray(k, float) ** (-b)


def sigmoid(C, R0: float, A: float, C_mid: float, B: float):
    """RL compute–performance curve R(C) = R0 + (A − R0) / (1 + (C_mid/C)^B)."""
    C = np.asarray(C, float)
    return R0 + (A - R0) / (1.0 + (C_mid / C) ** B)


def sigmoid_inverse(R, R0: float, A: float, C_mid: float, B: float):
    """The compute C at which `sigmoid` reaches R (NaN where R is outside (R0, A))."""
    R = np.asarray(R, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (A - R0) / (R - R0) - 1.0
        out = C_mid / frac ** (1.0 / B)
    return np.where((R > min(R0, A)) & (R < max(R0, A)), out, np.nan)
