"""Closed forms and reference values from E & Wojtowytsch that runs are checked against.

Pure NumPy; used by the tests, the toy flows' observables and (later) the analysis report.
"""
from __future__ import annotations

import math

import numpy as np


def final_layer_vertex(k: int, radius: float, p: float = 2.0) -> tuple[float, float]:
    """(alpha, beta) of the unique minimiser z_i = alpha e_i + beta sum_{j != i} e_j of
    Phi_i(z) = log sum_j exp(z_j) - z_i over the l^p ball of radius R in R^k (Lemma 4, Remark 5).

    The minimiser is symmetric in the coordinates j != i and lies on the sphere, and the
    Lagrange condition grad Phi_i || grad |z|_p^p reads (1 - pi_i) / pi_j = k - 1 =
    alpha^(p-1) / |beta|^(p-1), whatever the softmax weights pi. Hence, with c = (k-1)^(1/(p-1)),

        |beta| = R / (c^p + k - 1)^(1/p),   alpha = c |beta|,   beta < 0.

    p = 2 gives equation (4): alpha = sqrt((k-1)/k) R, beta = -R / sqrt(k (k-1));
    p = inf (the limit) gives the cube's corner alpha = R, beta = -R.
    """
    if k < 2:
        raise ValueError(f"k = {k}: the simplex needs k >= 2 classes")
    if not p > 1:
        raise ValueError(f"p = {p}: the l^p ball needs p > 1")
    if math.isinf(p):
        return radius, -radius
    if p == 2:
        return math.sqrt((k - 1) / k) * radius, -radius / math.sqrt(k * (k - 1))
    # in logs: c^p = (k-1)^(p/(p-1)) overflows as p -> 1
    log_c = math.log(k - 1) / (p - 1)
    a, b = p * log_c, math.log(k - 1)
    log_sum = max(a, b) + math.log1p(math.exp(-abs(a - b)))
    log_beta = math.log(radius) - log_sum / p
    return math.exp(log_c + log_beta), -math.exp(log_beta)


def final_layer_simplex(k: int, radius: float, p: float = 2.0) -> np.ndarray:
    """(k, k) matrix whose row i is the minimiser z_i of Lemma 4 for class i."""
    alpha, beta = final_layer_vertex(k, radius, p)
    return np.full((k, k), beta) + (alpha - beta) * np.eye(k)


def three_neuron_limit(p1: float, p3: float) -> float:
    """lim_{t -> inf} h(t, 1) - h(t, -1) = log(p3 / (2 p1)) for the three-neuron example of
    Section 5.2 (from the ODE in the proof of Lemma 18: e^{-a1} ~ 1/(p1 t) and
    e^{a2 - a3} ~ 2/(p3 t)); zero exactly when p3 = 2 p1 (Lemma 18)."""
    return math.log(p3 / (2.0 * p1))
