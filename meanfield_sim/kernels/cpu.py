"""Numba CPU kernels for the two-layer network: forward pass, loss pass, particle velocities.

Shapes: particles in structure-of-arrays form ``thetaT`` (R, p, m) with p = k + d + 1 and rows
[a (k rows) | w (d rows) | b]; data ``x`` (n, d) and ``xT`` (d, n); outputs and dual weights
(R, n, k). ``thetaT``, ``x`` and the dual weights given to ``velocity`` may be float32 or
float64, the "storage type"; outputs and velocities are float64. Every pass computes in the
storage type and sums in it over short blocks (TILE particles or data points, FLUSH data points
in ``_velocity_1d``), adding the blocks in float64.

No kernel forms the m x n matrix of pre-activations z_ij = w_i . x_j + b_i. The forward pass
reduces over particles for a block of data points (parallel over (r, data block)), walking the
particles in tiles of ``TILE``. The backward pass (``velocity``) has three loop orders. For
d = 1, k = 1 (the paper's regime) it takes a tile of particles per parallel item and walks the
data points four at a time, one fused loop along the tile for the four (``_pair_pass``): the
vector loop keeps the tile's length even at n = 10, and each particle's operands and
accumulators are loaded once per four pairs (register blocking, measured 2x to 3x faster for
ReLU than a loop per point; the exponential activations, compute-bound, keep a loop per point
within the four: ``_pair_pass_by_point``). The forward pass fuses its d = 1, k = 1 loop the
same way (``_output_pass``, four sums per loop). Other shapes with n < ``TILES_BELOW_N`` take the same
order with a few vector loops per data point (``_velocity_tiles``); the rest take a block of
particles per item and walk the data in tiles, recomputing z into a buffer that stays in L1
and reducing it with element-wise loops (affine map, activation, dot products) that LLVM
vectorises (``_velocity_general``). The forward and velocity kernels only may reassociate sums
and contract multiply-adds (``fastmath`` reassoc, contract, nsz, arcp; never nnan/ninf, so
infinities and NaNs survive), so sums are not bitwise equal to a serial left-to-right sum but
are deterministic for a given machine, thread count and input.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from numba import njit, prange

from ..model.activations import (_flat, _flat_slope, _leaky, _leaky_slope, _relu, _relu_slope,
                                 _sigmoid, _sigmoid_slope, _softplus, _softplus_slope, _tanh,
                                 _tanh_slope, activate_tile, activate_tile_with_slope)
from ..model.losses import binary_loss, softmax_ce
from ..model.numeric import KERNEL_OPTIONS, like

TILE = 256          # entries of the reduction axis per tile
DATA_BLOCK = 4      # data points per parallel work item of the forward pass
PARTICLE_BLOCK = 16  # particles per parallel work item of _velocity_general
TILES_BELOW_N = 32
"""n below which _velocity_tiles beats _velocity_general (measured on one core, d = 2 to 11,
k = 1 and 3: 2.3x to 3.4x faster at n = 10, even at n = 30 to 50, 0.3x to 0.7x at n = 1000)."""


@njit(inline="always", cache=True)
def _tile_dot(a, b, count):
    """sum_{t < count} a[t] b[t] in a's type; inlined, so it takes the calling kernel's
    fastmath flags."""
    s = like(a, 0.0)
    for t in range(count):
        s += a[t] * b[t]
    return s


@njit(inline="always", cache=True)
def _four(row, j, stop, pad):
    """(row[j], ..., row[j + 3]) with ``pad`` in place of the entries at or past ``stop``."""
    return (row[j], row[j + 1] if j + 1 < stop else pad, row[j + 2] if j + 2 < stop else pad,
            row[j + 3] if j + 3 < stop else pad)


@njit(inline="always", cache=True)
def _output_pass(act_fn, param, b, w, a, x, count):
    """(sum_t a[t] sigma(b[t] + w[t] x[u]) for u < 4) over a tile of particles (d = 1, k = 1):
    four data points per loop, so each particle's operands are loaded once per four pairs; in
    the storage type (float32 storage: four float32 sums of at most TILE terms)."""
    x0, x1, x2, x3 = x
    s0 = s1 = s2 = s3 = like(x0, 0.0)
    for t in range(count):
        bt, wt, at = b[t], w[t], a[t]
        s0 += at * act_fn(bt + wt * x0, param)
        s1 += at * act_fn(bt + wt * x1, param)
        s2 += at * act_fn(bt + wt * x2, param)
        s3 += at * act_fn(bt + wt * x3, param)
    return s0, s1, s2, s3


@njit(inline="always", cache=True)
def _output_sum(act_fn, param, b, w, a, x, count):
    """sum_t a[t] sigma(b[t] + w[t] x) over a tile of particles, for one data point x."""
    s = like(x, 0.0)
    for t in range(count):
        s += a[t] * act_fn(b[t] + w[t] * x, param)
    return s


@njit(inline="always", cache=True)
def _output_pass_by_point(act_fn, param, b, w, a, x, count):
    """:func:`_output_pass` one data point per loop: for the activations whose exponential
    makes them compute-bound (four points per loop measured 1.1x to 1.3x faster for the
    sigmoid, for twice the compile time)."""
    return (_output_sum(act_fn, param, b, w, a, x[0], count),
            _output_sum(act_fn, param, b, w, a, x[1], count),
            _output_sum(act_fn, param, b, w, a, x[2], count),
            _output_sum(act_fn, param, b, w, a, x[3], count))


@njit(inline="always", cache=True)
def _outputs_1d(act_id, param, b, w, a, x, count):
    """The four sums of :func:`_output_pass` with the activation chosen outside the loop."""
    if act_id == 0:
        return _output_pass(_relu, param, b, w, a, x, count)
    if act_id == 1:
        return _output_pass(_leaky, param, b, w, a, x, count)
    if act_id == 2:
        return _output_pass_by_point(_sigmoid, param, b, w, a, x, count)
    if act_id == 3:
        return _output_pass_by_point(_tanh, param, b, w, a, x, count)
    if act_id == 4:
        return _output_pass_by_point(_softplus, param, b, w, a, x, count)
    return _output_pass(_flat, param, b, w, a, x, count)


@njit(parallel=True, **KERNEL_OPTIONS)
def forward(thetaT, x, k, act_id, act_param, scale, h_out):
    """h_out[r, j, :] = scale * sum_i a_ri sigma(w_ri . x_j + b_ri)   (h_out: float64)."""
    R, p, m = thetaT.shape
    n, d = x.shape
    blocks = (n + DATA_BLOCK - 1) // DATA_BLOCK
    if k == 1 and d == 1:  # the paper's regime: the block's four points in one loop per tile
        for rb in prange(R * blocks):
            r = rb // blocks
            j_lo = (rb - r * blocks) * DATA_BLOCK
            points = _four(x[:, 0], j_lo, n, x[n - 1, 0])
            acc = np.zeros(DATA_BLOCK)
            for i0 in range(0, m, TILE):
                # contiguous views: plain indices in the tile loops let LLVM vectorise them
                count = min(TILE, m - i0)
                sums = _outputs_1d(act_id, act_param, thetaT[r, 2, i0:i0 + count],
                                   thetaT[r, 1, i0:i0 + count], thetaT[r, 0, i0:i0 + count],
                                   points, count)
                for u in range(DATA_BLOCK):
                    acc[u] += sums[u]
            for u in range(min(DATA_BLOCK, n - j_lo)):
                h_out[r, j_lo + u, 0] = scale * acc[u]
        return
    for rb in prange(R * blocks):
        r = rb // blocks
        j_lo = (rb - r * blocks) * DATA_BLOCK
        z = np.empty(min(TILE, m), dtype=thetaT.dtype)
        acc = np.empty(k)
        for j in range(j_lo, min(j_lo + DATA_BLOCK, n)):
            acc[:] = 0.0
            for i0 in range(0, m, TILE):
                count = min(TILE, m - i0)
                bias = thetaT[r, p - 1, i0:i0 + count]
                for t in range(count):
                    z[t] = bias[t]
                for l in range(d):
                    xl = x[j, l]
                    wl = thetaT[r, k + l, i0:i0 + count]
                    for t in range(count):
                        z[t] += wl[t] * xl
                activate_tile(z, count, act_id, act_param)
                for q in range(k):
                    acc[q] += _tile_dot(thetaT[r, q, i0:i0 + count], z, count)
            for q in range(k):
                h_out[r, j, q] = scale * acc[q]


PARALLEL_LOSS_POINTS = 1000
"""R n below which the loss pass runs on one thread: a point costs some 30 ns, a parallel
region's start more than 200 such points (measured: R = 1, n = 200, 12 us in a parallel region)."""


