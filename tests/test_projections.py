"""Constraint sets of the toy models (``meanfield_sim.flows.projections``): Euclidean projections
onto l^p balls and onto the operator-norm ball, and the tangent cones that turn a velocity into
the velocity of the projected gradient flow.

Every property is one that characterises a Euclidean projection P onto a closed convex set K:
P y in K, P y = y for y in K, P P = P, |P x - P y| <= |x - y|, and the variational inequality
(y - P y) . (z - P y) <= 0 for all z in K; plus an independent numerical solution (SciPy) of
min |x - y|^2 over K. The tangent-cone projection v -> v_T is checked through Moreau's
decomposition v = v_T + v_N, v_N in the normal cone N, v_T in the polar T = N°, v_T . v_N = 0.

Runtime: ~2 s (the l^p projection is Numba code cached on disk).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from meanfield_sim.flows.projections import (lp_boundary, lp_norm, project_lp_ball,
                                             project_spectral_ball, spectral_active,
                                             spectral_active_frame,
                                             tangent_lp_ball, tangent_spectral_ball)

P_VALUES = [1.3, 1.5, 2.0, 3.0, 7.5, math.inf]
EPS = np.finfo(np.float64).eps
RADIUS = 1.7


def _on_sphere(rng, shape, p, radius=RADIUS):
    """Random points scaled exactly onto the l^p sphere (in floating point)."""
    y = rng.normal(size=shape)
    return y * (radius / lp_norm(y, p))[..., None]


def _outside(rng, shape, p, radius=RADIUS):
    """Random points with |y|_p between 1.01 R and 5 R."""
    return _on_sphere(rng, shape, p, radius) * rng.uniform(1.01, 5.0, size=shape[:-1] + (1,))


def _inside(rng, shape, p, radius=RADIUS):
    """Random points with |y|_p between 0.05 R and 0.99 R."""
    return _on_sphere(rng, shape, p, radius) * rng.uniform(0.05, 0.99, size=shape[:-1] + (1,))


def _normal(z, p):
    """Outward normal of the l^p ball at a boundary point z (gradient of |z|_p^p / p)."""
    return np.sign(z) * np.abs(z) ** (p - 1.0)


def _projected(y, p, radius=RADIUS):
    x = y.copy()
    project_lp_ball(x, radius, p)
    return x


# ----------------------------------------------------------------------------------------------
# l^p ball: projection
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", P_VALUES)
def test_lp_projection_lands_on_sphere_and_keeps_interior(p):
    """Outside points land on the sphere to a few ulps (the code rescales its result exactly
    onto it; measured max |P y|_p / R - 1 = 2.2e-16), interior points are returned bitwise
    unchanged, and batches with leading axes (replica, sample) are handled row by row."""
    rng = np.random.default_rng(1)
    y_out, y_in = _outside(rng, (3, 40, 4), p), _inside(rng, (3, 40, 4), p)
    mixed = np.where(rng.random((3, 40, 1)) < 0.5, y_out, y_in)
    x = _projected(mixed, p)
    outside = lp_norm(mixed, p) > RADIUS
    assert outside.any() and (~outside).any()
    np.testing.assert_array_less(np.abs(lp_norm(x[outside], p) / RADIUS - 1.0), 4 * EPS)
    np.testing.assert_array_equal(x[~outside], mixed[~outside])


@pytest.mark.parametrize("p", P_VALUES)
def test_lp_projection_idempotent_and_nonexpansive(p):
    """P(P y) = P y (to 4 ulps of R: a point on the sphere may sum to R^p (1 + eps) and be
    projected again, moving by ~1e-16; measured 4.4e-16), and |P x - P y|_2 <= |x - y|_2 for 500
    random pairs mixing inside and outside points (non-expansiveness holds exactly; the slack
    1e-12 relative covers rounding)."""
    rng = np.random.default_rng(2)
    y = np.concatenate([_outside(rng, (300, 3), p), _inside(rng, (100, 3), p),
                        _on_sphere(rng, (100, 3), p)])
    x = _projected(y, p)
    np.testing.assert_allclose(_projected(x, p), x, rtol=0, atol=4 * EPS * RADIUS)
    perm = rng.permutation(len(y))
    lhs = np.linalg.norm(x - x[perm], axis=-1)
    rhs = np.linalg.norm(y - y[perm], axis=-1)
    assert np.all(lhs <= rhs * (1 + 1e-12) + 1e-15), np.max(lhs - rhs)


@pytest.mark.parametrize("p", P_VALUES)
def test_lp_projection_variational_inequality(p):
    """(y - P y) . (z - P y) <= 0 for every z in the ball: P y is the nearest point. Tested with
    z on the sphere (the hardest case) and inside; allowed 1e-12 (rounding of O(1) numbers)."""
    rng = np.random.default_rng(3)
    y = _outside(rng, (50, 5), p)
    x = _projected(y, p)
    z = np.concatenate([_on_sphere(rng, (200, 5), p), _inside(rng, (200, 5), p)])
    vi = np.einsum("ik,jk->ij", y - x, z) - np.einsum("ik,ik->i", y - x, x)[:, None]
    assert vi.max() <= 1e-12, vi.max()


@pytest.mark.parametrize("p", [1.3, 1.5, 3.0, 7.5])
def test_lp_projection_kkt_conditions(p):
    """Lagrange conditions of min |x - y|^2/2 s.t. |x|_p^p <= R^p at an active constraint:
    y - P y = mu n(P y) with mu >= 0, n the gradient of |x|^p_p / p. Measured: the component of
    y - P y orthogonal to n is <= 1e-15 relative; allowed 1e-12."""
    rng = np.random.default_rng(4)
    y = _outside(rng, (200, 4), p)
    x = _projected(y, p)
    n = _normal(x, p)
    d = y - x
    mu = (d * n).sum(-1) / (n * n).sum(-1)
    residual = np.linalg.norm(d - mu[:, None] * n, axis=-1) / np.linalg.norm(d, axis=-1)
    assert np.all(mu > 0)
    assert residual.max() <= 1e-12, residual.max()


@pytest.mark.parametrize("p", P_VALUES)
def test_lp_projection_matches_scipy(p):
    """Independent solution of min |x - y|^2 s.t. |x|_p^p <= R^p by SciPy (SLSQP with the
    exact constraint gradient, ftol 1e-12; for p = inf L-BFGS-B with box bounds). SLSQP stops
    when the objective changes by < ftol, so its x is accurate to ~sqrt(ftol) ~ 1e-6 at worst
    (measured: <= 3e-8); hence the tolerance 1e-6. Sharper and independent of SciPy's accuracy:
    the package's point is at least as close to y as SciPy's point scaled into the ball
    (1e-12 slack)."""
    rng = np.random.default_rng(5)
    y = _outside(rng, (6, 4), p)
    x = _projected(y, p)
    for yj, xj in zip(y, x):
        obj = (lambda z, yj=yj: float(np.sum((z - yj) ** 2)))
        jac = (lambda z, yj=yj: 2.0 * (z - yj))
        start = 0.5 * yj * RADIUS / lp_norm(yj, p)
        if math.isinf(p):
            res = minimize(obj, start, jac=jac, method="L-BFGS-B",
                           bounds=[(-RADIUS, RADIUS)] * len(yj),
                           options=dict(ftol=1e-15, gtol=1e-12))
        else:
            cons = {"type": "ineq", "fun": lambda z: RADIUS ** p - np.sum(np.abs(z) ** p),
                    "jac": lambda z: -p * np.sign(z) * np.abs(z) ** (p - 1.0)}
            res = minimize(obj, start, jac=jac, constraints=[cons], method="SLSQP",
                           options=dict(ftol=1e-12, maxiter=500))
        assert lp_norm(res.x, p) <= RADIUS * (1 + 1e-6)
        np.testing.assert_allclose(xj, res.x, atol=1e-6)
        feasible = res.x * min(1.0, RADIUS / lp_norm(res.x, p))  # SLSQP may overshoot ~1e-9
        assert obj(xj) <= obj(feasible) + 1e-12


def test_lp_projection_p2_is_radial_scaling():
    rng = np.random.default_rng(6)
    y = _outside(rng, (100, 6), 2.0)
    x = _projected(y, 2.0)
    np.testing.assert_allclose(x, y * (RADIUS / np.linalg.norm(y, axis=-1))[:, None],
                               rtol=2 * EPS, atol=0)


@pytest.mark.parametrize("p", [1.5, 3.0])
def test_lp_projection_writes_through_noncontiguous_views(p):
    """The projection acts in place, also on a strided view (the code reshapes, which copies
    a non-contiguous array, and must write the result back)."""
    rng = np.random.default_rng(7)
    big = _outside(rng, (2, 8, 3), p)
    expected = _projected(big, p)
    view = big[:, ::2, :]
    assert not view.flags.c_contiguous
    project_lp_ball(view, RADIUS, p)
    np.testing.assert_array_equal(big[:, ::2, :], expected[:, ::2, :])
    assert np.all(lp_norm(big[:, 1::2, :], p) > RADIUS)  # the other rows untouched


# ----------------------------------------------------------------------------------------------
# l^p ball: tangent cone
# ----------------------------------------------------------------------------------------------
def _lp_boundary_points(rng, p, n=200, k=4):
    if math.isinf(p):
        # points on faces, edges and corners of the cube: each coordinate at +-R with
        # probability 1/2, else inside
        z = rng.uniform(-0.9, 0.9, size=(n, k)) * RADIUS
        face = rng.random((n, k)) < 0.5
        face[:, 0] = True
        return np.where(face, np.sign(rng.normal(size=(n, k))) * RADIUS, z)
    return _on_sphere(rng, (n, k), p)


@pytest.mark.parametrize("p", P_VALUES)
def test_lp_tangent_cone_moreau_decomposition(p):
    """At boundary points, v_T = tangent(v) satisfies: v_T . n <= 0 for the outward normal(s)
    (for p = inf: every active face normal sign(z_q) e_q); v_N = v - v_T lies in the normal
    cone (finite p: v_N = c n with c >= 0; p = inf: supported on active faces with
    sign(z_q) v_N,q >= 0; p = 2 in particular: v_N = c z); and v_T . v_N = 0 (Moreau). Tolerance
    1e-12 relative to |v| |n| (measured ~1e-16)."""
    rng = np.random.default_rng(8)
    z = _lp_boundary_points(rng, p)
    v = rng.normal(size=z.shape)
    vt = v.copy()
    tangent_lp_ball(z, vt, RADIUS, p)
    vn = v - vt
    scale = np.linalg.norm(v, axis=-1)
    assert np.abs((vt * vn).sum(-1)).max() <= 1e-12 * (scale ** 2).max()
    if math.isinf(p):
        face = np.abs(z) >= RADIUS
        assert np.all(vn[~face] == 0.0)
        assert np.all(np.sign(z[face]) * vn[face] >= 0.0)
        assert np.all(np.sign(z[face]) * vt[face] <= 1e-15)
        return
    n = _normal(z, p)
    nn = np.linalg.norm(n, axis=-1)
    assert np.all((vt * n).sum(-1) <= 1e-12 * scale * nn)
    c = (vn * n).sum(-1) / nn ** 2
    assert np.all(c >= 0.0)
    np.testing.assert_allclose(vn, c[:, None] * n, atol=1e-12 * scale.max())
    removed = c > 0
    assert 0.2 < removed.mean() < 0.8  # both cases (outward and inward v) occurred
    if p == 2.0:
        cz = (vn * z).sum(-1) / (z * z).sum(-1)
        assert np.all(cz >= 0.0)
        np.testing.assert_allclose(vn, cz[:, None] * z, atol=1e-12 * scale.max())


@pytest.mark.parametrize("p", P_VALUES)
def test_lp_tangent_cone_keeps_inward_velocities_and_interior_points(p):
    """A velocity already in the tangent cone (pointing inward or along the boundary) is
    unchanged, and nothing changes at interior points, whatever the velocity."""
    rng = np.random.default_rng(9)
    z = _lp_boundary_points(rng, p)
    v = rng.normal(size=z.shape)
    if math.isinf(p):
        face = np.abs(z) >= RADIUS
        v = np.where(face, -np.sign(z) * np.abs(v), v)  # inward on every active face
    else:
        n = _normal(z, p)
        v -= np.maximum((v * n).sum(-1), 0.0)[:, None] * 1.5 * n / (n * n).sum(-1)[:, None]
        assert np.all((v * n).sum(-1) <= 0.0)
    vt = v.copy()
    tangent_lp_ball(z, vt, RADIUS, p)
    np.testing.assert_array_equal(vt, v)

    inner = _inside(rng, (100, 4), p)
    w = rng.normal(size=inner.shape)
    wt = w.copy()
    tangent_lp_ball(inner, wt, RADIUS, p)
    np.testing.assert_array_equal(wt, w)


def test_lp_boundary_tolerance():
    """lp_boundary flags points within relative 1e-9 of the sphere, not those further in."""
    z = np.array([[1.0, 0.0], [1.0 - 1e-10, 0.0], [1.0 - 1e-7, 0.0], [0.6, 0.8]])
    np.testing.assert_array_equal(lp_boundary(z, 1.0, 2.0), [True, True, False, True])
    np.testing.assert_array_equal(lp_boundary(np.array([[1.0, 0.3]]), 1.0, math.inf),
                                  [[True, False]])


# ----------------------------------------------------------------------------------------------
# operator-norm ball
# ----------------------------------------------------------------------------------------------
SHAPES = [(3, 5), (5, 3), (4, 4)]


def _random_matrices(rng, shape, count, op_range):
    A = rng.normal(size=(count,) + shape)
    target = rng.uniform(*op_range, size=count)
    return A * (target / np.linalg.norm(A, ord=2, axis=(1, 2)))[:, None, None]


def _spec_projected(A, bound):
    B = A.copy()
    project_spectral_ball(B, bound)
    return B


@pytest.mark.parametrize("shape", SHAPES)
def test_spectral_projection(shape):
    """Result has |.|_op <= bound (to 1e-14 relative), equals the SVD with singular values
    clipped at the bound, is idempotent, leaves matrices inside bitwise untouched, and is
    non-expansive in the Frobenius norm (on 200 random pairs)."""
    rng = np.random.default_rng(10)
    bound = 1.3
    A = np.concatenate([_random_matrices(rng, shape, 100, (1.01 * bound, 4 * bound)),
                        _random_matrices(rng, shape, 100, (0.1 * bound, 0.99 * bound))])
    B = _spec_projected(A, bound)
    ops = np.linalg.norm(B, ord=2, axis=(1, 2))
    assert ops.max() <= bound * (1 + 1e-14)
    np.testing.assert_allclose(ops[:100], bound, rtol=1e-14)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    clipped = (U * np.minimum(s, bound)[:, None, :]) @ Vt
    np.testing.assert_allclose(B, clipped, rtol=0, atol=1e-14 * bound)
    np.testing.assert_array_equal(B[100:], A[100:])
    np.testing.assert_allclose(_spec_projected(B, bound), B, rtol=0, atol=1e-14 * bound)
    perm = rng.permutation(len(A))
    lhs = np.linalg.norm(B - B[perm], axis=(1, 2))
    rhs = np.linalg.norm(A - A[perm], axis=(1, 2))
    assert np.all(lhs <= rhs * (1 + 1e-12)), np.max(lhs - rhs)


@pytest.mark.parametrize("shape", SHAPES)
def test_spectral_projection_variational_inequality(shape):
    """<A - P A, C - P A>_F <= 0 for C in the ball: P A is the nearest matrix in Frobenius."""
    rng = np.random.default_rng(11)
    A = _random_matrices(rng, shape, 30, (1.2, 3.0))
    B = _spec_projected(A, 1.0)
    C = _random_matrices(rng, shape, 300, (0.2, 1.0))
    vi = (np.einsum("iab,jab->ij", A - B, C)
          - np.einsum("iab,iab->i", A - B, B)[:, None])
    assert vi.max() <= 1e-12, vi.max()


def _boundary_matrix(rng, shape, singular):
    k, m = shape
    U, _ = np.linalg.qr(rng.normal(size=(k, k)))
    V, _ = np.linalg.qr(rng.normal(size=(m, m)))
    r = min(k, m)
    return (U[:, :r] * np.asarray(singular)) @ V[:, :r].T, U[:, :r], V[:, :r]


@pytest.mark.parametrize("shape,singular", [((3, 5), (1.0, 0.7, 0.3)),
                                            ((3, 5), (1.0, 1.0, 0.4)),
                                            ((5, 3), (1.0, 1.0, 1.0)),
                                            ((4, 4), (1.0, 0.9, 0.5, 0.1))])
def test_spectral_tangent_cone_moreau(shape, singular):
    """At A with r singular values at the bound 1 (U_r, V_r their singular vectors): the
    normal cone is {U_r S V_r^T : S symmetric PSD}. For 50 random V: V_N = V - V_T has that
    form (U_r^T V_N V_r symmetric PSD, and V_N = U_r (U_r^T V_N V_r) V_r^T), <V_T, V_N> = 0, and
    V_T is in the polar cone: <V_T, U_r S V_r^T> <= 0 for every PSD S, i.e.
    sym(U_r^T V_T V_r) is negative semidefinite. Tolerances 1e-12 relative (measured ~1e-16)."""
    rng = np.random.default_rng(12)
    A, U, V = _boundary_matrix(rng, shape, singular)
    r = int(np.sum(np.isclose(singular, 1.0)))
    assert spectral_active(A[None], 1.0)[0] == r
    Ur, Vr = U[:, :r], V[:, :r]
    inward = 0
    for _ in range(50):
        W = rng.normal(size=(1,) + shape)
        WT = W.copy()
        tangent_spectral_ball(A[None], WT, 1.0)
        WN = (W - WT)[0]
        S = Ur.T @ WN @ Vr
        np.testing.assert_allclose(S, S.T, atol=1e-12)
        assert np.linalg.eigvalsh(0.5 * (S + S.T)).min() >= -1e-12
        np.testing.assert_allclose(Ur @ S @ Vr.T, WN, atol=1e-12)
        assert abs(np.sum(WT[0] * WN)) <= 1e-12 * np.sum(W * W)
        M = Ur.T @ WT[0] @ Vr
        assert np.linalg.eigvalsh(0.5 * (M + M.T)).max() <= 1e-12
        inward += np.allclose(WN, 0.0)
    assert inward < 50  # some velocities pointed outward and were changed


@pytest.mark.parametrize("shape,singular", [((3, 5), (1.0, 0.7, 0.3)),
                                            ((4, 4), (1.0, 1.0, 0.5, 0.1))])
def test_spectral_tangent_step_stays_in_ball_to_second_order(shape, singular):
    """For V pointing outward (u_1^T V v_1 > 0) the step A + eps V leaves the ball at first
    order, |A + eps V|_op - 1 ~ eps u_1^T V v_1, while the tangent step A + eps V_T exceeds the
    bound by O(eps^2) only: the excess / eps^2 stays bounded (by 10 |V|_F^2 here; first-order
    perturbation theory of the top singular cluster) as eps goes from 1e-2 to 1e-5, and the
    excess of the raw step / eps stays near u_1^T V v_1 > 0."""
    rng = np.random.default_rng(13)
    A, U, V = _boundary_matrix(rng, shape, singular)
    W = rng.normal(size=shape)
    W += (1.0 - U[:, 0] @ W @ V[:, 0]) * np.outer(U[:, 0], V[:, 0])  # u1^T W v1 = 1
    WT = W[None].copy()
    tangent_spectral_ball(A[None], WT, 1.0)
    WT = WT[0]
    for eps in (1e-2, 1e-3, 1e-4, 1e-5):
        raw = np.linalg.norm(A + eps * W, ord=2) - 1.0
        tan = np.linalg.norm(A + eps * WT, ord=2) - 1.0
        assert raw >= 0.5 * eps
        assert tan <= 10 * eps ** 2 * np.sum(W * W) + 1e-15, (eps, tan)


def test_spectral_tangent_interior_untouched():
    rng = np.random.default_rng(14)
    A = _random_matrices(rng, (3, 5), 10, (0.1, 0.99))
    W = rng.normal(size=A.shape)
    WT = W.copy()
    tangent_spectral_ball(A, WT, 1.0)
    np.testing.assert_array_equal(WT, W)


def test_spectral_tangent_field_with_frozen_active_set_is_continuous():
    """With the active set frozen (the frame at A, as begin_step does), the projected velocity
    should depend smoothly on the point where it is evaluated: moving A by delta = 2e-7 should
    change V_T by O(delta |V|). Here sigma = (1, 1 - 1e-5, 0.3) (sigma_2 just outside the active
    tolerance) and the perturbation raises sigma_2 to 1 + 1e-5 > sigma_1, so 'the top singular
    pair' switches from (u1, v1) to (u2, v2): a field that followed the top pair would stop
    removing the outward component along u1 v1^T and remove the one along u2 v2^T instead,
    |Delta V_T| = O(1)."""
    rng = np.random.default_rng(15)
    A, U, V = _boundary_matrix(rng, (3, 5), (1.0, 1.0 - 1e-5, 0.3))
    assert spectral_active(A[None], 1.0)[0] == 1
    W = np.outer(U[:, 0], V[:, 0]) + np.outer(U[:, 1], V[:, 1])  # outward along both pairs
    delta = 2e-5
    A2 = A + delta * np.outer(U[:, 1], V[:, 1])
    frames = spectral_active_frame(A[None], 1.0)  # frozen at A, as begin_step does
    W1, W2 = W[None].copy(), W[None].copy()
    tangent_spectral_ball(A[None], W1, 1.0, frames)
    tangent_spectral_ball(A2[None], W2, 1.0, frames)
    jump = np.linalg.norm(W1 - W2)
    assert jump <= 1e3 * delta * np.linalg.norm(W), jump


@pytest.mark.parametrize("p", [1.5, 20.0, 100.0])
def test_lp_projection_of_far_points(p):
    """Points 10 to 5000 radii away (|y|^p overflows for p = 100): the projection is still the
    nearest point. Checked by the variational inequality against many points z of the ball
    (scaled by |y - Py| so the test is relative) and coordinate-wise |Py_q| <= |y_q|. A
    Newton iteration crawling down u^(p-1) once stopped 10x short of the solution here."""
    rng = np.random.default_rng(21)
    y = rng.normal(size=(50, 4)) * np.exp(rng.uniform(np.log(10), np.log(5000), size=(50, 1)))
    x = y.copy()
    project_lp_ball(x, 1.0, p)
    assert np.abs(lp_norm(x, p) - 1.0).max() <= 1e-12
    assert np.all(np.abs(x) <= np.abs(y) + 1e-15)
    z = rng.normal(size=(4000, 4))
    project_lp_ball(z, 1.0, p)
    z *= rng.uniform(0.0, 1.0, size=(4000, 1))
    for yi, xi in zip(y, x):
        gap = ((yi - xi) * (z - xi)).sum(axis=1).max() / np.linalg.norm(yi - xi)
        assert gap <= 1e-9, gap
