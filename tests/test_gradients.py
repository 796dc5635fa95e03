"""Particle velocities against central finite differences of the risk.

The flow is d theta_i/dt = -(1/s_m) dR/d theta_i with R = sum_j p_j l(h(x_j), y_j) and
h = s_m sum_i a_i sigma(w_i . x + b_i); so -s_m * velocity must equal the gradient of
``flow.evaluate(theta).risk`` for every activation x loss x trainable subset x scaling, and the
frozen groups must have velocity exactly 0.

Tolerance. For a C^3 function, the central difference (R(t+e) - R(t-e)) / 2e differs from R'(t)
by e^2 R'''/6 (truncation) plus about ulp(R)/e (rounding of R, |R| <= ~2 here, so ulp ~ 4e-16).
With e = 1e-5 and |R'''| = O(10) on these problems (|x|, |theta| = O(1), m = 5) that is
~2e-10 + ~4e-11, so we allow 1e-8 + 1e-6 |grad| -- two orders of magnitude of headroom, and
still 1e5 times smaller than the gradients themselves (which are asserted to be >= 1e-3, so a
missing factor, sign or term cannot pass). Kinks are avoided: the particles are drawn so that no
pre-activation z_ij lies within 1e-3 of a point where sigma is not C^2 (0 for relu / leaky_relu;
0 and 1 for flat_sigmoid, which is only C^1 there), and a step of 1e-5 in theta moves z by at
most 1e-5 (|x_j| + 1) < 1e-4, so no difference quotient straddles a kink.
"""
from __future__ import annotations

import functools
import itertools
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import physics_helpers as ph  # noqa: E402

from meanfield_sim.kernels import blocked  # noqa: E402

EPS = 1e-5
ATOL, RTOL = 1e-8, 1e-6
SUBSETS = [tuple(c) for r in (1, 2, 3) for c in itertools.combinations(("a", "w", "b"), r)]
LOSSES = ("logistic", "exponential", "softmax_ce")
SCALINGS = ("mean_field", "standard")


def _problem(activation, loss, scaling, train=("a", "w", "b"), bias=True, d=2, n=6):
    """d = 1 with a binary loss takes the kernels' fused one-dimensional path; d = 2 and
    softmax_ce (k = 3) the particle-tile loops for n = 6 and the data-tile loops for n = 40
    (kernels.cpu.TILES_BELOW_N = 32); d = 11 (d + k >= 12) the tiled matrix products of
    kernels.blocked."""
    cfg = ph.small_config(activation, loss, scaling, train, m=5, n=n, d=d, R=2,
                          extra={"model": {"bias": bias}})
    flow, theta0 = ph.build_flow(cfg)
    k = flow.spec.outputs
    assert (flow.kernels is blocked) == (d + k >= 12), flow.kernels
    theta = ph.smooth_particles(theta0.shape, flow.x, k, activation, seed=7,
                                need_inside_unit=activation == "flat_sigmoid")
    if not bias:
        theta[:, :, -1] = 0.0
    return flow, theta


@functools.lru_cache(maxsize=None)
def _fd_gradient(activation, loss, scaling, d=2, n=6):
    """The finite-difference gradient does not depend on which groups train: compute it once."""
    flow, theta = _problem(activation, loss, scaling, d=d, n=n)
    return theta, ph.fd_risk_gradient(flow, theta, EPS)


def _check(flow, theta, fd, train):
    v = ph.velocity_of(flow, theta)
    assert np.isfinite(v).all()
    grad = -flow.spec.scale * v       # velocity = -(1/s_m) dR/dtheta
    sl = flow.spec.slices
    moving = np.zeros(theta.shape[-1], dtype=bool)
    for g in train:
        moving[sl[g]] = True
    # frozen groups: exactly zero, not merely small
    assert np.all(v[..., ~moving] == 0.0), f"frozen groups move: {v[..., ~moving]}"
    err = np.abs(grad[..., moving] - fd[..., moving])
    bound = ATOL + RTOL * np.abs(fd[..., moving])
    assert np.all(err <= bound), (
        f"velocity vs finite differences: max error {err.max():.3g} "
        f"(gradient scale {np.abs(fd[..., moving]).max():.3g})")
    # the comparison is not vacuous: every trained group has a clearly non-zero gradient
    for g in train:
        assert np.abs(fd[..., sl[g]]).max() > 1e-3, f"gradient of group {g} is ~0: test is vacuous"


