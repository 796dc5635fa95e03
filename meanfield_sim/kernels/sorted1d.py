"""Exact sort-and-sweep kernels for one-dimensional data (d = 1) and piecewise-linear
activations (ReLU, leaky ReLU): a gradient evaluation in O((m + n) k), after one O(n log n) sort
of the data, instead of the pairwise kernels' O(m n k).

With d = 1 a particle (a_i in R^k, w_i, b_i) has the pre-activation z_i(x) = w_i x + b_i, and
for sigma(z) = z (z > 0), p z (z <= 0) (ReLU: p = 0) its output is, as a function of x,

    a_i sigma(z_i(x)) = p a_i (w_i x + b_i) + (1 - p) [z_i(x) > 0] a_i (w_i x + b_i).

Sort the data once, x_(0) <= ... <= x_(n-1). The set {j : z_i(x_(j)) > 0} of data where the
particle is active is then an index range [lo_i, hi_i): a suffix [lo_i, n) for w_i >= 0 (w_i = 0:
all or nothing, by the sign of b_i), a prefix [0, hi_i) for w_i < 0. Its end is where the
predicate w_i x_(j) + b_i > 0 flips, found from a guess (the bucket of the kink -b_i / w_i in a
table over the data's range) by a walk, with the predicate evaluated as one fused multiply-add:
the exact sign of w x + b, as in the pairwise kernels, whose z = b + w x LLVM contracts into the
same fma on FMA hardware. A data point exactly at a kink is inactive there, as in the pairwise kernels:
sigma'(0) := 0 for ReLU, p for leaky ReLU (``model.activations``).

Forward pass: h(x_(j)) = s_m sum_i a_i sigma(z_i(x_(j))) = s_m (x_(j) C1_j + C0_j), where
C_j = sum over the particles active at j of (1 - p) a_i (w_i, b_i), plus p sum_i a_i (w_i, b_i).
Each particle adds its coefficients at lo_i and subtracts them at hi_i of a difference array;
its running sum over j gives C_j. Cost O(m + n): the sweep, and the ranges, which later calls
start from the last ones, verify in O(1) each and look up again only where a particle's kink
crossed a data point (``_update_counts``), as a sort kept from step to step and repaired would.

Velocity (the pairwise kernels' sums, restricted to the active range): with the dual weights
g_j in sorted order, the moments S^(e)_c = sum_{j < c} g_j x_j^e (prefix) and sum_{j >= c}
(suffix), e = 0, 1, for every c = 0..n (O(n k), from prefix sums), and S the one of the
particle's active range, T = the suffix at c = 0 (all data),

    sum_j g_jq sigma(z_ij)         = (1 - p)(w_i S1_q + b_i S0_q) + p (w_i T1_q + b_i T0_q)
    sum_j g_jq sigma'(z_ij) x_j    = (1 - p) S1_q + p T1_q,     and with x_j^0: S0, T0,

then v_a = -s sum_j g sigma, v_w = -s sum_q a_q (...), v_b likewise, with the scale
s = exp(log_scale) of the scaled dual weights (``cpu.velocity``). O(m k + n k) besides the
ranges.

Accuracy. Every running sum (the difference array, its sweep, the prefix sums) is kept in
double-double (hi + lo, each addition an error-free two-sum), so every range moment S is the
correctly rounded value of sums carried to about 2^-106: its error is at most
eps |S| + 4 n eps^2 sum_j |g_j x_j^e| (eps = 2^-53), where plain prefix sums would lose up to
eps sum_j |g_j x_j^e| to cancellation. The final combinations w S1 + b S0 and x C1 + C0 add
eps (|w S1| + |b S0|) and eps (|x C1| + |C0|), the error of evaluating each particle's term
a (w x + b) in expanded form (pairwise: eps |a z|); the sums agree with the pairwise kernels to
about 1e-15 relative to the largest velocity (tests/test_sorted_kernels.py). The kernels
compute in float64 whatever the storage type: they are O(m + n), so float32 gains nothing.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config.schema import SORTED_ACTIVATIONS  # piecewise linear, one kink at z = 0
from ..model.activations import ACTIVATION_IDS
from ..model.fastexp import _fma
from . import cpu

_SORTED_IDS = tuple(ACTIVATION_IDS[a] for a in SORTED_ACTIVATIONS)

SWEEP_CHUNKS = 8
"""Particle chunks of the forward pass, each with its own difference array (so that the
scatter runs in parallel); their sum is taken in the sweep. Fewer where n is not small
against m: the arrays take chunks (n + 1) 4 k doubles."""

# no fastmath anywhere here: reassociation would undo the two-sums
_OPTIONS = dict(cache=True, error_model="numpy")


def applies(input_dim: int, activation: str) -> bool:
    """Whether the sorted kernels can serve networks with ``input_dim`` inputs and this
    activation."""
    return input_dim == 1 and activation in SORTED_ACTIVATIONS


def leak(act_id: int, act_param: float) -> float:
    """p of sigma(z) = max(z, p z): 0 for ReLU, the slope for leaky ReLU."""
    if act_id not in _SORTED_IDS:
        names = {v: k for k, v in ACTIVATION_IDS.items()}
        raise ValueError(f"the sorted kernels serve {', '.join(SORTED_ACTIVATIONS)}, "
                         f"not {names.get(act_id, act_id)!r}")
    return float(act_param) if act_id == ACTIVATION_IDS["leaky_relu"] else 0.0


@njit(inline="always", **_OPTIONS)
def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth)."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


@njit(inline="always", **_OPTIONS)
def _counted(w, b, x, rising):
    """Whether the point x belongs to the particle's count: inactive (fma(w, x, b) <= 0) for
    w >= 0, active for w < 0. Along sorted data the counted points form a prefix."""
    return (_fma(w, x, b) > 0.0) != rising


@njit(inline="always", **_OPTIONS)
def _counts_right(w, b, xs, c):
    """Whether c is the particle's count: the points before c are counted, the rest not."""
    n = xs.shape[0]
    if c < 0 or c > n:
        return False
    rising = w >= 0.0
    return (c == 0 or _counted(w, b, xs[c - 1], rising)) and \
        (c == n or not _counted(w, b, xs[c], rising))


