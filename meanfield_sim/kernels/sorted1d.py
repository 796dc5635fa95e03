"""Exact sort-and-sweep kernels for one-dimensional data (d = 1) and piecewise-polynomial
activations (ReLU, leaky ReLU, the flat sigmoid): a gradient evaluation in O((m + n) k), after
one O(n log n) sort of the data, instead of the pairwise kernels' O(m n k).

With d = 1 a particle (a_i in R^k, w_i, b_i) has the pre-activation z_i(x) = w_i x + b_i, and
a_i sigma(z_i(x)) is, as a function of x, a polynomial on each piece between the kinks
(e - b_i) / w_i, e the activation's edges: z = 0 for ReLU and leaky ReLU, z = 0 and z = 1 for
the flat sigmoid. Sort the data once, x_(0) <= ... <= x_(n-1). Since z_i is monotone along
them, the data on each piece form an index range, delimited by the particle's *count* at each
edge e: the number of points before the edge, i.e. of points not past it for w_i >= 0
(z <= 0 at e = 0, z < 1 at e = 1) and of points past it for w_i < 0 (for w_i = 0 the count is
0 or n, by b_i). A point exactly at the edge z = 0 is not past it, so it is inactive, as in the
pairwise kernels (sigma'(0) := 0 for ReLU, p for leaky ReLU; the flat sigmoid is C^1 there).
Past an edge is decided by one fused multiply-add, fma(w, x, b) > 0 (>= 1 at e = 1): the
exact sign of w x + b, as in the pairwise kernels, whose z = b + w x LLVM contracts into the
same fma on FMA hardware.

The counts are kept from one evaluation to the next (particles move little per step), verified
at the two neighbours in O(1), and looked up again only where a particle's kink crossed a data
point: from the bucket of the kink in a table over the data's range, by a walk, with a binary
search as the fallback (``_update_counts``): as a sort kept from step to step and repaired
would, in O(m) for data spread over their range.

Per piece the passes are then sums over index ranges: the forward pass a difference array over
the sorted data (each particle adds its piece's polynomial coefficients where the piece starts
and subtracts them where it ends; the running sum is h's polynomial at each point), the velocity
prefix sums of the moments g_j x_j^e, one lookup per particle and piece. The activations'
passes, with their formulas and error bounds: :mod:`.sorted_linear` (ReLU, leaky ReLU) and
:mod:`.sorted_cubic` (the flat sigmoid). Every running sum is double-double; the kernels compute
in float64 whatever the storage type: they are O(m + n), so float32 gains nothing.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config.schema import SORTED_ACTIVATIONS
from ..model.activations import ACTIVATION_IDS
from ..model.fastexp import _fma
from . import cpu, sorted_cubic, sorted_linear

_FLAT = ACTIVATION_IDS["flat_sigmoid"]
_EDGES = {ACTIVATION_IDS["relu"]: 1, ACTIVATION_IDS["leaky_relu"]: 1, _FLAT: 2}
"""The activations' edges: z = 0, and z = 1 for the second (module docstring)."""

# no fastmath anywhere here: reassociation would undo the two-sums
_OPTIONS = dict(cache=True, error_model="numpy")


def applies(input_dim: int, activation: str) -> bool:
    """Whether the sorted kernels can serve networks with ``input_dim`` inputs and this
    activation."""
    return input_dim == 1 and activation in SORTED_ACTIVATIONS


def edges(act_id: int) -> int:
    """The number of edges of activation ``act_id``; a ValueError for one served here not."""
    if act_id not in _EDGES:
        names = {v: k for k, v in ACTIVATION_IDS.items()}
        raise ValueError(f"the sorted kernels serve {', '.join(SORTED_ACTIVATIONS)}, "
                         f"not {names.get(act_id, act_id)!r}")
    return _EDGES[act_id]


def leak(act_id: int, act_param: float) -> float:
    """p of sigma(z) = max(z, p z): 0 for ReLU, the slope for leaky ReLU."""
    return float(act_param) if act_id == ACTIVATION_IDS["leaky_relu"] else 0.0


@njit(inline="always", **_OPTIONS)
def _past(z, edge):
    """Whether z is past the edge: z > 0 (edge 0), z >= 1 (edge 1)."""
    return z > 0.0 if edge == 0 else z >= 1.0


@njit(inline="always", **_OPTIONS)
def _counted(w, b, x, rising, edge):
    """Whether the point x belongs to the particle's count at the edge: not past it for
    w >= 0, past it for w < 0. Along sorted data the counted points form a prefix."""
    return _past(_fma(w, x, b), edge) != rising


@njit(inline="always", **_OPTIONS)
def _counts_right(w, b, xs, c, edge):
    """Whether c is the particle's count: the points before c are counted, the rest not."""
    n = xs.shape[0]
    if c < 0 or c > n:
        return False
    rising = w >= 0.0
    return (c == 0 or _counted(w, b, xs[c - 1], rising, edge)) and \
        (c == n or not _counted(w, b, xs[c], rising, edge))


WALK_LIMIT = 32
"""Steps from the bucket's guess after which ``_locate`` falls back to a binary search."""


