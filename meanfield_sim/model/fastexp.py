"""exp and expm1 that LLVM can vectorise, for the sigmoid and tanh activations.

Numba calls libm's scalar ``exp`` and ``tanh`` (no vector math library comes with PyPI's
llvmlite), which keeps every loop over an activation scalar: measured 25x slower than ReLU for
the sigmoid. Here everything is straight-line arithmetic that vectorises:

    x = n ln2 + r,  n = round(x / ln2),  |r| <= ln2 / 2     (Cody-Waite: ln2 = hi + lo)
    e^r = 1 + q(r),  q(r) = r + r^2/2! + ... + r^N/N!      (Horner; N = 13 for float64, 7 for
                                                            float32: truncation < 1e-17, 6e-9)
    2^n = 2^(n//2) 2^(n - n//2), each factor a power of two built from its exponent bits, so
    that n down to -1076 (-150) gives the subnormal or zero result and n = 1024 (128) inf.

Then e^x = s + s q and e^x - 1 = (s - 1) + s q with s = 2^n (multiplied in the order that
keeps e^x finite up to the overflow threshold), without the cancellation of e^x - 1 for small
x. Both are accurate to a few ulp (tests/test_fastexp.py measures them against
NumPy over the whole range). x is clamped to [-746, 710] ([-104, 89] for float32), beyond which
the result is 0 or inf anyway; NaN stays NaN. Each computes in the type of x.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .numeric import like

_C64 = tuple(1.0 / math.factorial(i) for i in range(14))   # 1/i!, i = 0..13
_LN2_HI_64, _LN2_LO_64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LN2_HI_32, _LN2_LO_32 = 0.693145751953125, 1.428606765330187045e-06
_LOG2E = 1.4426950408889634


@intrinsic
def _fma(typingctx, a, b, c):
    """a b + c rounded once (llvm.fma). Also a fence: fastmath reassociation, which would undo
    the exact reduction and the cancellation-free expm1, does not reach into an fma."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    llvm_type = ir.DoubleType() if a == types.float64 else ir.FloatType()

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic(
            "llvm.fma", [llvm_type], ir.FunctionType(llvm_type, [llvm_type] * 3))
        return builder.call(fn, args)
    return a(a, b, c), codegen


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float whose bit pattern is ``bits`` (int64 -> float64, int32 -> float32)."""
    if bits == types.int64:
        target, llvm_type = types.float64, ir.DoubleType()
    elif bits == types.int32:
        target, llvm_type = types.float32, ir.FloatType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)
    return target(bits), codegen


def exp_parts(x):
    """(s1, s2, q) with e^x = s1 s2 (1 + q): s1 s2 = 2^round(x / ln2) as two normal powers of
    two (their product may overflow or be subnormal), q = e^r - 1 (module docstring)."""
    raise NotImplementedError("exp_parts is for Numba-compiled code")


@overload(exp_parts, inline="always")
def _exp_parts(x):
    if x == types.float64:
        def impl64(x):
            y = min(max(x, -746.0), 710.0)
            n = np.floor(y * _LOG2E + 0.5)
            r = _fma(-n, _LN2_LO_64, _fma(-n, _LN2_HI_64, y))
            p = _C64[13]
            p = _C64[12] + r * p
            p = _C64[11] + r * p
            p = _C64[10] + r * p
            p = _C64[9] + r * p
            p = _C64[8] + r * p
            p = _C64[7] + r * p
            p = _C64[6] + r * p
            p = _C64[5] + r * p
            p = _C64[4] + r * p
            p = _C64[3] + r * p
            p = _C64[2] + r * p
            q = _fma(r, r * p, r)
            half = np.floor(n * 0.5)
            k1, k2 = np.int64(half) + 1023, np.int64(n - half) + 1023
            s1, s2 = _float_from_bits(np.int64(k1 << 52)), _float_from_bits(np.int64(k2 << 52))
            return s1, s2, (q if x == x else x)
        return impl64
    if x == types.float32:
        f = types.float32
        c2, c3, c4, c5, c6, c7 = (f(c) for c in _C64[2:8])
        hi, lo, log2e = f(_LN2_HI_32), f(_LN2_LO_32), f(_LOG2E)
        lo_clamp, hi_clamp, half_f = f(-104.0), f(89.0), f(0.5)

        def impl32(x):
            y = min(max(x, lo_clamp), hi_clamp)
            n = np.floor(y * log2e + half_f)
            r = _fma(-n, lo, _fma(-n, hi, y))
            p = c6 + r * c7
            p = c5 + r * p
            p = c4 + r * p
            p = c3 + r * p
            p = c2 + r * p
            q = _fma(r, r * p, r)
            half = np.floor(n * half_f)
            k1, k2 = np.int64(half) + 127, np.int64(n - half) + 127
            s1, s2 = _float_from_bits(np.int32(k1 << 23)), _float_from_bits(np.int32(k2 << 23))
            return s1, s2, (q if x == x else x)
        return impl32
    return None


def fast_exp(x):
    """e^x to a few ulp (module docstring); in Python (a kernel's ``py_func``), NumPy's."""
    return np.exp(x)


def fast_expm1(x):
    """e^x - 1 to a few ulp, also for small |x| (module docstring); in Python, NumPy's."""
    return np.expm1(x)


@overload(fast_exp, inline="always")
def _fast_exp(x):
    if isinstance(x, types.Float):
        def impl(x):
            s1, s2, q = exp_parts(x)
            return _fma(s1, q, s1) * s2  # the last product rounds into overflow or subnormals
        return impl
    return None


@overload(fast_expm1, inline="always")
def _fast_expm1(x):
    if isinstance(x, types.Float):
        def impl(x):
            return fast_exp_expm1(x)[1]
        return impl
    return None


def fast_exp_expm1(x):
    """(e^x, e^x - 1) from one reduction; in Python, NumPy's."""
    return np.exp(x), np.expm1(x)


@overload(fast_exp_expm1, inline="always")
def _fast_exp_expm1(x):
    if isinstance(x, types.Float):
        def impl(x):
            s1, s2, q = exp_parts(x)
            one = like(x, 1.0)
            e = _fma(s1, q, s1) * s2
            return e, (e - one if x > like(x, 64.0) else _fma(s1 * q, s2, s1 * s2 - one))
        return impl
    return None