def loss_pass(h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out, log_scale_out):
    """Risk and dual weights g_rjq = p_j dl/dh_q (h_rj) of every replica, in scaled form.

    dual_out[r] = g_r / exp(log_scale_out[r]) with log_scale_out[r] = max_jq log|g_rjq|, so the
    entries lie in [-1, 1] and are exact even where g itself underflows float64. Also returns
    risk_out[r] = sum_j p_j l_j and log_risk_out[r] = log of that sum, finite where the risk
    underflows. Points of weight 0 are skipped. Parallel over replicas where R > 1 and
    R n >= PARALLEL_LOSS_POINTS, serial otherwise.
    """
    R, n, _ = h.shape
    kernel = _loss_pass_parallel if R > 1 and R * n >= PARALLEL_LOSS_POINTS else _loss_pass_serial
    kernel(h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out, log_scale_out)


@njit(inline="always", cache=True)
def _replica_loss(r, h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out,
                  log_scale_out):
    """:func:`loss_pass` for replica r."""
    n, k = h.shape[1], h.shape[2]
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


@njit(parallel=True, cache=True)
def _loss_pass_parallel(h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out,
                        log_scale_out):
    for r in prange(h.shape[0]):
        _replica_loss(r, h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out,
                      log_scale_out)


@njit(cache=True)
def _loss_pass_serial(h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out,
                      log_scale_out):
    for r in range(h.shape[0]):
        _replica_loss(r, h, label, log_weight, loss_id, dual_out, risk_out, log_risk_out,
                      log_scale_out)


