"""Closed forms and reference values from E & Wojtowytsch that runs are checked against.

Pure NumPy; used by the tests, the toy flows' observables and (later) the analysis report.
"""
from __future__ import annotations

import math

import numpy as np


def final_layer_vertex(k: int, radius: float, p: float = 2.0) -> tuple[float, float]:
    """(alpha, beta) of the unique minimiser z_i = alpha e_i + beta sum_{j != i} e_j of
    Phi_i(z) = log sum_j exp(z_j) - z_i over the l^p ball of radius R in R^k (Lemma 4, Remark 5).

    p = 2: equation (4), alpha = sqrt((k-1)/k) R, beta = -R / sqrt(k (k-1)).
    p = inf: the cube's corner, alpha = R, beta = -R (Phi_i increases in every z_j, j != i, and
    decreases in z_i).
    1 < p < inf: the minimiser is symmetric in the coordinates j != i and lies on the sphere, so
    beta = -((R^p - alpha^p) / (k - 1))^(1/p) and alpha in [0, R] minimises the convex
    phi(alpha) = log(e^alpha + (k-1) e^beta(alpha)) - alpha, found by golden-section search to
    machine precision.
    """
    if k < 2:
        raise ValueError(f"k = {k}: the simplex needs k >= 2 classes")
    if p == 2:
        return math.sqrt((k - 1) / k) * radius, -radius / math.sqrt(k * (k - 1))
    if math.isinf(p):
        return radius, -radius

    def beta(alpha):
        return -(max(radius ** p - alpha ** p, 0.0) / (k - 1)) ** (1.0 / p)

    def phi(alpha):
        b = beta(alpha)
        top = max(alpha, b)
        return top + math.log(math.exp(alpha - top) + (k - 1) * math.exp(b - top)) - alpha

    lo, hi = 0.0, radius
    g = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = phi(x1), phi(x2)
    for _ in range(200):
        if hi - lo <= 1e-15 * radius:
            break
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - g * (hi - lo)
            f1 = phi(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + g * (hi - lo)
            f2 = phi(x2)
    alpha = 0.5 * (lo + hi)
    return alpha, beta(alpha)


def final_layer_simplex(k: int, radius: float, p: float = 2.0) -> np.ndarray:
    """(k, k) matrix whose row i is the minimiser z_i of Lemma 4 for class i."""
    alpha, beta = final_layer_vertex(k, radius, p)
    return np.full((k, k), beta) + (alpha - beta) * np.eye(k)


def three_neuron_limit(p1: float, p3: float) -> float:
    """lim_{t -> inf} h(t, 1) - h(t, -1) = log(p3 / (2 p1)) for the three-neuron example of
    Section 5.2 (from the ODE in the proof of Lemma 18: e^{-a1} ~ 1/(p1 t) and
    e^{a2 - a3} ~ 2/(p3 t)); zero exactly when p3 = 2 p1 (Lemma 18)."""
    return math.log(p3 / (2.0 * p1))
