"""The sorted kernels' index ranges (:mod:`.sorted1d`): a particle's count at an edge of its
activation on the sorted data, verified from the last one in O(1) and looked up again where
wrong.

The count at edge e (z = 0 for e = 0, z = 1 for e = 1) is the number of points before the edge
along the sorted data: of points not past it for w >= 0 (z <= 0, resp. z < 1), of points past it
for w < 0, where "past" is decided by one fused multiply-add, fma(w, x, b) > 0 (>= 1 at e = 1),
the exact sign of w x + b as in the pairwise kernels. The passes call :func:`verified_count` for
every particle they visit, so that a count kept from the last evaluation (particles move little
per step) costs two comparisons, and one that a kink's crossing a data point made wrong is found
anew by :func:`_locate`: from the bucket of the kink in a table over the data's range
(:func:`kink_buckets`), by a walk, with a binary search as the fallback: O(1) for data spread
over their range, O(log n) at worst.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..model.fastexp import _fma

_OPTIONS = dict(cache=True, error_model="numpy")


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
    """The particle's count at the edge on sorted xs (module docstring): a guess from the
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


@njit(inline="always", **_OPTIONS)
def verified_count(w, b, lookup, guess, edge):
    """The particle's count at the edge on the sorted data of ``lookup`` = (xs, buckets, lo_x,
    per_x): ``guess`` if it is right, else found anew (module docstring)."""
    xs, buckets, lo_x, per_x = lookup
    if _counts_right(w, b, xs, guess, edge):
        return guess
    return _locate(w, b, xs, edge, buckets, lo_x, per_x)


def kink_buckets(xs: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(buckets, lo_x, per_x) for sorted xs: n uniform buckets over [xs[0], xs[-1]],
    buckets[q] = the number of points below xs[0] + q / per_x (q = 0..n)."""
    n = xs.shape[0]
    lo_x, span = float(xs[0]), float(xs[-1] - xs[0])
    per_x = n / span if span > 0.0 else 0.0
    edges = lo_x + np.arange(n + 1) / per_x if per_x > 0.0 else np.full(n + 1, lo_x)
    return np.searchsorted(xs, edges, side="left").astype(np.int64), lo_x, per_x
