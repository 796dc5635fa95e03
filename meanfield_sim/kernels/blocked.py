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
recomputed in the backward pass rather than stored). Which of the two modules serves a shape is
decided by :func:`use_blocked`.

Threads: the particle tiles are a Numba ``prange``, each tile's products single-threaded BLAS
calls (``threadpoolctl`` holds BLAS to one thread meanwhile). Letting BLAS thread each product
instead and running the element-wise parts between them measured 1.3x to 2.8x slower on 2
cores, and a parallel Numba region between multi-threaded BLAS calls 10x slower (OpenBLAS's
threads spin after a call and take the cores Numba's threads need).

Precision: the products run in the storage type (so float32 storage computes in float32: each
tile's sum over d, |P| or |Q| terms accumulates in float32 inside BLAS), and the tiles' partial
sums accumulate in float64 (h_out and the velocity accumulators are float64).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

from ..model.activations import activate_tile, activate_tile_with_slope
from . import cpu as cpu_kernels
from ..model.numeric import KERNEL_OPTIONS, like

PARTICLE_TILE = 256
DATA_TILE = 1024
MIN_FEATURES = 12
"""d + k from which the blocked passes serve a shape (``use_blocked``): measured by
benchmarks/bench.py on 2 cores, below it the Numba loops of :mod:`.cpu` are faster."""


def use_blocked(d: int, k: int) -> bool:
    """Whether (d, k) is large enough for the tiled matrix-product passes to win."""
    return d + k >= MIN_FEATURES


@njit(parallel=True, **KERNEL_OPTIONS)
def _forward_blocks(thetaT, x, k, act_id, act_param, scale, h_out):
    """:func:`forward` on the tiles: parallel over (replica, particle tile), each tile's
    contribution S^T A_P to h kept apart and summed afterwards (in float64)."""
    R, p, m = thetaT.shape
    n, d = x.shape
    tiles = (m + PARTICLE_TILE - 1) // PARTICLE_TILE
    parts = np.zeros((R * tiles, n, k))
    for rb in prange(R * tiles):
        r = rb // tiles
        i0 = (rb - r * tiles) * PARTICLE_TILE
        count = min(PARTICLE_TILE, m - i0)
        w = np.ascontiguousarray(thetaT[r, k:k + d, i0:i0 + count].T)   # W_P (|P|, d)
        a = np.ascontiguousarray(thetaT[r, :k, i0:i0 + count].T)        # A_P (|P|, k)
        bias = thetaT[r, p - 1, i0:i0 + count]
        for j0 in range(0, n, DATA_TILE):
            j1 = min(j0 + DATA_TILE, n)
            z = w @ x[j0:j1].T
            for i in range(count):
                row, bi = z[i], bias[i]
                for t in range(j1 - j0):
                    row[t] += bi
                activate_tile(row, j1 - j0, act_id, act_param)
            parts[rb, j0:j1] += z.T @ a
    for r in range(R):
        for j in prange(n):
            for q in range(k):
                total = 0.0
                for tile in range(tiles):
                    total += parts[r * tiles + tile, j, q]
                h_out[r, j, q] = scale * total


@njit(parallel=True, **KERNEL_OPTIONS)
def _velocity_blocks(thetaT, x, g, log_scale, k, act_id, act_param, train_a, train_w, train_b,
                    v_out):
    """:func:`velocity` on the tiles, parallel over (replica, particle tile); g (R, n, k) are
    the scaled dual weights in the storage type."""
    R, p, m = thetaT.shape
    n, d = x.shape
    tiles = (m + PARTICLE_TILE - 1) // PARTICLE_TILE
    need_slope = train_w or train_b
    for rb in prange(R * tiles):
        r = rb // tiles
        i0 = (rb - r * tiles) * PARTICLE_TILE
        count = min(PARTICLE_TILE, m - i0)
        w = np.ascontiguousarray(thetaT[r, k:k + d, i0:i0 + count].T)
        a = np.ascontiguousarray(thetaT[r, :k, i0:i0 + count].T)
        bias = thetaT[r, p - 1, i0:i0 + count]
        acc = np.zeros((count, p))
        for j0 in range(0, n, DATA_TILE):
            j1 = min(j0 + DATA_TILE, n)
            width = j1 - j0
            x_q, g_q = x[j0:j1], g[r, j0:j1]
            z = w @ x_q.T
            coef = a @ g_q.T                          # A_P G_Q^T
            value = np.empty_like(z)
            for i in range(count):
                row, val, c, bi = z[i], value[i], coef[i], bias[i]
                for t in range(width):
                    row[t] += bi
                activate_tile_with_slope(row, val, width, act_id, act_param)  # row <- sigma'
                for t in range(width):
                    row[t] *= c[t]                     # row <- C
            if train_a:
                acc[:, :k] += value @ g_q
            if need_slope:
                acc[:, k:k + d] += z @ x_q
                for i in range(count):
                    total = like(z, 0.0)
                    for t in range(width):
                        total += z[i, t]
                    acc[i, p - 1] += total
        speed = -math.exp(log_scale[r])
        for i in range(count):
            for e in range(p):
                trained = train_a if e < k else (train_w if e < k + d else train_b)
                v_out[r, i0 + i, e] = speed * acc[i, e] if trained else 0.0


def forward(thetaT, x, k, act_id, act_param, scale, h_out):
    """h_out[r, j, :] = scale * sum_i a_ri sigma(w_ri . x_j + b_ri), tile by tile."""
    with threadpool_limits(1, user_api="blas"):
        _forward_blocks(thetaT, x, k, act_id, act_param, scale, h_out)


def velocity(thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w, train_b,
             v_out):
    """Particle velocities of :func:`meanfield_sim.kernels.cpu.velocity`, tile by tile:
    v_a = -S G, v_w = -C X, v_b = -C 1 summed over the data tiles (see the module docstring)."""
    g = np.ascontiguousarray(dualT.transpose(0, 2, 1), dtype=thetaT.dtype)
    with threadpool_limits(1, user_api="blas"):
        _velocity_blocks(thetaT, np.ascontiguousarray(xT.T), g, log_scale, k, act_id, act_param,
                        train_a, train_w, train_b, v_out)


loss_pass = cpu_kernels.loss_pass  # the O(n k) loss pass has nothing to block


def warm_up(dtype) -> None:
    """Compile this module's Numba kernels for storage type ``dtype`` (see ``cpu.warm_up``)."""
    thetaT, x = np.zeros((1, 3, 1), dtype=dtype), np.zeros((1, 1), dtype=dtype)
    forward(thetaT, x, 1, 0, 0.0, 1.0, np.zeros((1, 1, 1)))
    velocity(thetaT, x, np.zeros((1, 1, 1)), np.zeros(1), 1, 0, 0.0, True, True, True,
             np.zeros((1, 1, 3)))


JIT_KERNELS = (_forward_blocks, _velocity_blocks)  # compiled, disk-cached
cpu_kernels.stamp_disk_cache(*JIT_KERNELS)
