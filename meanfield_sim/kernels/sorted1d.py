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
Past an edge is decided on z = fma(w, x, b), the z of the pairwise kernels, whose b + w x LLVM
contracts into the same fma on FMA hardware (:mod:`.sorted_ranges`).

The counts are kept from one evaluation to the next (particles move little per step) and
verified by the passes themselves at the two neighbours in O(1), each looked up again only where
a particle's kink crossed a data point (:mod:`.sorted_ranges`): as a sort kept from step to step
and repaired would, in O(m) for data spread over their range.

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

from ..config.schema import SORTED_ACTIVATIONS
from ..model.activations import ACTIVATION_IDS
from . import cpu, sorted_cubic, sorted_linear
from .sorted_ranges import kink_buckets

_FLAT = ACTIVATION_IDS["flat_sigmoid"]
_EDGES = {ACTIVATION_IDS["relu"]: 1, ACTIVATION_IDS["leaky_relu"]: 1, _FLAT: 2}
"""The activations' edges: z = 0, and z = 1 for the second (module docstring)."""


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
        self._sorted: dict[int, tuple] = {}  # id(points) -> (points, order, lookup)
        self._kept_counts: dict[int, tuple] = {}  # id(xs) -> (xs, counts (R, edges, m) int64)
        self._moments = None

    def _sorted_points(self, points: np.ndarray) -> tuple:
        """(order, lookup) with lookup = (xs, *kink_buckets(xs)), xs = points.ravel()[order]
        ascending, in float64 (a stable order, so equal points keep their order); arrays of
        equal values share them."""
        hit = self._sorted.get(id(points))
        if hit is not None and hit[0] is points:
            self._sorted[id(points)] = self._sorted.pop(id(points))  # the newest: kept longest
            return hit[1:]
        values = np.ascontiguousarray(points, dtype=np.float64).ravel()
        if np.isnan(values).any():
            raise ValueError("the sorted kernels need data without NaN")
        for entry in self._sorted.values():
            order, xs = entry[1], entry[2][0]
            if xs.shape == values.shape and np.array_equal(xs, values[order]):
                found = entry[1:]
                break
        else:
            order = np.argsort(values, kind="stable")
            xs = np.ascontiguousarray(values[order])
            found = (order, (xs, *kink_buckets(xs)))
        if len(self._sorted) >= 8:  # a flow's x, xT and a few grids: drop the least used
            self._sorted.pop(next(iter(self._sorted)))
        self._sorted[id(points)] = (points, *found)
        return found

    def _counts(self, thetaT, xs, act_id) -> np.ndarray:
        """The particles' counts on xs (R, edges, m): the last evaluation's, which the passes
        verify and update, or -1 (no guess) for a new xs or shape."""
        shape = (thetaT.shape[0], edges(act_id), thetaT.shape[2])
        hit = self._kept_counts.get(id(xs))
        if hit is None or hit[0] is not xs or hit[1].shape != shape:
            hit = (xs, np.full(shape, -1, dtype=np.int64))
            if len(self._kept_counts) >= 8:
                self._kept_counts.pop(next(iter(self._kept_counts)))
            self._kept_counts[id(xs)] = hit
        return hit[1]

    def forward(self, thetaT, x, k, act_id, act_param, scale, h_out):
        """h_out[r, j, :] = scale sum_i a_ri sigma(w_ri x_j + b_ri) (h_out: float64); x (n, 1)."""
        order, lookup = self._sorted_points(x)
        counts = self._counts(thetaT, lookup[0], act_id)
        chunks = sorted_linear.sweep_chunks(thetaT.shape[2], lookup[0].shape[0])
        if act_id == _FLAT:
            sorted_cubic.forward(thetaT, lookup, order, counts, k, float(scale), chunks, h_out)
        else:
            sorted_linear.forward(thetaT, lookup, order, counts, k, leak(act_id, act_param),
                                  float(scale), chunks, h_out)

    def velocity(self, thetaT, xT, dualT, log_scale, k, act_id, act_param, train_a, train_w,
                 train_b, v_out):
        """:func:`kernels.cpu.velocity`, exactly (module docstring); xT (1, n)."""
        order, lookup = self._sorted_points(xT)
        xs = lookup[0]
        counts = self._counts(thetaT, xs, act_id)
        passes = sorted_cubic if act_id == _FLAT else sorted_linear
        shape = passes.moments_shape(thetaT.shape[0], xs.shape[0], k)
        if self._moments is None or self._moments.shape != shape:
            self._moments = np.empty(shape)
        passes.range_moments(dualT, xs, order, self._moments)
        if act_id == _FLAT:
            sorted_cubic.velocity(thetaT, self._moments, lookup, counts, log_scale, k, train_a,
                                  train_w, train_b, v_out)
        else:
            sorted_linear.velocity(thetaT, self._moments, lookup, counts, log_scale, k,
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


JIT_KERNELS = (*sorted_linear.JIT_KERNELS, *sorted_cubic.JIT_KERNELS)
cpu.stamp_disk_cache(*JIT_KERNELS)
