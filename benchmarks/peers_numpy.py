"""NumPy peer: the step written the obvious vectorised way, batched over replicas.

With Z = W X^T + b 1^T (R, m, n) materialised, S = sigma(Z), S' = sigma'(Z):

    H = S^T A / m                      (R, n, k)   outputs h(x_j)
    G_jq = p_j dl/dh_q (H_j, y_j)      (R, n, k)   logistic: -2y / (1 + exp(2 y h));
                                                   softmax: softmax(h)_q - [q = y]
    v_a = -S G                         (R, m, k)   v = -m dR/dtheta: the 1/m of h cancels the m
    C = (A G^T) * S'                   (R, m, n)
    v_w = -C X,   v_b = -C 1           (R, m, d), (R, m)

then a, w, b <- a, w, b + dt v. Every array, the state included, has the case's dtype.
"""
from __future__ import annotations

import numpy as np

from cases import Implementation, Problem


def activation_and_slope(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigma(z), sigma'(z)); relu'(0) = 0, sigmoid(z) = 1 / (1 + exp(-z))."""
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    s = 1 / (1 + np.exp(-z))
    return s, s * (1 - s)


def loss_slope(h: np.ndarray, label: np.ndarray) -> np.ndarray:
    """dl/dh (R, n, k): logistic loss log(1 + exp(-2 y h)) for k = 1, softmax cross-entropy
    for k > 1."""
    if h.shape[-1] == 1:
        y = label[:, None].astype(h.dtype)
        return -2 * y / (1 + np.exp(2 * y * h))
    e = np.exp(h - h.max(axis=-1, keepdims=True))
    slope = e / e.sum(axis=-1, keepdims=True)
    slope[:, np.arange(h.shape[1]), label] -= 1
    return slope


def make_step(problem: Problem) -> Implementation:
    a, w, b = problem.initial_parts()
    x, label, dt = problem.x, problem.label, problem.dt
    p = problem.weight.astype(problem.dtype)[:, None]
    activation, m = problem.case.activation, problem.shape.width

    def step() -> None:
        z = w @ x.T + b[..., None]
        s, ds = activation_and_slope(activation, z)
        h = s.transpose(0, 2, 1) @ a / m
        g = p * loss_slope(h, label)
        c = (a @ g.transpose(0, 2, 1)) * ds
        a[...] -= dt * (s @ g)
        w[...] -= dt * (c @ x)
        b[...] -= dt * c.sum(axis=-1)

    return Implementation(step=step, state=lambda: np.concatenate([a, w, b[..., None]], axis=-1))