@njit(inline="always", cache=True)
def _pair_pass(slope_fn, param, b, w, a, x, g, count, acc_a, acc_w, acc_b):
    """For four data points x[u] (d = 1, k = 1) with dual weights g[u] and a tile of particles:
    z = b + w x[u], c_u = g[u] sigma'(z); acc_a += sum_u g[u] sigma(z),
    acc_w += a sum_u c_u x[u], acc_b += a sum_u c_u. One loop over the tile for all four points,
    so each particle's operands and accumulators are loaded once per four pairs (2x to 3x faster
    than a loop per point for ReLU, measured); all in the storage type."""
    x0, x1, x2, x3 = x
    g0, g1, g2, g3 = g
    for t in range(count):
        bt, wt = b[t], w[t]
        v0, s0 = slope_fn(bt + wt * x0, param)
        v1, s1 = slope_fn(bt + wt * x1, param)
        v2, s2 = slope_fn(bt + wt * x2, param)
        v3, s3 = slope_fn(bt + wt * x3, param)
        c0, c1, c2, c3 = g0 * s0, g1 * s1, g2 * s2, g3 * s3
        acc_a[t] += (g0 * v0 + g1 * v1) + (g2 * v2 + g3 * v3)
        acc_w[t] += a[t] * ((c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3))
        acc_b[t] += a[t] * ((c0 + c1) + (c2 + c3))


@njit(inline="always", cache=True)
def _pair_pass_by_point(slope_fn, param, b, w, a, x, g, count, acc_a, acc_w, acc_b):
    """:func:`_pair_pass` one data point per loop, for the exponential activations (as
    :func:`_output_pass_by_point`); a padding point (g = 0) is skipped."""
    for u in range(4):
        xu, gu = x[u], g[u]
        if gu == 0.0:
            continue
        for t in range(count):
            value, slope = slope_fn(b[t] + w[t] * xu, param)
            c = gu * a[t] * slope
            acc_a[t] += gu * value
            acc_w[t] += c * xu
            acc_b[t] += c


