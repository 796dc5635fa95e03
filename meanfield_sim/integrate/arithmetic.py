"""The integrators' state arithmetic in a few vector passes (Numba), instead of one NumPy call
and one temporary array per term.

``combine`` forms y = y0 + sum_s c_s k_s as ``y = y0.copy(); y += c_s * k_s`` for s = 0, 1, ...
would, one product and one sum per term in that order and nothing contracted into a
multiply-add, so the result is bitwise that of the NumPy expression. ``error_norms`` is the
embedded pair's error estimate err = sum_s e_s k_s in each replica's scaled RMS norm,

    norm_r = sqrt( mean over the trainable entries of replica r of
                   (err / (atol + rtol max(|y0|, |y1|)))^2 ).

States are passed as (R, N) views (``per_replica``) and the stages stacked as (S, R, N).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def combine(out, y0, stages, coefs, count):
    """out = y0 + sum_{s < count, coefs[s] != 0} coefs[s] stages[s]; whether out is all finite."""
    a, b = out.ravel(), y0.ravel()
    size = a.size
    for i in range(size):
        a[i] = b[i]
    for s in range(count):
        c = coefs[s]
        if c != 0.0:
            k = stages[s].ravel()
            for i in range(size):
                a[i] += c * k[i]
    probe = 0.0
    for i in range(size):
        probe += a[i] - a[i]  # 0 for finite entries, nan for inf or nan
    return probe == 0.0


@njit(cache=True)
def error_norms(y0, y1, stages, coefs, weight, atol, rtol, out):
    """out[r] = sqrt(sum_i weight_i ratio_ri^2 / sum_i weight_i), ratio = err / scale as in the
    module docstring; weight (N,) is 1 for trainable entries and 0 for frozen ones."""
    R, N = y0.shape
    trained = 0.0
    for i in range(N):
        trained += weight[i]
    err = np.empty(N)
    for r in range(R):
        err[:] = 0.0
        for s in range(stages.shape[0]):
            c = coefs[s]
            if c != 0.0:
                k = stages[s, r]
                for i in range(N):
                    err[i] += c * k[i]
        total = 0.0
        for i in range(N):
            ratio = err[i] / (atol + rtol * max(abs(y0[r, i]), abs(y1[r, i])))
            total += weight[i] * ratio * ratio
        out[r] = math.sqrt(total / trained) if trained > 0.0 else 0.0


def per_replica(a: np.ndarray) -> np.ndarray:
    """View of a contiguous state (R, ...) as (R, N)."""
    return a.reshape(a.shape[0], -1)


def entry_weights(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """(N,) 1.0 / 0.0 per entry of one replica of a state of ``shape``, from the train mask
    over its last axis."""
    return np.broadcast_to(mask.astype(np.float64), shape[1:]).ravel().copy()


class HostArrays:
    """What the integrators do with state arrays, for states in host memory (NumPy): make,
    copy and assign arrays, the stage sums and the error norms. A backend whose state lives
    elsewhere (``kernels.cuda.DeviceArrays``) offers the same methods; a flow names its own as
    ``array_ops`` (None: these)."""

    @staticmethod
    def to_device(a):
        return a

    @staticmethod
    def to_host(a):
        return a

    @staticmethod
    def empty(shape, dtype=np.float64):
        return np.empty(shape, dtype=dtype)

    @staticmethod
    def empty_like(a):
        return np.empty_like(a)

    @staticmethod
    def copy(a):
        return a.copy()

    @staticmethod
    def assign(dst, src) -> None:
        dst[...] = src

    @staticmethod
    def combine(out, y0, stages, coefs, count, check: bool = True) -> bool:
        """``combine``; whether out is all finite (on the host the check costs nothing, so it
        is always made)."""
        return combine(out, y0, stages, coefs, count)

    @staticmethod
    def error_norms(y0, y1, stages, coefs, weight, atol, rtol, out) -> None:
        """``error_norms`` on whole states (R, ...) and stages (S, R, ...)."""
        error_norms(per_replica(y0), per_replica(y1),
                    stages.reshape(stages.shape[0], y0.shape[0], -1), coefs, weight, atol,
                    rtol, out)


HOST_ARRAYS = HostArrays()


def array_ops(field_):
    """The array operations for a flow's states: its ``array_ops``, or the host's."""
    return getattr(field_, "array_ops", None) or HOST_ARRAYS
