"""Activation functions sigma and their derivatives, as Numba functions.

Each activation is one pair of scalar functions ``_<name>`` (sigma) and ``_<name>_slope``
(sigma, sigma'); everything else dispatches to them by integer id (``ACTIVATION_IDS``).
Kernels call the *tile* forms, which apply one activation to a whole buffer: the branch on the id
sits outside the loop, so each loop is a simple element-wise pass that LLVM vectorises. (A
per-element call to a dispatcher over all six activations is too large for LLVM to unswitch and
measured 20x slower for ReLU.) ``param`` is the leaky-ReLU slope and ignored otherwise.
Each computes in the type of z (constants through ``numeric.like``): float32 in, float32 out.
The exponentials are ``fastexp``'s, which vectorise (libm's exp and tanh do not).

- relu          sigma(z) = max(z, 0);                 sigma'(0) := 0
- leaky_relu    sigma(z) = z for z > 0, param * z otherwise
- sigmoid       sigma(z) = 1 / (1 + exp(-z)),  sigma' = e / (1 + e)^2 with e = exp(-|z|)
- tanh          sigma(z) = tanh(z)
- softplus      sigma(z) = log(1 + exp(z))
- flat_sigmoid  the paper's "simplified sigmoid" (Section 5.2): 0 for z <= 0, 1 for z >= 1 and
                the smoothstep 3z^2 - 2z^3 in between, which is C^1 with sigma'(0) = sigma'(1) = 0.
"""
from __future__ import annotations

import math

from numba import njit

from .fastexp import fast_exp, fast_exp_expm1, fast_expm1
from .numeric import kernel_function, like

ACTIVATION_IDS = {"relu": 0, "leaky_relu": 1, "sigmoid": 2, "tanh": 3, "softplus": 4,
                  "flat_sigmoid": 5}
_inline = kernel_function


@_inline
def _relu(z, param):
    return z if z > 0.0 else like(z, 0.0)


@_inline
def _relu_slope(z, param):
    return (z, like(z, 1.0)) if z > 0.0 else (like(z, 0.0), like(z, 0.0))


@_inline
def _leaky(z, param):
    return z if z > 0.0 else like(z, param) * z


@_inline
def _leaky_slope(z, param):
    return (z, like(z, 1.0)) if z > 0.0 else (like(z, param) * z, like(z, param))


@_inline
def _sigmoid(z, param):
    e = fast_exp(-abs(z))  # never overflows
    d = like(z, 1.0) / (like(z, 1.0) + e)  # one division: the costliest operation here
    return d if z >= 0.0 else e * d


@_inline
def _sigmoid_slope(z, param):
    e = fast_exp(-abs(z))
    d = like(z, 1.0) / (like(z, 1.0) + e)
    return (d if z >= 0.0 else e * d), e * d * d  # sigma' = e / (1 + e)^2: no cancellation


@_inline
def _tanh(z, param):
    u = fast_expm1(like(z, -2.0) * abs(z))  # tanh|z| = -u / (2 + u), no cancellation near 0
    return math.copysign(-u / (like(z, 2.0) + u), z)


@_inline
def _tanh_slope(z, param):
    e, u = fast_exp_expm1(like(z, -2.0) * abs(z))
    one = like(z, 1.0)
    # 1 - tanh^2 = 4 e / (1 + e)^2 with e = exp(-2|z|): no cancellation for large |z|
    return math.copysign(-u / (like(z, 2.0) + u), z), like(z, 4.0) * e / ((one + e) * (one + e))


@_inline
def _softplus(z, param):
    return max(z, like(z, 0.0)) + math.log1p(fast_exp(-abs(z)))


@_inline
def _softplus_slope(z, param):
    return _softplus(z, param), _sigmoid(z, param)


@_inline
def _flat(z, param):
    c = min(max(z, like(z, 0.0)), like(z, 1.0))
    return c * c * (like(z, 3.0) - like(z, 2.0) * c)


@_inline
def _flat_slope(z, param):
    c = min(max(z, like(z, 0.0)), like(z, 1.0))
    return c * c * (like(z, 3.0) - like(z, 2.0) * c), like(z, 6.0) * c * (like(z, 1.0) - c)


@njit(cache=True)
def activation(z, act_id, param):
    """sigma(z) for the activation ``act_id`` (scalar; for tests and small computations)."""
    if act_id == 0:
        return _relu(z, param)
    if act_id == 1:
        return _leaky(z, param)
    if act_id == 2:
        return _sigmoid(z, param)
    if act_id == 3:
        return _tanh(z, param)
    if act_id == 4:
        return _softplus(z, param)
    return _flat(z, param)


@njit(cache=True)
def activation_and_slope(z, act_id, param):
    """(sigma(z), sigma'(z)) for the activation ``act_id`` (scalar)."""
    if act_id == 0:
        return _relu_slope(z, param)
    if act_id == 1:
        return _leaky_slope(z, param)
    if act_id == 2:
        return _sigmoid_slope(z, param)
    if act_id == 3:
        return _tanh_slope(z, param)
    if act_id == 4:
        return _softplus_slope(z, param)
    return _flat_slope(z, param)


@_inline
def activate_tile(z, count, act_id, param):
    """z[t] <- sigma(z[t]) for t < count."""
    if act_id == 0:
        for t in range(count):
            z[t] = _relu(z[t], param)
    elif act_id == 1:
        for t in range(count):
            z[t] = _leaky(z[t], param)
    elif act_id == 2:
        for t in range(count):
            z[t] = _sigmoid(z[t], param)
    elif act_id == 3:
        for t in range(count):
            z[t] = _tanh(z[t], param)
    elif act_id == 4:
        for t in range(count):
            z[t] = _softplus(z[t], param)
    else:
        for t in range(count):
            z[t] = _flat(z[t], param)


@_inline
def activate_tile_with_slope(z, value, count, act_id, param):
    """value[t] <- sigma(z[t]) and z[t] <- sigma'(z[t]) for t < count."""
    if act_id == 0:
        for t in range(count):
            value[t], z[t] = _relu_slope(z[t], param)
    elif act_id == 1:
        for t in range(count):
            value[t], z[t] = _leaky_slope(z[t], param)
    elif act_id == 2:
        for t in range(count):
            value[t], z[t] = _sigmoid_slope(z[t], param)
    elif act_id == 3:
        for t in range(count):
            value[t], z[t] = _tanh_slope(z[t], param)
    elif act_id == 4:
        for t in range(count):
            value[t], z[t] = _softplus_slope(z[t], param)
    else:
        for t in range(count):
            value[t], z[t] = _flat_slope(z[t], param)