@njit(inline="always", cache=True)
def _pairs_1d(act_id, param, b, w, a, x, g, count, acc_a, acc_w, acc_b):
    """:func:`_pair_pass` for four data points with the activation chosen outside the loop (a
    branch per four data points and tile, not per pair)."""
    if act_id == 0:
        _pair_pass(_relu_slope, param, b, w, a, x, g, count, acc_a, acc_w, acc_b)
    elif act_id == 1:
        _pair_pass(_leaky_slope, param, b, w, a, x, g, count, acc_a, acc_w, acc_b)
    elif act_id == 2:
        _pair_pass_by_point(_sigmoid_slope, param, b, w, a, x, g, count, acc_a, acc_w, acc_b)
    elif act_id == 3:
        _pair_pass_by_point(_tanh_slope, param, b, w, a, x, g, count, acc_a, acc_w, acc_b)
    elif act_id == 4:
        _pair_pass_by_point(_softplus_slope, param, b, w, a, x, g, count, acc_a, acc_w, acc_b)
    else:
        _pair_pass(_flat_slope, param, b, w, a, x, g, count, acc_a, acc_w, acc_b)


def velocity(thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w, train_b,
             v_out):
    """Particle velocities of the gradient flow, v_ri = -(1/s_m) dR/dtheta_ri:

        v_a = -sum_j g_j sigma(z_ij)
        v_w = -sum_j (g_j . a_i) sigma'(z_ij) x_j
        v_b = -sum_j (g_j . a_i) sigma'(z_ij)

    with g = exp(log_scale[r]) * dualT[r] (dualT: (R, k, n)). The factor s_m of h cancels the
    1/s_m of the time scale, so this is the mean-field (Wasserstein) velocity for s_m = 1/m and
    plain gradient flow for s_m = 1. Frozen groups get velocity 0. v_out: (R, m, p).

    d = 1, k = 1 goes to :func:`_velocity_1d` (vector loops along particles, one fused loop per
    data point); other shapes with n < ``TILES_BELOW_N`` to :func:`_velocity_tiles` (vector
    loops along particles, a few per data point), the rest to :func:`_velocity_general` (vector
    loops along data tiles).
    """
    args = (thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w, train_b)
    if k == 1 and xT.shape[0] == 1:
        return _velocity_1d(*args, v_out)
    if xT.shape[1] < TILES_BELOW_N:
        return _velocity_tiles(*args, v_out)
    return _velocity_general(*args, v_out)


FLUSH = 64
"""Data points whose pair terms a float32 accumulator sums before it is added to the float64
one (``_velocity_1d``): a float32 sum of at most 64 terms, then float64 across blocks."""


@njit(inline="always", cache=True)
def _particle_tile(rb, blocks, m):
    """(replica, first particle, particles) of parallel item rb over tiles of TILE particles."""
    r = rb // blocks
    i0 = (rb - r * blocks) * TILE
    return r, i0, min(TILE, m - i0)


@njit(inline="always", cache=True)
def _write_velocity(v_out, r, i0, total, speed, k, d, train_a, train_w, train_b):
    """v_out[r, i0 + t, e] = speed * total[e, t] for the trained groups of rows e, 0 for the
    frozen ones."""
    p, count = total.shape
    for e in range(p):
        trained = train_a if e < k else (train_w if e < k + d else train_b)
        for t in range(count):
            v_out[r, i0 + t, e] = speed * total[e, t] if trained else 0.0


@njit(parallel=True, **KERNEL_OPTIONS)
def _velocity_1d(thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w, train_b,
                 v_out):
    """:func:`velocity` for d = 1, k = 1: parallel over (replica, tile of ``TILE`` particles);
    for each data point one loop along the tile (``_pairs_1d``) updates its accumulators, so
    the vector loops have the tile's length whatever n is (n = 10 in the paper) and every
    operand is loaded once per pair. The pair terms are computed and summed in the storage
    type, over blocks of ``FLUSH`` data points for float32 (of all n for float64), each block's
    sums then added in float64."""
    R, p, m = thetaT.shape
    n = xT.shape[1]
    blocks = (m + TILE - 1) // TILE
    flush = FLUSH if thetaT.itemsize < 8 else n
    for rb in prange(R * blocks):
        r, i0, count = _particle_tile(rb, blocks, m)
        acc = np.empty((p, count), dtype=thetaT.dtype)  # rows a, w, b
        total = np.zeros((p, count))
        a, w, b = (thetaT[r, 0, i0:i0 + count], thetaT[r, 1, i0:i0 + count],
                   thetaT[r, 2, i0:i0 + count])
        for j0 in range(0, n, flush):
            acc[:] = 0.0
            stop = min(j0 + flush, n)
            for j in range(j0, stop, 4):  # a last partial four: the last point with g = 0
                _pairs_1d(act_id, act_param, b, w, a, _four(xT[0], j, stop, xT[0, stop - 1]),
                          _four(dualT[r, 0], j, stop, like(a, 0.0)), count, acc[0], acc[1],
                          acc[2])
            total += acc
        _write_velocity(v_out, r, i0, total, -math.exp(log_scale[r]), 1, 1, train_a, train_w,
                        train_b)


