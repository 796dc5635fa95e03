"""Numba CPU kernels for the two-layer network: forward pass, loss pass, particle velocities.

Shapes: theta (R, m, p) with p = k + d + 1 and rows [a_i | w_i | b_i]; x (n, d); outputs h and
dual weights (R, n, k). Storage may be float32 or float64; every reduction accumulates in float64
(the accumulator is separate from the storage type, as in KeOps).

No kernel forms the (m x n) matrix of pre-activations z_ij = w_i . x_j + b_i: the forward pass
reduces over particles for one data point at a time (parallel over (r, j)) and the backward pass
reduces over data points for one particle at a time (parallel over (r, i)), recomputing z_ij.
That is two evaluations of sigma per pair instead of one plus an m x n read and write; for the
paper's regime (d = 1, 2) the pass is bound by the arithmetic on z, not by memory.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..model.activations import activation, activation_and_slope
from ..model.losses import binary_loss, softmax_ce

_FLAGS = dict(cache=True, fastmath=False)


@njit(parallel=True, **_FLAGS)
def forward(theta, x, k, act_id, act_param, scale, h_out):
    """h_out[r, j, :] = scale * sum_i a_ri sigma(w_ri . x_j + b_ri)   (h_out: float64)."""
    R, m, p = theta.shape
    n, d = x.shape
    for rj in prange(R * n):
        r = rj // n
        j = rj - r * n
        acc = np.zeros(k)
        for i in range(m):
            z = theta[r, i, p - 1] * 1.0
            for l in range(d):
                z += theta[r, i, k + l] * x[j, l]
            s = activation(z, act_id, act_param)
            for q in range(k):
                acc[q] += theta[r, i, q] * s
        for q in range(k):
            h_out[r, j, q] = scale * acc[q]


@njit(parallel=True, **_FLAGS)
def loss_pass(h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out, log_scale_out):
    """Risk and dual weights g_rjq = p_j dl/dh_q (h_rj) of every replica, in scaled form.

    dual_out[r] = g_r / exp(log_scale_out[r]) with log_scale_out[r] = max_jq log|g_rjq|, so the
    entries lie in [-1, 1] and are exact even where g itself underflows float64. Also returns
    risk_out[r] = sum_j p_j l_j and log_risk_out[r] = log of that sum, finite where the risk
    underflows. Points of weight 0 are skipped.
    """
    R, n, k = h.shape
    for r in prange(R):
        log_terms = np.empty(n)
        log_dual = np.empty(k)
        risk = 0.0
        for j in range(n):
            lw = log_weight[j]
            if lw == -math.inf:
                log_terms[j] = -math.inf
                for q in range(k):
                    dual_out[r, j, q] = -math.inf
                continue
            if loss_id == 2:
                loss, log_loss = softmax_ce(h[r, j], label[j], log_dual)
                for q in range(k):
                    dual_out[r, j, q] = lw + log_dual[q]
            else:
                loss, log_loss, log_slope = binary_loss(label[j] * h[r, j, 0], loss_id)
                dual_out[r, j, 0] = lw + log_slope
            risk += math.exp(lw) * loss
            log_terms[j] = lw + log_loss
        top = -math.inf
        for j in range(n):
            for q in range(k):
                top = max(top, dual_out[r, j, q])
        for j in range(n):
            for q in range(k):
                mag = math.exp(dual_out[r, j, q] - top)
                if loss_id == 2:
                    dual_out[r, j, q] = -mag if q == label[j] else mag
                else:
                    dual_out[r, j, q] = -label[j] * mag
        log_scale_out[r] = top
        risk_out[r] = risk
        lt = -math.inf
        for j in range(n):
            lt = max(lt, log_terms[j])
        s = 0.0
        for j in range(n):
            s += math.exp(log_terms[j] - lt)
        log_risk_out[r] = lt + math.log(s)


@njit(parallel=True, **_FLAGS)
def velocity(theta, x, dual, log_scale, k, act_id, act_param, train_a, train_w, train_b, v_out):
    """Particle velocities of the gradient flow, v_ri = -(1/s_m) dR/dtheta_ri:

        v_a = -sum_j g_j sigma(z_ij)
        v_w = -sum_j (g_j . a_i) sigma'(z_ij) x_j
        v_b = -sum_j (g_j . a_i) sigma'(z_ij)

    with g = exp(log_scale[r]) * dual. The factor s_m of h cancels against the 1/s_m of the
    time scale, so this is the mean-field (Wasserstein) velocity for s_m = 1/m and plain gradient
    flow for s_m = 1. Frozen groups get velocity 0.
    """
    R, m, p = theta.shape
    n, d = x.shape
    need_slope = train_w or train_b
    for ri in prange(R * m):
        r = ri // m
        i = ri - r * m
        acc_a = np.zeros(k)
        acc_w = np.zeros(d)
        acc_b = 0.0
        for j in range(n):
            z = theta[r, i, p - 1] * 1.0
            for l in range(d):
                z += theta[r, i, k + l] * x[j, l]
            if need_slope:
                s, ds = activation_and_slope(z, act_id, act_param)
                coef = 0.0
                for q in range(k):
                    coef += dual[r, j, q] * theta[r, i, q]
                t = coef * ds
                for l in range(d):
                    acc_w[l] += t * x[j, l]
                acc_b += t
            else:
                s = activation(z, act_id, act_param)
            if train_a:
                for q in range(k):
                    acc_a[q] += dual[r, j, q] * s
        speed = -math.exp(log_scale[r])
        for q in range(k):
            v_out[r, i, q] = speed * acc_a[q] if train_a else 0.0
        for l in range(d):
            v_out[r, i, k + l] = speed * acc_w[l] if train_w else 0.0
        v_out[r, i, p - 1] = speed * acc_b if train_b else 0.0