WALK_LIMIT = 32
"""Steps from the bucket's guess after which ``_locate`` falls back to a binary search."""


@njit(inline="always", **_OPTIONS)
def _locate(w, b, xs, buckets, lo_x, per_x):
    """The particle's count on sorted xs (see _update_counts): a guess from the bucket of its
    kink -b/w (buckets[q] = the number of data below lo_x + q / per_x), then a walk to where the
    predicate flips, exact because the predicate is monotone along xs."""
    n = xs.shape[0]
    rising = w >= 0.0
    if w == 0.0:  # z = b everywhere: all active (count 0 inactive) or none (n inactive)
        return 0 if b > 0.0 else n
    place = (-b / w - lo_x) * per_x
    top = buckets.shape[0] - 1
    c = buckets[0] if not place > 0.0 else (buckets[top] if place >= top else buckets[int(place)])
    steps = 0
    while c < n and _counted(w, b, xs[c], rising) and steps < WALK_LIMIT:
        c += 1
        steps += 1
    while c > 0 and not _counted(w, b, xs[c - 1], rising) and steps < WALK_LIMIT:
        c -= 1
        steps += 1
    if steps < WALK_LIMIT:
        return c
    lo, hi = 0, n  # binary search for the first point that is not counted
    while lo < hi:
        mid = (lo + hi) // 2
        if _counted(w, b, xs[mid], rising):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True, **_OPTIONS)
def _update_counts(thetaT, xs, buckets, lo_x, per_x, k, counts):
    """counts[r, i] <- the particle's count on sorted xs: the number of inactive points
    (w >= 0: active on the suffix [count, n)) or of active points (w < 0: active on the prefix
    [0, count)), where the active set is {j : fma(w, xs[j], b) > 0}.

    The counts given are guesses (the last evaluation's: particles move little per step), each
    verified at its two neighbours in O(1); a wrong one is found anew by ``_locate``, O(1) for
    data spread over their range (the buckets), O(log n) at worst."""
    R, _, m = thetaT.shape
    for ri in prange(R * m):
        r, i = ri // m, ri % m
        w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
        if not _counts_right(w, b, xs, counts[r, i]):
            counts[r, i] = _locate(w, b, xs, buckets, lo_x, per_x)