@njit(parallel=True, **KERNEL_OPTIONS)
def _velocity_tiles(thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w,
                    train_b, v_out):
    """:func:`velocity` for small d and k in the loop order of ``_velocity_1d``: parallel over
    (replica, tile of ``TILE`` particles); for each data point j the tile's z = b + W x_j, sigma
    and sigma' fill L1 buffers, and c = sigma' (A g_j) and the accumulators are updated by
    vector loops along the tile (d + k + 2 of them, each as long as the tile whatever n is).
    Sums in the storage type over blocks of ``FLUSH`` data points, in float64 across blocks."""
    R, p, m = thetaT.shape
    d, n = xT.shape
    need_slope = train_w or train_b
    blocks = (m + TILE - 1) // TILE
    flush = FLUSH if thetaT.itemsize < 8 else n
    for rb in prange(R * blocks):
        r, i0, count = _particle_tile(rb, blocks, m)
        theta = thetaT[r, :, i0:i0 + count]
        bias = theta[p - 1]
        z = np.empty(count, dtype=thetaT.dtype)
        value, c = np.empty_like(z), np.empty_like(z)
        acc = np.empty((p, count), dtype=thetaT.dtype)
        total = np.zeros((p, count))
        for j0 in range(0, n, flush):
            acc[:] = 0.0
            for j in range(j0, min(j0 + flush, n)):
                for t in range(count):
                    z[t] = bias[t]
                for l in range(d):
                    xl, wl = xT[l, j], theta[k + l]
                    for t in range(count):
                        z[t] += wl[t] * xl
                if need_slope:
                    activate_tile_with_slope(z, value, count, act_id, act_param)  # z <- sigma'
                    c[:] = 0.0
                    for q in range(k):
                        gq, aq = like(c, dualT[r, q, j]), theta[q]
                        for t in range(count):
                            c[t] += gq * aq[t]
                    for t in range(count):
                        c[t] *= z[t]
                    for l in range(d):
                        xl, row = xT[l, j], acc[k + l]
                        for t in range(count):
                            row[t] += c[t] * xl
                    row = acc[p - 1]
                    for t in range(count):
                        row[t] += c[t]
                else:
                    for t in range(count):
                        value[t] = z[t]
                    activate_tile(value, count, act_id, act_param)
                if train_a:
                    for q in range(k):
                        gq, row = like(c, dualT[r, q, j]), acc[q]
                        for t in range(count):
                            row[t] += gq * value[t]
            total += acc
        _write_velocity(v_out, r, i0, total, -math.exp(log_scale[r]), k, d, train_a, train_w,
                        train_b)


