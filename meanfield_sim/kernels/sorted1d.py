"""Exact sort-and-sweep kernels for one-dimensional data (d = 1) and piecewise-linear
activations (ReLU, leaky ReLU): a gradient evaluation in O(m log n + n log n), not O(m n).

With d = 1 a particle (a_i in R^k, w_i, b_i) has the pre-activation z_i(x) = w_i x + b_i, and
for sigma(z) = z (z > 0), p z (z <= 0) (ReLU: p = 0) its output is, as a function of x,

    a_i sigma(z_i(x)) = p a_i (w_i x + b_i) + (1 - p) [z_i(x) > 0] a_i (w_i x + b_i).

Sort the data once, x_(0) <= ... <= x_(n-1). The set {j : z_i(x_(j)) > 0} of data where the
particle is active is then an index range [lo_i, hi_i): a suffix [lo_i, n) for w_i >= 0 (w_i = 0:
all or nothing, by the sign of b_i), a prefix [0, hi_i) for w_i < 0. A binary search finds it,
with the pairwise kernels' predicate fl(w_i x_(j) + b_i) > 0 evaluated as one fused multiply-add
(the exact sign of w x + b), so a data point exactly at a kink is classified as there: inactive,
sigma'(0) := 0 for ReLU, p for leaky ReLU (``model.activations``).

Forward pass: h(x_(j)) = s_m sum_i a_i sigma(z_i(x_(j))) = s_m (x_(j) C1_j + C0_j), where
C_j = sum over the particles active at j of (1 - p) a_i (w_i, b_i), plus p sum_i a_i (w_i, b_i).
Each particle adds its coefficients at lo_i and subtracts them at hi_i of a difference array;
its running sum over j gives C_j. Cost O(m log n) for the searches, O(m + n) for the sweep.

Velocity (the pairwise kernels' sums, restricted to the active range): with the dual weights
g_j in sorted order and the prefix sums G^(0)_j = sum_{j' < j} g_j', G^(1)_j = sum g_j' x_j',
S = G_hi - G_lo over [lo_i, hi_i) and T = G_n over all data,

    sum_j g_jq sigma(z_ij)         = (1 - p)(w_i S1_q + b_i S0_q) + p (w_i T1_q + b_i T0_q)
    sum_j g_jq sigma'(z_ij) x_j    = (1 - p) S1_q + p T1_q,     and with x_j^0: S0, T0,

then v_a = -s sum_j g sigma, v_w = -s sum_q a_q (...), v_b likewise, with the scale
s = exp(log_scale) of the scaled dual weights (``cpu.velocity``). O(m log n + n k).

Accuracy. Every running sum (the difference array, its sweep, the prefix sums G) is kept in
double-double (hi + lo, each addition an error-free two-sum), so a range sum G_hi - G_lo is the
correctly rounded difference of sums carried to about 2^-106: its error is at most
eps |S| + 4 n eps^2 sum_j |g_j x_j^r| (eps = 2^-53), where plain prefix sums would lose up to
eps sum_j |g_j x_j^r| to cancellation. The final combinations w S1 + b S0 and x C1 + C0 add
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
scatter runs in parallel); their sum is taken in the sweep."""

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


SEARCH_LANES = 16
"""Particles whose binary searches advance in lockstep: their load-compare chains overlap
(measured 2.5x to 3x faster than one search after another)."""


