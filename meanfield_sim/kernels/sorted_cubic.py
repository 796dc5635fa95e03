"""The sorted kernels' passes for the flat sigmoid of Section 5.2 (:mod:`.sorted1d` finds the
ranges): sigma(z) = 0 (z <= 0), 3 z^2 - 2 z^3 (0 < z < 1), 1 (z >= 1), with
sigma'(z) = 6 z (1 - z) on (0, 1) and 0 elsewhere (C^1: sigma and sigma' agree at both edges).

Along the sorted data a particle's pre-activation z = w x + b is monotone, so its data split
into three index ranges: zero (z <= 0), band (0 < z < 1) and saturated (z >= 1); the counts at
the two edges (c0 at z = 0, c1 at z = 1) delimit them:

    w >= 0:  zero [0, c0), band [c0, c1), saturated [c1, n)
    w < 0:   saturated [0, c1), band [c1, c0), zero [c0, n)

(w = 0: all data in one range, by b). On the band, with z = w x + b expanded in x,

    sigma  = c3 x^3 + c2 x^2 + c1 x + c0,  c3 = -2 w^3, c2 = 3 w^2 (1 - 2b),
             c1 = 6 w b (1 - b), c0 = b^2 (3 - 2b);
    sigma' = d2 x^2 + d1 x + d0,           d2 = -6 w^2, d1 = 6 w (1 - 2b), d0 = 6 b (1 - b).

Forward pass: h(x_(j)) = s_m sum_i a_i sigma(z_i(x_(j))) = s_m (C3 x^3 + C2 x^2 + C1 x + C0)
at j, where C sums the band coefficients a_i c of the particles whose band holds j, plus a_i
(in C0) of those saturated at j: a difference array over j, as for ReLU (:mod:`.sorted_linear`).
Velocity: with the prefix moments P_e[c] = sum_{j < c} g_j x_j^e (e = 0..3) and
M_e = P_e[hi] - P_e[lo] over the band [lo, hi), S0 over the saturated range,

    sum_j g sigma         = c3 M3 + c2 M2 + c1 M1 + c0 M0 + S0,
    sum_j g sigma' x_j    = d2 M3 + d1 M2 + d0 M1,
    sum_j g sigma'        = d2 M2 + d1 M1 + d0 M0.

Accuracy. The expanded cubic cancels: on the band |z| < 1, but its terms are as large as
(|w x| + |b|)^3, 10^6 for a particle of slope 50 at x = 2. So everything here is double-double
(:mod:`.doubledouble`): the coefficients from (w, b), the products x^e, the prefix and difference
sums and the final combinations, each rounded to float64 once at the end. A velocity sum V then
errs by at most eps |V| + about 16 (n + 8) eps^2 sum_j |g_j| (|w x_j| + |b| + 1)^3 (eps = 2^-53),
and an output likewise with sum_i |a_i| for sum_j |g_j|: float64 accuracy for slopes up to
|w x| ~ 10^4, where the pairwise kernels, which evaluate z once per pair, are exact to a few
eps |z| too. Cost: O(k) double-double operations per particle with data in its band, O(k)
float64 ones per particle without, O(n k) for the moments.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import doubledouble as dd
from .sorted_ranges import verified_count

_OPTIONS = dict(cache=True, error_model="numpy")


@njit(inline="always", **_OPTIONS)
def _ranges(w, c0, c1, n):
    """(band lo, band hi, saturated lo, saturated hi) from the counts (module docstring)."""
    if w >= 0.0:
        return c0, c1, c1, n
    return c1, c0, 0, c1


@njit(inline="always", **_OPTIONS)
def _band_coefficients(w, b):
    """The double-double coefficients (hi, lo) of sigma = c3 x^3 + ... + c0 and
    sigma' = d2 x^2 + d1 x + d0 on the band (module docstring), as one tuple
    (c3, c2, c1, c0, d2, d1, d0)."""
    w2h, w2l = dd.two_prod(w, w)
    w3h, w3l = dd.mul_d(w2h, w2l, w)
    one_2b = dd.two_sum(1.0, -2.0 * b)
    one_b = dd.two_sum(1.0, -b)
    three_2b = dd.two_sum(3.0, -2.0 * b)
    t = dd.mul(w2h, w2l, one_2b[0], one_2b[1])
    c2 = dd.mul_d(t[0], t[1], 3.0)
    wb = dd.two_prod(w, b)
    t = dd.mul(wb[0], wb[1], one_b[0], one_b[1])
    c1 = dd.mul_d(t[0], t[1], 6.0)
    b2 = dd.two_prod(b, b)
    c0 = dd.mul(b2[0], b2[1], three_2b[0], three_2b[1])
    d2 = dd.mul_d(w2h, w2l, -6.0)
    t = dd.mul_d(one_2b[0], one_2b[1], w)
    d1 = dd.mul_d(t[0], t[1], 6.0)
    t = dd.mul_d(one_b[0], one_b[1], b)
    d0 = dd.mul_d(t[0], t[1], 6.0)
    return (-2.0 * w3h, -2.0 * w3l), c2, c1, c0, d2, d1, d0


@njit(inline="always", **_OPTIONS)
def _scatter(d, j, q, e, hi, lo):
    """d[j, q, e] += hi + lo, in double-double."""
    d[j, q, e, 0], d[j, q, e, 1] = dd.add(d[j, q, e, 0], d[j, q, e, 1], hi, lo)


@njit(parallel=True, **_OPTIONS)
def forward(thetaT, lookup, order, counts, k, scale, chunks, h_out):
    """h_out[r, order[j], q] = scale sum_i a_iq sigma(w_i xs[j] + b_i) (module docstring),
    from the particles' counts (R, 2, m), verified and updated here; lookup = (xs, buckets,
    lo_x, per_x) (``sorted_ranges``)."""
    R, _, m = thetaT.shape
    xs = lookup[0]
    n = xs.shape[0]
    per_chunk = (m + chunks - 1) // chunks
    # diff[r, c, j, q, e, 0 / 1]: hi / lo of the coefficient of x^(3 - e)
    diff = np.zeros((R, chunks, n + 1, k, 4, 2))
    for rc in prange(R * chunks):
        r, c = rc // chunks, rc % chunks
        d = diff[r, c]
        for i in range(c * per_chunk, min((c + 1) * per_chunk, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            for e in range(2):
                counts[r, e, i] = verified_count(w, b, lookup, counts[r, e, i], e)
            lo, hi, sat_lo, sat_hi = _ranges(w, counts[r, 0, i], counts[r, 1, i], n)
            band = lo < hi
            if band:
                coefficients = _band_coefficients(w, b)
            for q in range(k):
                a = np.float64(thetaT[r, q, i])
                if band:
                    for e in range(4):
                        ch, cl = dd.mul_d(coefficients[e][0], coefficients[e][1], a)
                        _scatter(d, lo, q, e, ch, cl)
                        _scatter(d, hi, q, e, -ch, -cl)  # d[n] is never read
                if sat_lo < sat_hi:
                    _scatter(d, sat_lo, q, 3, a, 0.0)
                    _scatter(d, sat_hi, q, 3, -a, 0.0)
    for r in prange(R):
        run = np.zeros((k, 4, 2))
        for j in range(n):
            for c in range(chunks):
                for q in range(k):
                    for e in range(4):
                        run[q, e, 0], run[q, e, 1] = dd.add(
                            run[q, e, 0], run[q, e, 1], diff[r, c, j, q, e, 0],
                            diff[r, c, j, q, e, 1])
            x = xs[j]
            for q in range(k):
                ph, pl = run[q, 0, 0], run[q, 0, 1]
                for e in range(1, 4):  # Horner
                    ph, pl = dd.mul_d(ph, pl, x)
                    ph, pl = dd.add(ph, pl, run[q, e, 0], run[q, e, 1])
                h_out[r, order[j], q] = scale * (ph + pl)


@njit(parallel=True, **_OPTIONS)
def range_moments(dualT, xs, order, sums):
    """sums[r, c, q, e] = (hi, lo) of sum_{j < c} g_r,order[j],q xs[j]^e over the sorted data,
    e = 0..3, c = 0..n, in double-double."""
    R, k, n = dualT.shape
    for r in prange(R):
        for q in range(k):
            sums[r, 0, q, :, :] = 0.0
            for j in range(n):
                g = np.float64(dualT[r, q, order[j]])
                x = xs[j]
                x2 = dd.two_prod(x, x)
                powers = ((1.0, 0.0), (x, 0.0), x2, dd.mul_d(x2[0], x2[1], x))
                for e in range(4):
                    th, tl = dd.mul_d(powers[e][0], powers[e][1], g)
                    sums[r, j + 1, q, e, 0], sums[r, j + 1, q, e, 1] = dd.add(
                        sums[r, j, q, e, 0], sums[r, j, q, e, 1], th, tl)


def moments_shape(R: int, n: int, k: int) -> tuple:
    """The shape of range_moments' ``sums``."""
    return (R, n + 1, k, 4, 2)