@njit(parallel=True, **KERNEL_OPTIONS)
def _velocity_general(thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w,
                      train_b, v_out):
    """:func:`velocity` for any d, k: parallel over (replica, block of ``PARTICLE_BLOCK``
    particles); for each particle the data points are walked in tiles of ``TILE``, with z,
    sigma and sigma' recomputed into L1 buffers and reduced by element-wise loops."""
    R, p, m = thetaT.shape
    d, n = xT.shape
    need_slope = train_w or train_b
    blocks = (m + PARTICLE_BLOCK - 1) // PARTICLE_BLOCK
    for rb in prange(R * blocks):
        r = rb // blocks
        i_lo = (rb - r * blocks) * PARTICLE_BLOCK
        size = min(TILE, n)
        z = np.empty(size, dtype=thetaT.dtype)
        s, c = np.empty_like(z), np.empty_like(z)
        acc_a, acc_w = np.empty(k), np.empty(d)
        speed = -math.exp(log_scale[r])
        for i in range(i_lo, min(i_lo + PARTICLE_BLOCK, m)):
            acc_a[:] = 0.0
            acc_w[:] = 0.0
            acc_b = 0.0
            bi = thetaT[r, p - 1, i]
            for j0 in range(0, n, TILE):
                count = min(TILE, n - j0)
                for t in range(count):
                    z[t] = bi
                for l in range(d):
                    wl = thetaT[r, k + l, i]
                    xl = xT[l, j0:j0 + count]
                    for t in range(count):
                        z[t] += wl * xl[t]
                if need_slope:
                    activate_tile_with_slope(z, s, count, act_id, act_param)  # z <- sigma'
                    for t in range(count):
                        c[t] = 0.0
                    for q in range(k):
                        aq = thetaT[r, q, i]
                        gq = dualT[r, q, j0:j0 + count]
                        for t in range(count):
                            c[t] += gq[t] * aq
                    sb = like(c, 0.0)
                    for t in range(count):
                        c[t] *= z[t]
                        sb += c[t]
                    acc_b += sb
                    for l in range(d):
                        acc_w[l] += _tile_dot(c, xT[l, j0:j0 + count], count)
                else:
                    for t in range(count):
                        s[t] = z[t]
                    activate_tile(s, count, act_id, act_param)
                if train_a:
                    for q in range(k):
                        acc_a[q] += _tile_dot(dualT[r, q, j0:j0 + count], s, count)
            for q in range(k):
                v_out[r, i, q] = speed * acc_a[q] if train_a else 0.0
            for l in range(d):
                v_out[r, i, k + l] = speed * acc_w[l] if train_w else 0.0
            v_out[r, i, p - 1] = speed * acc_b if train_b else 0.0


def warm_up(dtype) -> None:
    """Compile every kernel of this module for storage type ``dtype`` (or load it from Numba's
    disk cache) on a one-particle, one-point problem: the signatures depend on the types only,
    so this covers every shape, activation and loss."""
    for d, n in ((1, 1), (2, 1), (2, TILES_BELOW_N)):  # the three velocity loop orders
        p = d + 2
        thetaT, x = np.zeros((1, p, 1), dtype=dtype), np.zeros((n, d), dtype=dtype)
        h, dual, scalars = np.zeros((1, n, 1)), np.zeros((1, n, 1)), np.zeros((3, 1))
        forward(thetaT, x, 1, 0, 0.0, 1.0, h)
        for kernel in (_loss_pass_parallel, _loss_pass_serial):
            kernel(h, np.ones(n, dtype=np.int64), np.zeros(n), 0, dual, *scalars)
        dualT = np.ascontiguousarray(dual.transpose(0, 2, 1), dtype=dtype)
        velocity(thetaT, np.ascontiguousarray(x.T), dualT, scalars[2], 1, 0, 0.0,
                 True, True, True, np.zeros((1, 1, p)))  # into the float64 state's stage buffer


KERNEL_SOURCES = ("kernels/cpu.py", "kernels/blocked.py", "kernels/doubledouble.py",
                  "kernels/sorted_ranges.py",
                  "model/activations.py",
                  "model/losses.py", "model/numeric.py", "model/fastexp.py")


def kernel_source_digest() -> str:
    """SHA-256 of every source file the kernels are compiled from."""
    root = Path(__file__).resolve().parents[1]
    return hashlib.sha256(b"".join((root / f).read_bytes() for f in KERNEL_SOURCES)).hexdigest()


def stamp_disk_cache(*kernels) -> None:
    """Numba invalidates a kernel's disk cache only when the kernel's own file changes; these
    kernels inline functions from model/, so an edit or upgrade there would load stale machine
    code. Stamping each cache with a digest of all their sources makes such a cache miss and
    recompile. (Uses Numba's cache internals; if they move, caching still works as before.)"""
    digest = kernel_source_digest()
    for kernel in kernels:
        cache_file = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
        if cache_file is not None and hasattr(cache_file, "_source_stamp"):
            cache_file._source_stamp = digest


# compiled and cached on disk
JIT_KERNELS = (forward, _loss_pass_parallel, _loss_pass_serial, _velocity_1d, _velocity_tiles,
               _velocity_general)
stamp_disk_cache(*JIT_KERNELS)
