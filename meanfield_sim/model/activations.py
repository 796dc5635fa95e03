"""Activation functions sigma and their derivatives, as Numba scalar functions.

Kernels select an activation by integer id (``ACTIVATION_IDS``); the branch on the id is
loop-invariant, so LLVM hoists it out of the kernels' inner loops (measured: no cost against a
kernel specialised to one activation). ``param`` is the leaky-ReLU slope and ignored otherwise.

- relu          sigma(z) = max(z, 0);                 sigma'(0) := 0
- leaky_relu    sigma(z) = z for z > 0, param * z otherwise
- sigmoid       sigma(z) = 1 / (1 + exp(-z))
- tanh          sigma(z) = tanh(z)
- softplus      sigma(z) = log(1 + exp(z))
- flat_sigmoid  the paper's "simplified sigmoid" (Section 5.2): 0 for z <= 0, 1 for z >= 1 and
                the smoothstep 3z^2 - 2z^3 in between, which is C^1 with sigma'(0) = sigma'(1) = 0.
"""
from __future__ import annotations

import math

from numba import njit

ACTIVATION_IDS = {"relu": 0, "leaky_relu": 1, "sigmoid": 2, "tanh": 3, "softplus": 4,
                  "flat_sigmoid": 5}


@njit(inline="always", cache=True)
def activation(z, act_id, param):
    """sigma(z) for the activation ``act_id``."""
    if act_id == 0:
        return z if z > 0.0 else 0.0
    if act_id == 1:
        return z if z > 0.0 else param * z
    if act_id == 2:
        if z >= 0.0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)
    if act_id == 3:
        return math.tanh(z)
    if act_id == 4:
        if z > 0.0:
            return z + math.log1p(math.exp(-z))
        return math.log1p(math.exp(z))
    if z <= 0.0:
        return 0.0
    if z >= 1.0:
        return 1.0
    return z * z * (3.0 - 2.0 * z)


@njit(inline="always", cache=True)
def activation_and_slope(z, act_id, param):
    """(sigma(z), sigma'(z)) for the activation ``act_id``."""
    if act_id == 0:
        return (z, 1.0) if z > 0.0 else (0.0, 0.0)
    if act_id == 1:
        return (z, 1.0) if z > 0.0 else (param * z, param)
    if act_id == 2:
        if z >= 0.0:
            s = 1.0 / (1.0 + math.exp(-z))
        else:
            e = math.exp(z)
            s = e / (1.0 + e)
        return s, s * (1.0 - s)
    if act_id == 3:
        t = math.tanh(z)
        return t, 1.0 - t * t
    if act_id == 4:
        if z > 0.0:
            e = math.exp(-z)
            return z + math.log1p(e), 1.0 / (1.0 + e)
        e = math.exp(z)
        return math.log1p(e), e / (1.0 + e)
    if z <= 0.0:
        return 0.0, 0.0
    if z >= 1.0:
        return 1.0, 0.0
    return z * z * (3.0 - 2.0 * z), 6.0 * z * (1.0 - z)
