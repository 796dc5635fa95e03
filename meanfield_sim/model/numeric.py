"""Type-preserving constants for Numba code: ``like(x, c)`` is the constant c in the type of x
(of x's elements, for an array).

A float literal in Numba code is float64, and float32 op float64 is float64: without this,
every activation and loss written with literals would compute a float32 input in float64.
``like(z, 1.0)`` is float32(1.0) for a float32 z and float64(1.0) for a float64 z (bitwise the
literal), resolved when the function is compiled, so it costs nothing at run time.
"""
from __future__ import annotations

from numba import types
from numba.extending import overload


def like(x, c):
    """c converted to the type of x (the pure-Python meaning of the Numba overload)."""
    return x.dtype.type(c) if hasattr(x, "dtype") and hasattr(x, "shape") else type(x)(c)


@overload(like, inline="always")
def _like(x, c):
    ty = x.dtype if isinstance(x, types.Array) else x
    if isinstance(ty, types.Float):

        def impl(x, c):
            return ty(c)
        return impl
    return None