@njit(inline="always", **_OPTIONS)
def _moment(sums, r, q, e, lo, hi):
    """sum_{lo <= j < hi} g x^e, double-double."""
    return dd.add(sums[r, hi, q, e, 0], sums[r, hi, q, e, 1],
                  -sums[r, lo, q, e, 0], -sums[r, lo, q, e, 1])


@njit(inline="always", **_OPTIONS)
def _dot(start, coefficients, moments, first_c, first_m, count):
    """start + sum_{t < count} coefficients[first_c + t] moments[first_m + t], all
    double-double, rounded."""
    sh, sl = start
    for t in range(count):
        c, mo = coefficients[first_c + t], moments[first_m + t]
        ph, pl = dd.mul(c[0], c[1], mo[0], mo[1])
        sh, sl = dd.add(sh, sl, ph, pl)
    return sh + sl


@njit(parallel=True, **_OPTIONS)
def velocity(thetaT, sums, lookup, counts, log_scale, k, train_a, train_w, train_b, v_out):
    """v_out[r, i] from the prefix moments and the particles' counts, verified and updated here
    (module docstring); frozen groups get 0."""
    R, _, m = thetaT.shape
    n = sums.shape[1] - 1
    blocks = (m + 1023) // 1024
    for rb in prange(R * blocks):
        r = rb // blocks
        speed = -np.exp(log_scale[r])
        for i in range((rb % blocks) * 1024, min((rb % blocks + 1) * 1024, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            for e in range(2):
                counts[r, e, i] = verified_count(w, b, lookup, counts[r, e, i], e)
            lo, hi, sat_lo, sat_hi = _ranges(w, counts[r, 0, i], counts[r, 1, i], n)
            band = lo < hi
            if band:
                coefficients = _band_coefficients(w, b)
            slope_w = slope_b = 0.0
            for q in range(k):
                sh, sl = _moment(sums, r, q, 0, sat_lo, sat_hi)
                value = sh + sl
                if band:
                    moments = (_moment(sums, r, q, 3, lo, hi), _moment(sums, r, q, 2, lo, hi),
                               _moment(sums, r, q, 1, lo, hi), _moment(sums, r, q, 0, lo, hi))
                    a = np.float64(thetaT[r, q, i])
                    # S0 + (c3, c2, c1, c0) . (M3, M2, M1, M0); (d2, d1, d0) . (M3, M2, M1)
                    value = _dot((sh, sl), coefficients, moments, 0, 0, 4)
                    slope_w += a * _dot((0.0, 0.0), coefficients, moments, 4, 0, 3)
                    slope_b += a * _dot((0.0, 0.0), coefficients, moments, 4, 1, 3)
                v_out[r, i, q] = speed * value if train_a else 0.0
            v_out[r, i, k] = speed * slope_w if train_w else 0.0
            v_out[r, i, k + 1] = speed * slope_b if train_b else 0.0


JIT_KERNELS = (forward, range_moments, velocity)
