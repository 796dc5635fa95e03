"""Kernels for large d and k: the passes of :mod:`.cpu` as small matrix products on tiles.

Same signatures, shapes and results as :mod:`.cpu` (``thetaT`` (R, p, m) with rows
[a (k) | w (d) | b], ``x`` (n, d), ``xT`` (d, n)). For a tile P of ``PARTICLE_TILE`` particles
and a tile Q of ``DATA_TILE`` data points, with W_P (|P|, d), A_P (|P|, k), X_Q (|Q|, d) and
G_Q = exp(log_scale) dual_Q (|Q|, k):

    Z   = W_P X_Q^T + b_P 1^T                    (matrix product, BLAS)
    S   = sigma(Z),  S' = sigma'(Z)              (element-wise, Numba)
    h_Q += s_m S^T A_P                           (forward; BLAS)
    C   = S' o (A_P G_Q^T)                       (a rank-k product, then element-wise)
    v_a,P -= S G_Q,   v_w,P -= C X_Q,   v_b,P -= C 1      (BLAS, row sums)

Only tiles of the m x n matrices exist (at most PARTICLE_TILE x DATA_TILE entries per buffer),
so memory stays O((m + n)(d + k)) beside that fixed size. The products take about
2 m n (3 d + 4 k) floating-point operations per gradient evaluation (the forward pass's Z is
recomputed in the backward pass rather than stored), and run at BLAS speed; the element-wise
part is O(m n k). Which of the two modules serves a shape is decided by :func:`use_blocked`.

Precision: the products run in the storage type (so float32 storage computes in float32: each
tile's sum over d, |P| or |Q| terms accumulates in float32 inside BLAS), and the tiles' partial
sums accumulate in float64 (h_out and the velocity accumulators are float64). Replicas are an
outer loop: each replica's tiles are large enough to use every core inside BLAS.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..model.activations import activate_tile, activate_tile_with_slope
from . import cpu as cpu_kernels
from .cpu import FAST

PARTICLE_TILE = 512
DATA_TILE = 1024
MIN_FEATURES = 12
"""d + k from which the blocked passes serve a shape (``use_blocked``): measured by
benchmarks/bench.py on 2 cores, below it the Numba loops of :mod:`.cpu` are faster."""


def use_blocked(d: int, k: int) -> bool:
    """Whether (d, k) is large enough for the tiled matrix-product passes to win."""
    return d + k >= MIN_FEATURES


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _activate_rows(z, bias, act_id, act_param):
    """z[i, :] <- sigma(z[i, :] + bias[i]) for every row (the particles of a tile)."""
    rows, cols = z.shape
    for i in range(rows):
        row = z[i]
        bi = bias[i]
        for t in range(cols):
            row[t] += bi
        activate_tile(row, cols, act_id, act_param)


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _pair_terms(z, bias, coef, act_id, act_param, value, need_slope):
    """For a tile: value <- sigma(z + b) and, if ``need_slope``, z <- C = sigma'(z + b) o coef
    with coef = A_P G_Q^T (formed by BLAS beforehand)."""
    rows, cols = z.shape
    for i in range(rows):
        row, val = z[i], value[i]
        bi = bias[i]
        for t in range(cols):
            row[t] += bi
        if not need_slope:
            for t in range(cols):
                val[t] = row[t]
            activate_tile(val, cols, act_id, act_param)
            continue
        activate_tile_with_slope(row, val, cols, act_id, act_param)  # row <- sigma'
        c = coef[i]
        for t in range(cols):
            row[t] *= c[t]


def _tiles(count: int, size: int):
    return [(lo, min(lo + size, count)) for lo in range(0, count, size)]


def forward(thetaT, x, k, act_id, act_param, scale, h_out):
    """h_out[r, j, :] = scale * sum_i a_ri sigma(w_ri . x_j + b_ri), tile by tile."""
    R, p, m = thetaT.shape
    n, d = x.shape
    z = np.empty((min(PARTICLE_TILE, m), min(DATA_TILE, n)), dtype=thetaT.dtype)
    for r in range(R):
        w_rows, a_rows, bias = thetaT[r, k:k + d], thetaT[r, :k], thetaT[r, p - 1]
        h_out[r] = 0.0
        for i0, i1 in _tiles(m, PARTICLE_TILE):
            for j0, j1 in _tiles(n, DATA_TILE):
                zt = z[:i1 - i0, :j1 - j0]
                np.matmul(w_rows[:, i0:i1].T, x[j0:j1].T, out=zt)
                _activate_rows(zt, bias[i0:i1], act_id, act_param)
                h_out[r, j0:j1] += zt.T @ a_rows[:, i0:i1].T
        h_out[r] *= scale


def velocity(thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w, train_b,
             v_out):
    """Particle velocities of :func:`meanfield_sim.kernels.cpu.velocity`, tile by tile:
    v_a = -S G, v_w = -C X, v_b = -C 1 summed over the data tiles (see the module docstring)."""
    R, p, m = thetaT.shape
    d, n = xT.shape
    dtype = thetaT.dtype
    x = xT.T
    need_slope = train_w or train_b
    z = np.empty((min(PARTICLE_TILE, m), min(DATA_TILE, n)), dtype=dtype)
    value, coef = np.empty_like(z), np.empty_like(z)
    acc = np.empty((m, p))
    for r in range(R):
        w_rows, a_rows, bias = thetaT[r, k:k + d], thetaT[r, :k], thetaT[r, p - 1]
        g_rows = np.asarray(dualT[r], dtype=dtype)  # G^T (k, n), scaled to [-1, 1]
        acc[:] = 0.0
        for i0, i1 in _tiles(m, PARTICLE_TILE):
            for j0, j1 in _tiles(n, DATA_TILE):
                zt, vt, ct = (buf[:i1 - i0, :j1 - j0] for buf in (z, value, coef))
                np.matmul(w_rows[:, i0:i1].T, x[j0:j1].T, out=zt)
                g_tile = g_rows[:, j0:j1]
                if need_slope:
                    np.matmul(a_rows[:, i0:i1].T, g_tile, out=ct)
                _pair_terms(zt, bias[i0:i1], ct, act_id, act_param, vt, need_slope)
                if train_a:
                    acc[i0:i1, :k] += vt @ g_tile.T
                if need_slope:
                    acc[i0:i1, k:k + d] += zt @ x[j0:j1]
                    acc[i0:i1, p - 1] += zt.sum(axis=1)
        speed = -math.exp(log_scale[r])
        for lo, hi, trained in ((0, k, train_a), (k, k + d, train_w), (p - 1, p, train_b)):
            v_out[r, :, lo:hi] = speed * acc[:, lo:hi] if trained else 0.0


loss_pass = cpu_kernels.loss_pass  # the O(n k) loss pass has nothing to block


def warm_up(dtype) -> None:
    """Compile this module's Numba kernels for storage type ``dtype`` (see ``cpu.warm_up``)."""
    z, bias = np.zeros((1, 1), dtype=dtype), np.zeros(1, dtype=dtype)
    _activate_rows(z, bias, 0, 0.0)
    _pair_terms(z, bias, z.copy(), 0, 0.0, z.copy(), True)


JIT_KERNELS = (_activate_rows, _pair_terms)  # compiled, disk-cached
cpu_kernels.stamp_disk_cache(*JIT_KERNELS)
