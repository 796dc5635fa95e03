"""Type-preserving constants for Numba code: ``like(x, c)`` is the constant c in the type of x
(of x's elements, for an array).

A float literal in Numba code is float64, and float32 op float64 is float64: without this,
every activation and loss written with literals would compute a float32 input in float64.
``like(z, 1.0)`` is float32(1.0) for a float32 z and float64(1.0) for a float64 z (bitwise the
literal), resolved when the function is compiled, so it costs nothing at run time.
"""
from __future__ import annotations

from numba import njit, types
from numba.extending import overload


FAST = {"reassoc", "contract", "nsz", "arcp"}
"""The kernels' fastmath flags: sums may be reassociated and products contracted into
multiply-adds; never nnan/ninf, so infinities and NaNs survive."""

KERNEL_OPTIONS = dict(cache=True, fastmath=FAST, error_model="numpy")
"""Numba options of every function that runs per particle-data pair: the kernels
(``njit(parallel=True, **KERNEL_OPTIONS)``) and the scalar functions they call
(``kernel_function``). error_model="numpy" makes a float division IEEE (inf, nan) instead of a
ZeroDivisionError check, whose branch kept any loop with a division (the sigmoid) from
vectorising."""

kernel_function = njit(inline="always", **KERNEL_OPTIONS)
"""Decorator of the activations. A function passed to a kernel as an argument is compiled on
its own, with its own options, before LLVM inlines it, so it needs the kernels' options
itself."""


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
