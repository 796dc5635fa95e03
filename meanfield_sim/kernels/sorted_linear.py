"""The sorted kernels' passes for ReLU and leaky ReLU (:mod:`.sorted1d` finds the ranges):
sigma(z) = z (z > 0), p z (z <= 0), ReLU p = 0, so a particle's output is, as a function of x,

    a_i sigma(w_i x + b_i) = p a_i (w_i x + b_i) + (1 - p) [w_i x + b_i > 0] a_i (w_i x + b_i),

with its active set {j : w_i x_(j) + b_i > 0} an index range of the sorted data: a suffix
[c_i, n) for w_i >= 0, a prefix [0, c_i) for w_i < 0 (c_i the particle's count at its one
edge, z = 0).

Forward pass: h(x_(j)) = s_m sum_i a_i sigma(z_i(x_(j))) = s_m (x_(j) C1_j + C0_j), where
C_j = sum over the particles active at j of (1 - p) a_i (w_i, b_i), plus p sum_i a_i (w_i, b_i).
Each particle adds its coefficients where its range starts and subtracts them where it ends, in
a difference array whose running sum over j is C_j.

Velocity (the pairwise kernels' sums, restricted to the active range): with the dual weights
g_j in sorted order, the moments S^(e)_c = sum_{j < c} g_j x_j^e (prefix) and sum_{j >= c}
(suffix), e = 0, 1, for every c = 0..n, S the one of the particle's active range and T the
suffix at c = 0 (all data),

    sum_j g_jq sigma(z_ij)         = (1 - p)(w_i S1_q + b_i S0_q) + p (w_i T1_q + b_i T0_q)
    sum_j g_jq sigma'(z_ij) x_j    = (1 - p) S1_q + p T1_q,     and with x_j^0: S0, T0,

then v_a = -s sum_j g sigma, v_w = -s sum_q a_q (...), v_b likewise, with the scale
s = exp(log_scale) of the scaled dual weights (``cpu.velocity``). O(m k + n k).

Accuracy. Every running sum (the difference array, its sweep, the prefix sums) is kept in
double-double, so every range moment S is the correctly rounded value of sums carried to about
2^-106: its error is at most eps |S| + 4 n eps^2 sum_j |g_j x_j^e| (eps = 2^-53), where plain
prefix sums would lose up to eps sum_j |g_j x_j^e| to cancellation. The final combinations
w S1 + b S0 and x C1 + C0 add eps (|w S1| + |b S0|) and eps (|x C1| + |C0|), the error of
evaluating each particle's term a (w x + b) in expanded form (pairwise: eps |a z|); the sums
agree with the pairwise kernels to about 1e-15 relative to the largest velocity
(tests/test_sorted_kernels.py).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .doubledouble import two_sum
from .sorted_ranges import verified_count

SWEEP_CHUNKS = 8
"""Particle chunks of the forward pass, each with its own difference array (so that the
scatter runs in parallel); their sum is taken in the sweep. Fewer where n is not small
against m: the arrays take chunks (n + 1) 4 k doubles."""

# no fastmath anywhere here: reassociation would undo the two-sums
_OPTIONS = dict(cache=True, error_model="numpy")


def sweep_chunks(m: int, n: int) -> int:
    """The forward passes' particle chunks: at most SWEEP_CHUNKS, with chunks n <= m, so that
    their difference arrays take O(m) memory."""
    return max(1, min(SWEEP_CHUNKS, m // 4096, m // (n + 1)))


@njit(inline="always", **_OPTIONS)
def _active_range(w, count, n):
    """[lo, hi) of a particle from its count at the edge z = 0."""
    return (count, n) if w >= 0.0 else (0, count)


@njit(parallel=True, **_OPTIONS)
def forward(thetaT, lookup, order, counts, k, leak_p, scale, chunks, h_out):
    """h_out[r, order[j], q] = scale sum_i a_iq sigma(w_i xs[j] + b_i) (module docstring),
    from the particles' counts (R, 1, m), verified and updated here; lookup = (xs, buckets,
    lo_x, per_x) (``sorted_ranges``)."""
    R, _, m = thetaT.shape
    xs = lookup[0]
    n = xs.shape[0]
    per_chunk = (m + chunks - 1) // chunks
    # diff[r, c, j, q, e, 0 / 1]: hi / lo of the coefficient e (0: of x, 1: constant)
    diff = np.zeros((R, chunks, n + 1, k, 2, 2))
    for rc in prange(R * chunks):
        r, c = rc // chunks, rc % chunks
        d = diff[r, c]
        for i in range(c * per_chunk, min((c + 1) * per_chunk, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            counts[r, 0, i] = verified_count(w, b, lookup, counts[r, 0, i], 0)
            lo, hi = _active_range(w, counts[r, 0, i], n)
            for q in range(k):
                a = np.float64(thetaT[r, q, i])
                for e in range(2):
                    coef = a * (w if e == 0 else b)
                    if leak_p != 0.0:  # the p a (w x + b) of every particle, at j = 0
                        d[0, q, e, 0], err = two_sum(d[0, q, e, 0], leak_p * coef)
                        d[0, q, e, 1] += err
                        coef = (1.0 - leak_p) * coef
                    if lo < hi:
                        d[lo, q, e, 0], err = two_sum(d[lo, q, e, 0], coef)
                        d[lo, q, e, 1] += err
                        if hi < n:  # the sweep never reaches d[n]
                            d[hi, q, e, 0], err = two_sum(d[hi, q, e, 0], -coef)
                            d[hi, q, e, 1] += err
    for r in prange(R):
        run = np.zeros((k, 2, 2))
        for j in range(n):
            for c in range(chunks):
                for q in range(k):
                    for e in range(2):
                        run[q, e, 0], err = two_sum(run[q, e, 0], diff[r, c, j, q, e, 0])
                        run[q, e, 1] += err + diff[r, c, j, q, e, 1]
            x = xs[j]
            for q in range(k):
                slope = run[q, 0, 0] + run[q, 0, 1]
                offset = run[q, 1, 0] + run[q, 1, 1]
                h_out[r, order[j], q] = scale * (x * slope + offset)


@njit(parallel=True, **_OPTIONS)
def range_moments(dualT, xs, order, sums):
    """sums[r, c, 0 / 1, q, e] = sum over the sorted data j < c / j >= c of
    g_r,order[j],q xs[j]^e (e = 0, 1): the moments over every active range a particle can have
    (a prefix [0, c) for w < 0, a suffix [c, n) for w >= 0), each the correctly rounded value
    of double-double prefix sums (module docstring)."""
    R, k, n = dualT.shape
    for r in prange(R):
        hi, lo = np.zeros(n + 1), np.zeros(n + 1)  # the double-double prefix sums
        for q in range(k):
            for e in range(2):
                for j in range(n):
                    g = np.float64(dualT[r, q, order[j]])
                    hi[j + 1], err = two_sum(hi[j], g if e == 0 else g * xs[j])
                    lo[j + 1] = lo[j] + err
                for c in range(n + 1):
                    sums[r, c, 0, q, e] = hi[c] + lo[c]
                    top, err = two_sum(hi[n], -hi[c])
                    sums[r, c, 1, q, e] = top + (err + (lo[n] - lo[c]))


def moments_shape(R: int, n: int, k: int) -> tuple:
    """The shape of range_moments' ``sums``."""
    return (R, n + 1, 2, k, 2)