@pytest.mark.parametrize("d, n", ((1, 6), (2, 6), (2, 40), (11, 6)))
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("train", SUBSETS, ids=lambda t: "".join(t))
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ph.ACTIVATIONS)
def test_velocity_matches_finite_differences(activation, loss, train, scaling, d, n):
    theta, fd = _fd_gradient(activation, loss, scaling, d, n)
    flow, _ = _problem(activation, loss, scaling, train, d=d, n=n)
    _check(flow, theta, fd, train)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("train", SUBSETS, ids=lambda t: "".join(t))
@pytest.mark.parametrize("activation", ph.ACTIVATIONS)
def test_fused_one_dimensional_kernels_match_numpy_across_tiles(activation, train, dtype):
    """d = 1, k = 1 (the fused path): m = 600 particles span three particle tiles, the last
    one partial; outputs and velocities equal a float64 NumPy evaluation of the same formulas
    on the stored values to rounding (1e-12 relative: sums of 600 and 7 terms of size O(1)).
    With float32 storage the sums still accumulate in float64 but some products may round to
    float32 and velocities are stored as float32: 1e-6 relative there."""
    from meanfield_sim.model.activations import ACTIVATION_IDS, activation_and_slope

    cfg = ph.small_config(activation, "logistic", "mean_field", train, m=600, n=7, d=1, R=2,
                          extra={"run": {"dtype": dtype}})
    flow, _ = ph.build_flow(cfg)
    theta = np.random.default_rng(3).standard_normal((2, 600, 3)).astype(dtype)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    theta64 = theta.astype(np.float64)
    act = np.vectorize(lambda z: activation_and_slope(z, ACTIVATION_IDS[activation],
                                                      flow.spec.activation_param))
    z = ph.preactivations(theta64, flow.x.astype(np.float64), 1)     # (R, m, n)
    value, slope = act(z)
    h = flow.spec.scale * np.einsum("ri,rij->rj", theta64[:, :, 0], value)
    np.testing.assert_allclose(flow.evaluate(theta).outputs[:, :, 0], h, rtol=rtol,
                               atol=rtol * np.abs(h).max())
    y = flow.label.astype(float)
    g = flow.data.weight * (-2.0 * y) / (1.0 + np.exp(2.0 * y * h))  # p_j dl/dh, logistic
    c = theta64[:, :, :1] * g[:, None, :] * slope                     # (R, m, n)
    want = np.stack([-np.einsum("rj,rij->ri", g, value),
                     -np.einsum("rij,j->ri", c, flow.x[:, 0].astype(np.float64)),
                     -c.sum(axis=2)], axis=-1)
    for i, group in enumerate("awb"):
        if group not in train:
            want[..., i] = 0.0
    np.testing.assert_allclose(ph.velocity_of(flow, theta), want, rtol=rtol,
                               atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("loss", LOSSES)
def test_no_bias_freezes_b_and_matches_fd(loss):
    """model.bias = false drops b from the trained groups: v_b == 0, a and w still exact."""
    flow, theta = _problem("softplus", loss, "mean_field", bias=False)
    assert flow.spec.train == ("a", "w")
    fd = ph.fd_risk_gradient(flow, theta, EPS)
    _check(flow, theta, fd, ("a", "w"))


def test_replicas_are_independent():
    """Replica r's velocity depends only on theta[r]: changing replica 1 leaves replica 0's
    velocity bit-for-bit unchanged."""
    flow, theta = _problem("tanh", "softmax_ce", "mean_field")
    v0 = ph.velocity_of(flow, theta)
    other = theta.copy()
    other[1] += 0.3
    v1 = ph.velocity_of(flow, other)
    assert np.array_equal(v0[0], v1[0])
    assert not np.allclose(v0[1], v1[1])


def test_scalings_differ_by_exactly_the_factor_m():
    """With the same particles, h_standard = m h_mean_field; at h = 0 (a = 0) the dual weights
    agree, so velocities, which carry no s_m factor, coincide; the risk gradients differ by m."""
    mf, theta = _problem("sigmoid", "logistic", "mean_field")
    st, _ = _problem("sigmoid", "logistic", "standard")
    m = mf.spec.width
    h_mf = mf.evaluate(theta).outputs.copy()
    h_st = st.evaluate(theta).outputs.copy()
    np.testing.assert_allclose(h_st, m * h_mf, rtol=1e-14, atol=1e-15)
    theta0 = theta.copy()
    theta0[:, :, 0] = 0.0
    np.testing.assert_allclose(ph.velocity_of(st, theta0), ph.velocity_of(mf, theta0),
                               rtol=1e-14, atol=1e-16)