def kink_buckets(xs: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(buckets, lo_x, per_x) for sorted xs: n uniform buckets over [xs[0], xs[-1]],
    buckets[q] = the number of points below xs[0] + q / per_x (q = 0..n)."""
    n = xs.shape[0]
    lo_x, span = float(xs[0]), float(xs[-1] - xs[0])
    per_x = n / span if span > 0.0 else 0.0
    edges = lo_x + np.arange(n + 1) / per_x if per_x > 0.0 else np.full(n + 1, lo_x)
    return np.searchsorted(xs, edges, side="left").astype(np.int64), lo_x, per_x


@njit(inline="always", **_OPTIONS)
def _active_range(w, count, n):
    """[lo, hi) of a particle from its count (see _update_counts)."""
    return (count, n) if w >= 0.0 else (0, count)


@njit(parallel=True, **_OPTIONS)
def _forward(thetaT, xs, order, counts, k, leak_p, scale, h_out):
    """h_out[r, order[j], q] = scale sum_i a_iq sigma(w_i xs[j] + b_i) (module docstring),
    from the particles' active ranges (their counts)."""
    R, _, m = thetaT.shape
    n = xs.shape[0]
    chunks = max(1, min(SWEEP_CHUNKS, m // 4096, m // (n + 1)))  # chunks n <= m: O(m) memory
    per_chunk = (m + chunks - 1) // chunks
    # diff[r, c, j, q, e, 0 / 1]: hi / lo of the coefficient e (0: of x, 1: constant)
    diff = np.zeros((R, chunks, n + 1, k, 2, 2))
    for rc in prange(R * chunks):
        r, c = rc // chunks, rc % chunks
        d = diff[r, c]
        for i in range(c * per_chunk, min((c + 1) * per_chunk, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            lo, hi = _active_range(w, counts[r, i], n)
            for q in range(k):
                a = np.float64(thetaT[r, q, i])
                for e in range(2):
                    coef = a * (w if e == 0 else b)
                    if leak_p != 0.0:  # the p a (w x + b) of every particle, at j = 0
                        d[0, q, e, 0], err = _two_sum(d[0, q, e, 0], leak_p * coef)
                        d[0, q, e, 1] += err
                        coef = (1.0 - leak_p) * coef
                    if lo < hi:
                        d[lo, q, e, 0], err = _two_sum(d[lo, q, e, 0], coef)
                        d[lo, q, e, 1] += err
                        if hi < n:  # the sweep never reaches d[n]
                            d[hi, q, e, 0], err = _two_sum(d[hi, q, e, 0], -coef)
                            d[hi, q, e, 1] += err
    for r in prange(R):
        run = np.zeros((k, 2, 2))
        for j in range(n):
            for c in range(chunks):
                for q in range(k):
                    for e in range(2):
                        run[q, e, 0], err = _two_sum(run[q, e, 0], diff[r, c, j, q, e, 0])
                        run[q, e, 1] += err + diff[r, c, j, q, e, 1]
            x = xs[j]
            for q in range(k):
                slope = run[q, 0, 0] + run[q, 0, 1]
                offset = run[q, 1, 0] + run[q, 1, 1]
                h_out[r, order[j], q] = scale * (x * slope + offset)


@njit(parallel=True, **_OPTIONS)
def _range_moments(dualT, xs, order, sums):
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
                    hi[j + 1], err = _two_sum(hi[j], g if e == 0 else g * xs[j])
                    lo[j + 1] = lo[j] + err
                for c in range(n + 1):
                    sums[r, c, 0, q, e] = hi[c] + lo[c]
                    top, err = _two_sum(hi[n], -hi[c])
                    sums[r, c, 1, q, e] = top + (err + (lo[n] - lo[c]))


@njit(parallel=True, **_OPTIONS)
def _velocity(thetaT, sums, counts, log_scale, k, leak_p, train_a, train_w, train_b, v_out):
    """v_out[r, i] from the range moments and the particles' counts (module docstring); frozen
    groups get 0."""
    R, _, m = thetaT.shape
    blocks = (m + 1023) // 1024
    for rb in prange(R * blocks):
        r = rb // blocks
        speed = -np.exp(log_scale[r])
        for i in range((rb % blocks) * 1024, min((rb % blocks + 1) * 1024, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            c, side = counts[r, i], 1 if w >= 0.0 else 0  # suffix [c, n) or prefix [0, c)
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


class SortedKernels:
    """The kernel interface of :mod:`kernels.cpu` (``forward``, ``loss_pass``, ``velocity``,
    same arguments) for d = 1 and the activations of SORTED_ACTIVATIONS.

    State kept between calls: the sorted order of every data array it was given (a flow passes
    the same arrays every evaluation; an array must not be changed in place after its first
    use here), and for each sorted array the particles' last counts (their active ranges),
    the guesses that the next call verifies in O(1) each and searches anew only where wrong.
    So a step of a flow whose particles cross few data points costs O(R (m + n k))."""

    loss_pass = staticmethod(cpu.loss_pass)  # O(n k): nothing to sort

    def __init__(self):
        self._sorted: dict[int, tuple] = {}  # id(points) -> (points, order, xs, buckets)
        self._counts: dict[int, tuple] = {}  # id(xs) -> (xs, counts (R, m) int64)
        self._moments = None

    def _sorted_points(self, points: np.ndarray) -> tuple:
        """(order, xs, buckets) with xs = points.ravel()[order] ascending, in float64 (stable
        order, so equal points keep their order) and xs's ``kink_buckets``; arrays of equal
        values share them."""
        hit = self._sorted.get(id(points))
        if hit is not None and hit[0] is points:
            self._sorted[id(points)] = self._sorted.pop(id(points))  # the newest: kept longest
            return hit[1:]
        values = np.ascontiguousarray(points, dtype=np.float64).ravel()
        if np.isnan(values).any():
            raise ValueError("the sorted kernels need data without NaN")
        for entry in self._sorted.values():
            order, xs = entry[1], entry[2]
            if xs.shape == values.shape and np.array_equal(xs, values[order]):
                found = entry[1:]
                break
        else:
            order = np.argsort(values, kind="stable")
            xs = np.ascontiguousarray(values[order])
            found = (order, xs, kink_buckets(xs))
        if len(self._sorted) >= 8:  # a flow's x, xT and a few grids: drop the least used
            self._sorted.pop(next(iter(self._sorted)))
        self._sorted[id(points)] = (points, *found)
        return found

    def _updated_counts(self, thetaT, xs, buckets, k) -> np.ndarray:
        """The particles' counts on xs (R, m), updated from the last ones (_update_counts)."""
        R, m = thetaT.shape[0], thetaT.shape[2]
        hit = self._counts.get(id(xs))
        if hit is None or hit[0] is not xs or hit[1].shape != (R, m):
            hit = (xs, np.full((R, m), -1, dtype=np.int64))  # -1: no guess
            if len(self._counts) >= 8:
                self._counts.pop(next(iter(self._counts)))
            self._counts[id(xs)] = hit
        _update_counts(thetaT, xs, *buckets, k, hit[1])
        return hit[1]

    def forward(self, thetaT, x, k, act_id, act_param, scale, h_out):
        """h_out[r, j, :] = scale sum_i a_ri sigma(w_ri x_j + b_ri) (h_out: float64); x (n, 1)."""
        order, xs, buckets = self._sorted_points(x)
        counts = self._updated_counts(thetaT, xs, buckets, k)
        _forward(thetaT, xs, order, counts, k, leak(act_id, act_param), float(scale), h_out)

    def velocity(self, thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w,
                 train_b, v_out):
        """:func:`kernels.cpu.velocity`, exactly (module docstring); xT (1, n)."""
        order, xs, buckets = self._sorted_points(xT)
        counts = self._updated_counts(thetaT, xs, buckets, k)
        shape = (thetaT.shape[0], xs.shape[0] + 1, 2, k, 2)
        if self._moments is None or self._moments.shape != shape:
            self._moments = np.empty(shape)
        _range_moments(dualT, xs, order, self._moments)
        _velocity(thetaT, self._moments, counts, log_scale, k, leak(act_id, act_param),
                  train_a, train_w, train_b, v_out)


def warm_up(dtype) -> None:
    """Compile the sorted kernels for storage type ``dtype`` (or load them from the disk cache)
    on a one-particle, two-point problem."""
    kernels = SortedKernels()
    thetaT, x = np.zeros((1, 3, 1), dtype=dtype), np.array([[0.0], [1.0]], dtype=dtype)
    h = np.zeros((1, 2, 1))
    kernels.forward(thetaT, x, 1, 0, 0.0, 1.0, h)
    kernels.velocity(thetaT, np.ascontiguousarray(x.T), np.zeros((1, 1, 2), dtype=dtype),
                     np.zeros(1), 1, 0, 0.0, True, True, True, np.zeros((1, 1, 3)))


JIT_KERNELS = (_update_counts, _forward, _range_moments, _velocity)
cpu.stamp_disk_cache(*JIT_KERNELS)
