"""Constraint sets of the toy models: projections onto them and tangent cones at their boundary.

- l^p ball {z in R^k : |z|_p <= R}, p in (1, inf]: exact projection for p = 2 (radial) and
  p = inf (clipping); for other p the Euclidean projection solved from its optimality
  conditions (below).
- spectral ball {A in R^{k x m} : |A|_op <= s}: projection by clipping the singular values.

All functions act on a batch of points along the leading axes, in place. The tangent-cone
functions turn a velocity v at a point z into the velocity of the projected gradient flow:
where z sits on the boundary (to relative tolerance ``BOUNDARY_TOL``) the component of v in the
outward normal cone N(z) is removed, v <- v - Pi_N(z)(v), which by Moreau's decomposition is the
projection of v onto the tangent cone.

Euclidean projection onto the l^p ball, 1 < p < inf: for y outside, the projection x has
x_q = sign(y_q) u_q where, for a multiplier lam > 0, u_q in [0, |y_q|] solves
u_q + lam p u_q^(p-1) = |y_q| (stationarity of |x - y|^2/2 + lam (|x|_p^p - R^p)), and lam is
the root of sum_q u_q(lam)^p = R^p, which decreases in lam. Both scalar equations are monotone:
u by safeguarded Newton, lam by bisection after bracketing.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

BOUNDARY_TOL = 1e-9
SPECTRAL_TOL = 1e-6
"""Singular values within SPECTRAL_TOL (relative) of the bound count as active. Wider than
BOUNDARY_TOL because singular vectors of nearly equal singular values are ill-conditioned: a
singular value hovering 1e-8 below the bound, beside active ones, made the constrained directions
flip between steps and dopri5 chatter at steps of 1e-7 (measured). Held directions are snapped
onto the bound after each step, so the wider set costs at most a 1e-6 relative move."""


def lp_norm(z: np.ndarray, p: float) -> np.ndarray:
    """|z|_p along the last axis (p = inf allowed), scaled by max|z_q| so that large p does not
    overflow."""
    if p == 2:
        return np.sqrt((z * z).sum(axis=-1))
    top = np.abs(z).max(axis=-1)
    if math.isinf(p):
        return top
    safe = np.where(top > 0.0, top, 1.0)
    return top * ((np.abs(z) / safe[..., None]) ** p).sum(axis=-1) ** (1.0 / p)


def project_lp_ball(z: np.ndarray, radius: float, p: float) -> None:
    """Replace every row z[..., :] outside the l^p ball of ``radius`` by its Euclidean
    projection onto the ball, in place."""
    if p == 2:
        norms = np.sqrt((z * z).sum(axis=-1, keepdims=True))
        z *= np.where(norms > radius, radius / np.where(norms > radius, norms, 1.0), 1.0)
    elif math.isinf(p):
        np.clip(z, -radius, radius, out=z)
    else:
        flat = z.reshape(-1, z.shape[-1])
        _project_lp_rows(flat, float(radius), float(p))
        if not np.shares_memory(flat, z):
            z[...] = flat.reshape(z.shape)


@njit(cache=True)
def _solve_u(a, c, p):
    """u in [0, a] with u + c u^(p-1) = a, for a >= 0, c >= 0, p > 1 (f increasing in u).

    Newton safeguarded as in Numerical Recipes' rtsafe: bisect whenever the Newton step leaves
    the bracket or would not halve it (Newton crawls down steep powers u^(p-1) from above)."""
    if a == 0.0 or c == 0.0:
        return a
    lo, hi = 0.0, a
    u = min(max(a / (1.0 + c * a ** (p - 2.0)), 0.0), a)  # exact for p = 2; 0 if it overflows
    dx_old = a
    for _ in range(300):
        f = u + c * u ** (p - 1.0) - a
        if f > 0.0:
            hi = u
        else:
            lo = u
        if f == 0.0 or hi - lo <= 4e-16 * a:
            break
        slope = 1.0 + c * (p - 1.0) * u ** (p - 2.0) if u > 0.0 else math.inf
        step = f / slope
        if not (lo < u - step < hi) or abs(2.0 * f) > abs(dx_old * slope):
            dx_old = 0.5 * (hi - lo)
            u = lo + dx_old
        else:
            dx_old = step
            u = u - step
    return u


@njit(cache=True)
def _sum_u_p(y_abs, lam, p, u):
    s = 0.0
    for q in range(y_abs.shape[0]):
        u[q] = _solve_u(y_abs[q], lam * p, p)
        s += u[q] ** p
    return s


@njit(cache=True)
def _project_lp_rows(rows, radius, p):
    k = rows.shape[1]
    y_abs = np.empty(k)
    u = np.empty(k)
    for i in range(rows.shape[0]):
        # in units of R the multiplier stays moderate; far outside, |y|^p may overflow to inf,
        # which only ever compares as "outside" and is never needed near the solution
        total = 0.0
        for q in range(k):
            y_abs[q] = abs(rows[i, q]) / radius
            total += y_abs[q] ** p
        if total <= 1.0:
            continue
        lo, hi = 0.0, 1.0
        while _sum_u_p(y_abs, hi, p, u) > 1.0:
            lo, hi = hi, 2.0 * hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break
            if _sum_u_p(y_abs, mid, p, u) > 1.0:
                lo = mid
            else:
                hi = mid
        s = _sum_u_p(y_abs, hi, p, u)
        scale = radius / s ** (1.0 / p) if s > 0.0 else 0.0  # land exactly on the sphere
        for q in range(k):
            rows[i, q] = math.copysign(u[q] * scale, rows[i, q])


def lp_boundary(z: np.ndarray, radius: float, p: float) -> np.ndarray:
    """Which rows of z lie on the boundary of the l^p ball (to relative BOUNDARY_TOL); for
    p = inf, which coordinates lie on a face."""
    if math.isinf(p):
        return np.abs(z) >= radius * (1.0 - BOUNDARY_TOL)
    return lp_norm(z, p) >= radius * (1.0 - BOUNDARY_TOL)


def tangent_lp_ball(z: np.ndarray, v: np.ndarray, radius: float, p: float,
                    on: np.ndarray | None = None) -> np.ndarray:
    """Remove from v (in place) its outward normal component where z is on the boundary, and
    return where it did (rows; coordinates for p = inf): the points the constraint holds.

    ``on``: the boundary set to use (from :func:`lp_boundary`), frozen at the start of a
    Runge-Kutta step so that all its stages see the same active constraints; default: at z."""
    if on is None:
        on = lp_boundary(z, radius, p)
    if math.isinf(p):
        held = on & (v * np.sign(z) > 0.0)
        v[held] = 0.0
        return held
    top = np.abs(z).max(axis=-1, keepdims=True)
    # direction of the gradient of |z|_p^p / p, in units of max|z_q| (no overflow for large p)
    normal = np.sign(z) * (np.abs(z) / np.where(top > 0.0, top, 1.0)) ** (p - 1.0)
    push = (v * normal).sum(axis=-1)
    held = on & (push > 0.0)
    n2 = (normal * normal).sum(axis=-1)
    v -= (np.where(held, push / np.maximum(n2, np.finfo(np.float64).tiny), 0.0))[..., None] \
        * normal
    return held


def snap_to_lp_sphere(z: np.ndarray, radius: float, p: float, held: np.ndarray) -> None:
    """Put the held points (rows; coordinates for p = inf) back onto the boundary, in place: a
    step that follows the sphere ends a local error inside or outside it, and a point left inside
    would see the unconstrained field in the next step. Rows move radially, by O(local error)."""
    if math.isinf(p):
        z[held] = np.copysign(radius, z[held])
        return
    norms = lp_norm(z, p)
    z *= np.where(held & (norms > 0.0), radius / np.where(norms > 0.0, norms, 1.0), 1.0)[..., None]


def project_spectral_ball(A: np.ndarray, bound: float) -> None:
    """Clip the singular values of every matrix A[r] at ``bound``, in place (the Frobenius
    projection onto the operator-norm ball)."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    over = (s > bound).any(axis=-1)
    if over.any():
        clipped = np.minimum(s, bound)
        A[over] = (U[over] * clipped[over][:, None, :]) @ Vt[over]