@njit(parallel=True, **_OPTIONS)
def velocity(thetaT, sums, lookup, counts, log_scale, k, leak_p, train_a, train_w, train_b,
             v_out):
    """v_out[r, i] from the range moments and the particles' counts, verified and updated here
    (module docstring); frozen groups get 0."""
    R, _, m = thetaT.shape
    blocks = (m + 1023) // 1024
    for rb in prange(R * blocks):
        r = rb // blocks
        speed = -np.exp(log_scale[r])
        for i in range((rb % blocks) * 1024, min((rb % blocks + 1) * 1024, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            c = counts[r, 0, i] = verified_count(w, b, lookup, counts[r, 0, i], 0)
            side = 1 if w >= 0.0 else 0  # suffix [c, n) or prefix [0, c)
            slope_w = slope_b = 0.0
            for q in range(k):
                s0, s1 = sums[r, c, side, q, 0], sums[r, c, side, q, 1]
                value = w * s1 + b * s0
                if leak_p != 0.0:
                    t0, t1 = sums[r, 0, 1, q, 0], sums[r, 0, 1, q, 1]  # all data
                    value = (1.0 - leak_p) * value + leak_p * (w * t1 + b * t0)
                    s0 = (1.0 - leak_p) * s0 + leak_p * t0
                    s1 = (1.0 - leak_p) * s1 + leak_p * t1
                a = np.float64(thetaT[r, q, i])
                slope_w += a * s1
                slope_b += a * s0
                v_out[r, i, q] = speed * value if train_a else 0.0
            v_out[r, i, k] = speed * slope_w if train_w else 0.0
            v_out[r, i, k + 1] = speed * slope_b if train_b else 0.0


JIT_KERNELS = (forward, range_moments, velocity)