@njit(inline="always", **_OPTIONS)
def _locate(w, b, xs, edge, buckets, lo_x, per_x):
    """The particle's count at the edge on sorted xs (see _update_counts): a guess from the
    bucket of its kink (edge - b) / w (buckets[q] = the number of data below lo_x + q / per_x),
    then a walk to where the predicate flips, exact because it is monotone along xs."""
    n = xs.shape[0]
    rising = w >= 0.0
    if w == 0.0:  # z = b everywhere: every point counted (n) or none (0)
        return n if _counted(w, b, 0.0, rising, edge) else 0
    place = (float(edge) - b) / w
    place = (place - lo_x) * per_x
    top = buckets.shape[0] - 1
    c = buckets[0] if not place > 0.0 else (buckets[top] if place >= top else buckets[int(place)])
    steps = 0
    while c < n and _counted(w, b, xs[c], rising, edge) and steps < WALK_LIMIT:
        c += 1
        steps += 1
    while c > 0 and not _counted(w, b, xs[c - 1], rising, edge) and steps < WALK_LIMIT:
        c -= 1
        steps += 1
    if steps < WALK_LIMIT:
        return c
    lo, hi = 0, n  # binary search for the first point that is not counted
    while lo < hi:
        mid = (lo + hi) // 2
        if _counted(w, b, xs[mid], rising, edge):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True, **_OPTIONS)
def _update_counts(thetaT, xs, buckets, lo_x, per_x, k, counts):
    """counts[r, e, i] <- the particle's count at edge e on sorted xs (module docstring), for
    e < counts.shape[1].

    The counts given are guesses (the last evaluation's: particles move little per step), each
    verified at its two neighbours in O(1); a wrong one is found anew by ``_locate``, O(1) for
    data spread over their range (the buckets), O(log n) at worst."""
    R, _, m = thetaT.shape
    for ri in prange(R * m):
        r, i = ri // m, ri % m
        w, b = np.float64(thetaT[r, k, i]), np.float64(thetaT[r, k + 1, i])
        for e in range(counts.shape[1]):
            if not _counts_right(w, b, xs, counts[r, e, i], e):
                counts[r, e, i] = _locate(w, b, xs, e, buckets, lo_x, per_x)


def kink_buckets(xs: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(buckets, lo_x, per_x) for sorted xs: n uniform buckets over [xs[0], xs[-1]],
    buckets[q] = the number of points below xs[0] + q / per_x (q = 0..n)."""
    n = xs.shape[0]
    lo_x, span = float(xs[0]), float(xs[-1] - xs[0])
    per_x = n / span if span > 0.0 else 0.0
    edges = lo_x + np.arange(n + 1) / per_x if per_x > 0.0 else np.full(n + 1, lo_x)
    return np.searchsorted(xs, edges, side="left").astype(np.int64), lo_x, per_x


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

    def _updated_counts(self, thetaT, xs, buckets, k, act_id) -> np.ndarray:
        """The particles' counts on xs (R, edges, m), updated from the last ones
        (_update_counts)."""
        shape = (thetaT.shape[0], edges(act_id), thetaT.shape[2])
        hit = self._counts.get(id(xs))
        if hit is None or hit[0] is not xs or hit[1].shape != shape:
            hit = (xs, np.full(shape, -1, dtype=np.int64))  # -1: no guess
            if len(self._counts) >= 8:
                self._counts.pop(next(iter(self._counts)))
            self._counts[id(xs)] = hit
        _update_counts(thetaT, xs, *buckets, k, hit[1])
        return hit[1]

    def forward(self, thetaT, x, k, act_id, act_param, scale, h_out):
        """h_out[r, j, :] = scale sum_i a_ri sigma(w_ri x_j + b_ri) (h_out: float64); x (n, 1)."""
        order, xs, buckets = self._sorted_points(x)
        counts = self._updated_counts(thetaT, xs, buckets, k, act_id)
        chunks = sorted_linear.sweep_chunks(thetaT.shape[2], xs.shape[0])
        if act_id == _FLAT:
            sorted_cubic.forward(thetaT, xs, order, counts, k, float(scale), chunks, h_out)
        else:
            sorted_linear.forward(thetaT, xs, order, counts, k, leak(act_id, act_param),
                                  float(scale), chunks, h_out)

    def velocity(self, thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w,
                 train_b, v_out):
        """:func:`kernels.cpu.velocity`, exactly (module docstring); xT (1, n)."""
        order, xs, buckets = self._sorted_points(xT)
        counts = self._updated_counts(thetaT, xs, buckets, k, act_id)
        passes = sorted_cubic if act_id == _FLAT else sorted_linear
        shape = passes.moments_shape(thetaT.shape[0], xs.shape[0], k)
        if self._moments is None or self._moments.shape != shape:
            self._moments = np.empty(shape)
        passes.range_moments(dualT, xs, order, self._moments)
        if act_id == _FLAT:
            sorted_cubic.velocity(thetaT, self._moments, counts, log_scale, k, train_a,
                                  train_w, train_b, v_out)
        else:
            sorted_linear.velocity(thetaT, self._moments, counts, log_scale, k,
                                   leak(act_id, act_param), train_a, train_w, train_b, v_out)


def warm_up(dtype) -> None:
    """Compile the sorted kernels for storage type ``dtype`` (or load them from the disk cache)
    on a one-particle, two-point problem, for every activation they serve."""
    thetaT, x = np.zeros((1, 3, 1), dtype=dtype), np.array([[0.0], [1.0]], dtype=dtype)
    for act_id in _EDGES:
        kernels = SortedKernels()
        kernels.forward(thetaT, x, 1, act_id, 0.0, 1.0, np.zeros((1, 2, 1)))
        kernels.velocity(thetaT, np.ascontiguousarray(x.T), np.zeros((1, 1, 2), dtype=dtype),
                         np.zeros(1), 1, act_id, 0.0, True, True, True, np.zeros((1, 1, 3)))


JIT_KERNELS = (_update_counts, *sorted_linear.JIT_KERNELS, *sorted_cubic.JIT_KERNELS)
cpu.stamp_disk_cache(*JIT_KERNELS)