@njit(parallel=True, **_OPTIONS)
def _active_ranges(thetaT, xs, k, lo_out, hi_out):
    """[lo, hi) = {j : fma(w_ri, xs[j], b_ri) > 0} for every particle (R, m) and sorted xs: a
    suffix for w >= 0 (lo = the number of inactive points), a prefix for w < 0 (hi = the number
    of active points). The count is found by a binary search on the monotone predicate, in
    steps of 2^L, ..., 2, 1, with selects instead of branches."""
    R, _, m = thetaT.shape
    n = xs.shape[0]
    top = 1
    while top * 2 <= n:
        top *= 2
    blocks = (m + SEARCH_LANES - 1) // SEARCH_LANES
    for rb in prange(R * blocks):
        r, i0 = rb // blocks, (rb % blocks) * SEARCH_LANES
        lanes = min(SEARCH_LANES, m - i0)
        count = np.zeros(SEARCH_LANES, dtype=np.int64)
        w, b = np.zeros(SEARCH_LANES), np.zeros(SEARCH_LANES)
        rising = np.ones(SEARCH_LANES, dtype=np.bool_)
        for u in range(lanes):
            w[u], b[u] = np.float64(thetaT[r, k, i0 + u]), np.float64(thetaT[r, k + 1, i0 + u])
            rising[u] = w[u] >= 0.0
        step = top
        while step > 0:
            for u in range(SEARCH_LANES):
                j = count[u] + step
                inside = j <= n
                # rising: count the inactive points (a prefix); falling: the active ones
                active = _fma(w[u], xs[j - 1 if inside else 0], b[u]) > 0.0
                past = inside and active != rising[u]
                count[u] = j if past else count[u]
            step //= 2
        for u in range(lanes):
            lo_out[r, i0 + u] = count[u] if rising[u] else 0
            hi_out[r, i0 + u] = n if rising[u] else count[u]


