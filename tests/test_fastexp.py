"""model.fastexp against NumPy's exp and expm1, evaluated in extended precision (np.longdouble,
80-bit on x86: 11 more bits than float64, so its rounding adds < 1/1000 ulp to the error).

Bound: the reduction x - n ln2 is exact (Cody-Waite, ln2_hi with trailing zero bits), the
polynomial truncation is < 1e-17 (float64) / 6e-9 (float32) relative, and Horner's rounding
plus the final products add about 1 ulp: 2 ulp allowed, over 2 million points spanning the whole
range, 100 thousand near 0 (where expm1 must not cancel), and special values. The functions run
inside a loop compiled with the kernels' fastmath flags (reassociation included), as they are
used, so the test also fails if the flags undo the exact reduction.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from meanfield_sim.model.numeric import FAST
from meanfield_sim.model.fastexp import fast_exp, fast_expm1

RANGES = {np.float64: (-745.0, 709.7), np.float32: (-103.0, 88.7)}


@njit(fastmath=FAST)
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = fast_exp(x[i])


@njit(fastmath=FAST)
def _expm1_all(x, out):
    for i in range(x.size):
        out[i] = fast_expm1(x[i])


def _points(dtype):
    lo, hi = RANGES[dtype]
    return np.concatenate([np.linspace(lo, hi, 2_000_001), np.linspace(-1e-3, 1e-3, 100_001),
                           np.geomspace(1e-30, 1.0, 10_001), -np.geomspace(1e-30, 1.0, 10_001)]
                          ).astype(dtype)


def _max_ulps(got, exact, dtype):
    """max |got - exact| in units of the spacing of dtype at |exact|, over normal results."""
    normal = np.abs(exact) >= np.finfo(dtype).tiny
    spacing = np.spacing(np.abs(exact[normal]).astype(dtype)).astype(np.longdouble)
    return float((np.abs(got[normal].astype(np.longdouble) - exact[normal]) / spacing).max())


@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("name", ("exp", "expm1"))
def test_within_two_ulp_over_the_range(dtype, name):
    x = _points(dtype)
    out = np.empty_like(x)
    (_exp_all if name == "exp" else _expm1_all)(x, out)
    assert out.dtype == dtype
    exact = (np.exp if name == "exp" else np.expm1)(x.astype(np.longdouble))
    assert _max_ulps(out, exact, dtype) <= 2.0


@pytest.mark.parametrize("dtype", (np.float64, np.float32))
def test_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1000.0, -1000.0], dtype=dtype)
    e, m = np.empty_like(x), np.empty_like(x)
    _exp_all(x, e)
    _expm1_all(x, m)
    np.testing.assert_array_equal(e, [1.0, 1.0, np.inf, 0.0, np.nan, np.inf, 0.0])
    np.testing.assert_array_equal(m[[0, 1, 3, 4, 6]], [0.0, 0.0, -1.0, np.nan, -1.0])
    lo = np.array([RANGES[dtype][0] - 2.0], dtype=dtype)  # into the subnormals
    _exp_all(lo, e[:1])
    assert 0.0 <= e[0] < np.finfo(dtype).tiny


@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("name", ("sigmoid", "tanh", "softplus"))
def test_activations_built_on_it_match_numpy(name, dtype):
    """The compiled activation (fast exp inside) against NumPy's formula in extended precision:
    a few ulp of the result, i.e. 1e-15 (float64) / 1e-6 (float32) relative, over z in
    [-50, 50] and near 0; the slope likewise. float32 in gives float32 out."""
    from meanfield_sim.model.activations import ACTIVATION_IDS, activation_and_slope

    @njit
    def both(z, act_id, value, slope):
        for i in range(z.size):
            value[i], slope[i] = activation_and_slope(z[i], act_id, 0.0)

    z = np.concatenate([np.linspace(-50, 50, 200_001), np.geomspace(1e-12, 1, 1001),
                        -np.geomspace(1e-12, 1, 1001), [0.0]]).astype(dtype)
    value, slope = np.empty_like(z), np.empty_like(z)
    both(z, ACTIVATION_IDS[name], value, slope)
    zl = z.astype(np.longdouble)
    exact = {"sigmoid": lambda: (1 / (1 + np.exp(-zl)), np.exp(-zl) / (1 + np.exp(-zl)) ** 2),
             "tanh": lambda: (np.tanh(zl), 4 * np.exp(-2 * np.abs(zl))
                              / (1 + np.exp(-2 * np.abs(zl))) ** 2),  # 1 - tanh^2, no cancelling
             "softplus": lambda: (np.logaddexp(0, zl), 1 / (1 + np.exp(-zl)))}[name]()
    rtol = 1e-15 if dtype == np.float64 else 1e-6
    for got, want in zip((value, slope), exact):
        assert got.dtype == dtype
        err = np.abs(got.astype(np.longdouble) - want)
        assert np.all(err <= rtol * np.abs(want) + np.finfo(dtype).tiny * 4), float(
            (err / np.maximum(np.abs(want), 1e-300)).max())
