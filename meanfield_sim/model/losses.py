"""Losses, written so that the far tail (margins 1e3 to 1e6 and beyond) is exact.

The risk is R = sum_j p_j l(h_j, y_j). Gradient flow needs the *dual weights*
g_j = p_j dl/dh(h_j); deep in the tail they are far below float64's range (exp(-2000) at a
logistic margin of 1000), so every loss here returns them in sign / log-magnitude form and never
forms exp() of a large argument. Kernels subtract the largest log-magnitude before exponentiating
(see ``kernels.cpu.loss_pass``), so the *direction* of the flow is exact however small its speed.

Binary losses (k = 1, y in {-1, +1}, margin u = y h):
- logistic     l = log(1 + exp(-2u))    (the paper's two-class softmax with outputs (h, -h))
               dl/dh = -2y / (1 + exp(2u))
- exponential  l = exp(-u),             dl/dh = -y exp(-u)

k-class softmax cross-entropy (paper's equation (3)), y in {0..k-1}:
- softmax_ce   l = log sum_q exp(h_q) - h_y,   dl/dh_q = pi_q - [q = y],  pi = softmax(h)
"""
from __future__ import annotations

import math

from numba import njit

LOSS_IDS = {"logistic": 0, "exponential": 1, "softmax_ce": 2}
_LOG2 = math.log(2.0)


@njit(inline="always", cache=True)
def softplus_terms(v):
    """(softplus(v), log softplus(v), log1p(exp(-|v|))) from one exp and one log1p, where
    softplus(v) = log(1 + exp(v)) = max(v, 0) + log1p(exp(-|v|)) (no overflow, no cancellation).

    log softplus is exact for v -> -inf where softplus underflows: for v < -30,
    log(log1p(e)) = v + log1p(-e/2 + e^2/3 - ...) = v - e/2 to rounding, e = exp(v) < 1e-13."""
    e = math.exp(-abs(v))
    tail = math.log1p(e)
    sp = max(v, 0.0) + tail
    return sp, (v - 0.5 * e if v < -30.0 else math.log(sp)), tail


@njit(inline="always", cache=True)
def softplus(v):
    """log(1 + exp(v)) without overflow or cancellation."""
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(inline="always", cache=True)
def log_softplus(v):
    """log(log(1 + exp(v))), exact for v -> -inf (:func:`softplus_terms`)."""
    return softplus_terms(v)[1]


@njit(inline="always", cache=True)
def binary_loss(u, loss_id):
    """(l, log l, log|dl/du|) at margin u = y h; dl/du < 0 always, so dl/dh = -y |dl/du|."""
    if loss_id == 0:
        # l = softplus(-2u) and |dl/du| = 2 / (1 + e^{2u}) = 2 exp(-softplus(2u)), where
        # softplus(2u) = max(2u, 0) + the same log1p(exp(-2|u|)): one exp, one log1p, one log
        loss, log_loss, tail = softplus_terms(-2.0 * u)
        return loss, log_loss, _LOG2 - (max(2.0 * u, 0.0) + tail)
    # exponential; exp(-u) overflows only where the loss itself is beyond float64
    return math.exp(-u), -u, -u


@njit(cache=True)
def logsumexp_except(h, skip):
    """log sum_{q != skip} exp(h_q) (skip = -1: all q); -inf for an empty sum."""
    top = -math.inf
    for q in range(h.shape[0]):
        if q != skip and h[q] > top:
            top = h[q]
    if top == -math.inf:
        return top
    s = 0.0
    for q in range(h.shape[0]):
        if q != skip:
            s += math.exp(h[q] - top)
    return top + math.log(s)


@njit(cache=True)
def softmax_ce(h, y, log_dual):
    """Softmax cross-entropy at outputs ``h`` (k-vector) and label ``y``.

    Returns (l, log l) and fills ``log_dual[q] = log|dl/dh_q|``: log pi_q for q != y and
    log(1 - pi_y) = logsumexp_{q != y} h_q - logsumexp h for q = y (whose sign is negative).
    With v = logsumexp_{q != y}(h_q) - h_y, l = log(1 + exp(v)) = softplus(v).
    """
    lse_all = logsumexp_except(h, -1)
    lse_other = logsumexp_except(h, y)
    for q in range(h.shape[0]):
        log_dual[q] = h[q] - lse_all
    log_dual[y] = lse_other - lse_all
    v = lse_other - h[y]
    loss, log_loss, _ = softplus_terms(v)
    return loss, log_loss