def spectral_active(A: np.ndarray, bound: float) -> np.ndarray:
    """(R,) number of singular values of each A[r] at the bound: the size of its frame."""
    return np.array([0 if frame is None else frame.shape[1]
                     for frame in spectral_active_frame(A, bound)])


def spectral_active_frame(A: np.ndarray, bound: float) -> list:
    """Per matrix, the left singular vectors U_r of the singular values at the bound (to
    relative SPECTRAL_TOL); None where there is none. Frozen at the start of a step, the frame
    says which singular directions are constrained for all its stages (see
    :func:`tangent_spectral_ball`)."""
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    frames = []
    for r in range(A.shape[0]):
        active = s[r] >= bound * (1.0 - SPECTRAL_TOL)
        frames.append(U[r][:, active] if active.any() else None)
    return frames


def tangent_spectral_ball(A: np.ndarray, V: np.ndarray, bound: float,
                          frames: list | None = None) -> np.ndarray:
    """Remove from V (in place) its component in the normal cone of the operator-norm ball:
    with U_r, V_r the singular vectors of the r constrained singular values, the normal cone is
    {U_r S V_r^T : S symmetric positive semidefinite}, and the projection of V onto it is
    U_r (sym(U_r^T V V_r))_+ V_r^T.

    ``frames`` (from :func:`spectral_active_frame`, frozen for a step; default: at A) fixes
    which directions are constrained: at A the r singular pairs whose left vectors overlap the
    frame most, so the constrained pairs are followed through crossings of singular values (the
    field stays smooth) while the normal cone is always A's own. Returns (R,) the number of
    directions held (positive eigenvalues of the symmetric part)."""
    if frames is None:
        frames = spectral_active_frame(A, bound)
    held = np.zeros(A.shape[0], dtype=np.int64)
    for r, frame in enumerate(frames):
        if frame is None:
            continue
        U, _, Vt = np.linalg.svd(A[r], full_matrices=False)
        overlap = ((frame.T @ U) ** 2).sum(axis=0)
        pick = np.sort(np.argsort(overlap)[::-1][:frame.shape[1]])
        Ur, Vr = U[:, pick], Vt[pick, :].T
        M = Ur.T @ V[r] @ Vr
        lam, Q = np.linalg.eigh(0.5 * (M + M.T))
        held[r] = int((lam > 0.0).sum())
        V[r] -= Ur @ ((Q * np.maximum(lam, 0.0)) @ Q.T) @ Vr.T
    return held


def snap_to_spectral_sphere(A: np.ndarray, bound: float, held: np.ndarray) -> None:
    """Set the top ``held[r]`` singular values of A[r] to exactly ``bound``, in place."""
    for r in np.flatnonzero(held):
        U, s, Vt = np.linalg.svd(A[r], full_matrices=False)
        s[:held[r]] = bound
        A[r] = (U * s) @ Vt