@njit(parallel=True, **_OPTIONS)
def _forward(thetaT, xs, order, lo_of, hi_of, k, leak_p, scale, h_out):
    """h_out[r, order[j], q] = scale sum_i a_iq sigma(w_i xs[j] + b_i) (module docstring),
    from the particles' active ranges [lo, hi)."""
    R, _, m = thetaT.shape
    n = xs.shape[0]
    chunks = min(SWEEP_CHUNKS, max(1, m // 4096))
    per_chunk = (m + chunks - 1) // chunks
    # diff[r, c, j, q, e, 0 / 1]: hi / lo of the coefficient e (0: of x, 1: constant)
    diff = np.zeros((R, chunks, n + 1, k, 2, 2))
    for rc in prange(R * chunks):
        r, c = rc // chunks, rc % chunks
        d = diff[r, c]
        for i in range(c * per_chunk, min((c + 1) * per_chunk, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            lo, hi = lo_of[r, i], hi_of[r, i]
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
def _prefix_moments(dualT, xs, order, G):
    """G[r, j, q, e, 0 / 1] = hi / lo of sum_{j' < j} g_r,order[j'],q xs[j']^e (e = 0, 1)."""
    R, k, n = dualT.shape
    for r in prange(R):
        for q in range(k):
            G[r, 0, q, 0, 0] = G[r, 0, q, 0, 1] = G[r, 0, q, 1, 0] = G[r, 0, q, 1, 1] = 0.0
            for j in range(n):
                g = np.float64(dualT[r, q, order[j]])
                for e in range(2):
                    term = g if e == 0 else g * xs[j]
                    s, err = _two_sum(G[r, j, q, e, 0], term)
                    G[r, j + 1, q, e, 0] = s
                    G[r, j + 1, q, e, 1] = G[r, j, q, e, 1] + err


@njit(inline="always", **_OPTIONS)
def _range_sum(G, r, lo, hi, q, e):
    """sum over sorted data [lo, hi) of the moment e, from the double-double prefix sums."""
    s, err = _two_sum(G[r, hi, q, e, 0], -G[r, lo, q, e, 0])
    return s + (err + (G[r, hi, q, e, 1] - G[r, lo, q, e, 1]))


@njit(parallel=True, **_OPTIONS)
def _velocity(thetaT, xs, G, lo_of, hi_of, log_scale, k, leak_p, train_a, train_w, train_b,
              v_out):
    """v_out[r, i] from the prefix moments G and the active ranges (module docstring); frozen
    groups get 0."""
    R, _, m = thetaT.shape
    n = xs.shape[0]
    blocks = (m + 1023) // 1024
    for rb in prange(R * blocks):
        r = rb // blocks
        speed = -np.exp(log_scale[r])
        for i in range((rb % blocks) * 1024, min((rb % blocks + 1) * 1024, m)):
            w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
            lo, hi = lo_of[r, i], hi_of[r, i]
            slope_w = slope_b = 0.0
            for q in range(k):
                s0, s1 = _range_sum(G, r, lo, hi, q, 0), _range_sum(G, r, lo, hi, q, 1)
                value = w * s1 + b * s0
                if leak_p != 0.0:
                    t0, t1 = _range_sum(G, r, 0, n, q, 0), _range_sum(G, r, 0, n, q, 1)
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

    State, so that a flow's evaluation does each piece of work once: the sorted order of every
    data array it was given (a flow passes the same arrays every evaluation; an array must not
    be changed in place after its first use here), and the particles' active ranges found by
    the last ``forward``, which ``velocity`` reuses when its particles (w, b) are those
    (compared entry by entry, O(R m), against O(R m log n) for the searches)."""

    loss_pass = staticmethod(cpu.loss_pass)  # O(n k): nothing to sort

    def __init__(self):
        self._sorted: dict[int, tuple] = {}  # id(points) -> (points, order, sorted values)
        self._moments = None
        self._ranges = None  # (xs, w and b rows (R, 2, m) float64, lo, hi) of the last forward

    def _sorted_points(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(order, xs) with xs = points.ravel()[order] ascending, in float64 (stable order, so
        equal points keep their order); arrays of equal values share one (order, xs)."""
        hit = self._sorted.get(id(points))
        if hit is not None and hit[0] is points:
            return hit[1], hit[2]
        values = np.ascontiguousarray(points, dtype=np.float64).ravel()
        if np.isnan(values).any():
            raise ValueError("the sorted kernels need data without NaN")
        for _, order, xs in self._sorted.values():
            if xs.shape == values.shape and np.array_equal(xs, values[order]):
                break
        else:
            order = np.argsort(values, kind="stable")
            xs = np.ascontiguousarray(values[order])
        if len(self._sorted) >= 8:  # a flow's x, xT and a few grids: keep the newest
            self._sorted.pop(next(iter(self._sorted)))
        self._sorted[id(points)] = (points, order, xs)
        return order, xs

    def _active_ranges(self, thetaT, xs, k) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (R, m): the particles' active ranges on xs, reused from the last call
        where xs and the particles' w, b are the same."""
        w_b = thetaT[:, k:k + 2, :]
        last = self._ranges
        if last is not None and last[0] is xs and last[1].shape == w_b.shape \
                and np.array_equal(last[1], w_b):
            return last[2], last[3]
        R, m = thetaT.shape[0], thetaT.shape[2]
        lo, hi = np.empty((R, m), dtype=np.int64), np.empty((R, m), dtype=np.int64)
        _active_ranges(thetaT, xs, k, lo, hi)
        self._ranges = (xs, np.array(w_b, dtype=np.float64), lo, hi)
        return lo, hi

    def forward(self, thetaT, x, k, act_id, act_param, scale, h_out):
        """h_out[r, j, :] = scale sum_i a_ri sigma(w_ri x_j + b_ri) (h_out: float64); x (n, 1)."""
        order, xs = self._sorted_points(x)
        lo, hi = self._active_ranges(thetaT, xs, k)
        _forward(thetaT, xs, order, lo, hi, k, leak(act_id, act_param), float(scale), h_out)

    def velocity(self, thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w,
                 train_b, v_out):
        """:func:`kernels.cpu.velocity`, exactly (module docstring); xT (1, n)."""
        order, xs = self._sorted_points(xT)
        lo, hi = self._active_ranges(thetaT, xs, k)
        R, n = thetaT.shape[0], xs.shape[0]
        shape = (R, n + 1, k, 2, 2)
        if self._moments is None or self._moments.shape != shape:
            self._moments = np.empty(shape)
        _prefix_moments(dualT, xs, order, self._moments)
        _velocity(thetaT, xs, self._moments, lo, hi, log_scale, k, leak(act_id, act_param),
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


JIT_KERNELS = (_active_ranges, _forward, _prefix_moments, _velocity)
cpu.stamp_disk_cache(*JIT_KERNELS)
