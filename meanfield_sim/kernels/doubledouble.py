"""Double-double arithmetic for the sorted kernels: a value is an unevaluated sum hi + lo of two
float64 with |lo| <= ulp(hi) / 2, about 106 bits (Dekker; Knuth; Shewchuk).

Error-free transformations: ``two_sum`` (a + b = s + e exactly) and ``two_prod``
(a b = p + e exactly, by one fused multiply-add). The double-double operations built from them
round once more, to about u^2 = 2^-106 of the *operands'* size: ``add`` errs by at most
about 2 u^2 (|a| + |b|), ``mul`` and ``mul_d`` by about 4 u^2 |a b|. That is what the
sorted kernels need: their sums cancel, and their error bound is in the size of the terms.
No function here may be compiled with fastmath: reassociation would undo the two-sums.
"""
from __future__ import annotations

from numba import njit

from ..model.fastexp import _fma

_OPTIONS = dict(cache=True, error_model="numpy")


@njit(inline="always", **_OPTIONS)
def two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth)."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


@njit(inline="always", **_OPTIONS)
def _renormalised(s, e):
    """(hi, lo) = s + e with |lo| <= ulp(hi) / 2, for |e| small against |s| (Dekker)."""
    hi = s + e
    return hi, e - (hi - s)


@njit(inline="always", **_OPTIONS)
def two_prod(a, b):
    """(p, e) with p = fl(a b) and p + e = a b exactly."""
    p = a * b
    return p, _fma(a, b, -p)


@njit(inline="always", **_OPTIONS)
def add(ah, al, bh, bl):
    """(ah + al) + (bh + bl)."""
    s, e = two_sum(ah, bh)
    return _renormalised(s, e + (al + bl))


@njit(inline="always", **_OPTIONS)
def mul(ah, al, bh, bl):
    """(ah + al) (bh + bl)."""
    p, e = two_prod(ah, bh)
    return _renormalised(p, e + (ah * bl + al * bh))


@njit(inline="always", **_OPTIONS)
def mul_d(ah, al, b):
    """(ah + al) b for a float64 b."""
    p, e = two_prod(ah, b)
    return _renormalised(p, e + al * b)
