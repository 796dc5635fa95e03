"""Maximum-margin classifiers in Barron space for ReLU networks with bias, by linear programming.

Independent of the simulator (numpy and scipy only). Data x_j in R^d (d = 1, 2), labels y_j = +-1,
z_j = (x_j, 1). A Barron function f(x) = int a relu(w.x + b) dpi has the norm
    ||f||_N = inf int |a| N(w, b) dpi,   N(w, b) = |w| + beta |b|   ("path", the paper's (7), beta=1)
                                       or N(w, b) = sqrt(|w|^2 + beta^2 b^2)   ("euclidean"),
|w| Euclidean, beta = ``bias_weight``. relu is positively homogeneous, so every neuron can be put on
S = {u = (w, b): N(u) = 1} and f = int c relu(u.(x, 1)) dnu(u) with ||f|| = inf int |c| dnu. On a
finite set U of directions u_k in S this is f = sum_k c_k relu(u_k.(x, 1)), ||f|| <= sum |c_k|, and
    gamma*_U = max { gamma : y_j sum_k c_k Phi_jk >= gamma for all j, sum_k |c_k| <= 1 },
Phi_jk = relu(u_k.z_j), is an LP in (c+, c-, gamma) (HiGHS). gamma*_U <= gamma* (the Barron-space
value) and gamma*_U is non-decreasing when U grows. LP duality gives, for every probability vector
lam on the data, gamma* <= sup_{u in S} |F_lam(u)|, F_lam(u) = sum_j lam_j y_j relu(u.z_j), with
equality at the optimal lam (``margin_upper_bound`` evaluates this certificate).

Exactness for d = 1. The lines w x_j + b = 0 ("breakpoint" directions: the neuron's kink sits at a
data point) cut the (w, b) plane into cones; inside one cone the activation pattern is fixed, so the
feature vector Phi(u) = (relu(u.z_j))_j is LINEAR in u there (true, also for the cone containing
w = 0, so "between consecutive data points" should read "between consecutive breakpoint
directions"). Linearity alone is not enough: conv(+-Phi(S)) is spanned by finitely many Phi(u_k)
only if S is a straight segment inside each cone. For the path norm S is the diamond |w| + beta|b|
= 1, straight except at its corners (+-1, 0), (0, +-1/beta); with U = breakpoints + corners every
u in S is a convex combination of two consecutive directions of U in one cone, Phi(u) is the same
combination, and the LP is EXACT (corners are needed: for x = +-1 -> -1, +-2 -> +1 the optimum
uses only the corners relu(+-x) and the constant). For the Euclidean norm S is a circle and the LP
is NOT exact: if consecutive directions of U in one cone are at most delta apart in angle, u =
kappa (t u1 + (1 - t) u2) with kappa <= 1/cos(delta/2), hence
    gamma*_U <= gamma* <= gamma*_U / cos(delta/2)     (error O(delta^2)).
For d = 2 neither surface is polyhedral (|w| is Euclidean) and the grid is only convergent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog, minimize_scalar

NORMS = ("path", "euclidean")


def _points(x, d=None):
    x = np.asarray(x, dtype=np.float64)
    x = np.atleast_1d(x)[:, None] if x.ndim <= 1 and d in (None, 1) else x
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] not in (1, 2) or (d and x.shape[1] != d):
        raise ValueError(f"x must be an (n, d) array with n >= 1 and d = 1 or 2 (d > 2 is not "
                         f"supported), got shape {np.shape(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains non-finite values")
    return x


def _check(x, y, norm, bias_weight):
    x = _points(x)
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}")
    if not np.all((y == 1) | (y == -1)):
        raise ValueError(f"labels must be -1 or +1, got {np.unique(y)!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not (np.isfinite(bias_weight) and bias_weight > 0):
        raise ValueError(f"bias_weight must be positive, got {bias_weight!r}")
    return x, y.astype(np.float64)


def unit_norm(u, norm="path", bias_weight=1.0):
    """N(w, b) of rows u = (w, b) (last entry the bias)."""
    u = np.asarray(u, dtype=np.float64)
    w, b = np.linalg.norm(u[..., :-1], axis=-1), bias_weight * np.abs(u[..., -1])
    return w + b if norm == "path" else np.hypot(w, b)


def _sphere_rays(res):
    """Unit vectors (w1, w2, b) at colatitude pi i/res, longitude pi k/res (nested when res
    doubles); every point of S^2 lies within geodesic distance pi/res of one of them."""
    th = np.pi * np.arange(1, res) / res
    ph = np.pi * np.arange(2 * res) / res
    T, P = np.meshgrid(th, ph, indexing="ij")
    r = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    return np.vstack([r, [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]])


def direction_grid(x, resolution, norm="path", bias_weight=1.0):
    """Directions u_k with N(u_k) = 1. d = 1: ``resolution`` equally spaced angles in the (w, b)
    plane plus the breakpoints +-(1, -x_j) and the four axis directions (the diamond's corners);
    resolution = 0 gives breakpoints + corners only (exact for the path norm). d = 2: the
    ``_sphere_rays(resolution)`` grid plus the arrangement vertices +-(z_j x z_k)."""
    x = _points(x)
    if int(resolution) != resolution or resolution < (0 if x.shape[1] == 1 else 2):
        raise ValueError(f"resolution must be an integer >= 0 (d = 1) or >= 2 (d = 2), got "
                         f"{resolution!r}")
    resolution = int(resolution)
    if x.shape[1] == 1:
        ang = 2 * np.pi * np.arange(resolution) / max(resolution, 1)
        kinks = np.column_stack([np.ones(len(x)), -x[:, 0]])
        rays = np.vstack([np.column_stack([np.cos(ang), np.sin(ang)]), kinks, -kinks,
                          [[1.0, 0], [-1, 0], [0, 1], [0, -1]]])
    else:
        z = np.column_stack([x, np.ones(len(x))])
        cr = np.array([np.cross(z[j], z[k]) for j in range(len(z)) for k in range(j)]
                      ).reshape(-1, 3)
        cr = cr[np.linalg.norm(cr, axis=1) > 1e-12]
        rays = np.vstack([_sphere_rays(resolution), cr, -cr])
    rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    rays = rays[np.unique(np.round(rays, 12), axis=0, return_index=True)[1]]
    return rays / unit_norm(rays, norm, bias_weight)[:, None]


def features(x, directions):
    """Phi_jk = relu(u_k . (x_j, 1))."""
    z = np.column_stack([x, np.ones(len(x))])
    return np.maximum(z @ np.asarray(directions).T, 0.0)


@dataclass(frozen=True)
class MaxMarginResult:
    """margin gamma*; maximiser f = sum_k weights_k relu(directions_k . (x, 1)) (active directions
    only, N(directions_k) = 1, sum |weights| <= 1); values = f(x_j); dual = LP multipliers lam_j
    of the margin constraints (a probability vector: the dual certificate)."""
    margin: float
    norm: str
    bias_weight: float
    directions: np.ndarray
    weights: np.ndarray
    values: np.ndarray
    dual: np.ndarray
    grid_size: int
    status: int
    message: str

    def __call__(self, x):
        """The maximiser evaluated at arbitrary points x, shape (N, d) (or (N,) for d = 1)."""
        return features(_points(x, self.directions.shape[1] - 1), self.directions) @ self.weights


def _margin_lp(Phi, y):
    n, K = Phi.shape
    A = y[:, None] * Phi
    A_ub = np.vstack([np.hstack([-A, A, np.ones((n, 1))]),
                      np.concatenate([np.ones(2 * K), [0.0]])[None]])
    c = np.zeros(2 * K + 1)
    c[-1] = -1.0
    res = linprog(c, A_ub=A_ub, b_ub=np.concatenate([np.zeros(n), [1.0]]),
                  bounds=[(0, None)] * (2 * K) + [(None, None)], method="highs")
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the margin LP: status {res.status}, {res.message}")
    return res


def max_margin(x, y, norm="path", resolution=64, bias_weight=1.0, directions=None):
    """Maximise min_j y_j f(x_j) over ||f||_N <= 1 on the grid ``direction_grid`` (or on the
    given ``directions``, rescaled to N = 1). Raises ValueError for bad input or if the optimal
    margin is <= 0 (not separable: e.g. one point carrying both labels)."""
    x, y = _check(x, y, norm, bias_weight)
    if directions is None:
        U = direction_grid(x, resolution, norm, bias_weight)
    else:
        U = np.asarray(directions, dtype=np.float64)
        U = U / unit_norm(U, norm, bias_weight)[:, None]
    Phi = features(x, U)
    res = _margin_lp(Phi, y)
    K = U.shape[0]
    c = res.x[:K] - res.x[K:2 * K]
    gamma = -res.fun
    if not gamma > 1e-12:
        raise ValueError(f"data cannot be separated: optimal margin {gamma:.3g} <= 0 (a point "
                         "with both labels, or a grid too coarse)")
    act = np.abs(c) > 1e-12
    lam = np.clip(-res.ineqlin.marginals[:len(y)], 0, None)
    return MaxMarginResult(margin=gamma, norm=norm, bias_weight=bias_weight, directions=U[act],
                           weights=c[act], values=Phi @ c, dual=lam / lam.sum(), grid_size=K,
                           status=res.status, message=res.message)


def distance_to_maximisers(x, y, g, norm="path", resolution=64, bias_weight=1.0, tol=1e-6):
    """min over f with ||f||_N <= 1 and min_j y_j f(x_j) >= gamma* (1 - tol) of max_j |g_j -
    f(x_j)|: the sup-distance ON THE DATA from values g (e.g. h(x_j)/||h||) to the maximisers (an
    LP on the same grid, gamma* from ``max_margin``). Exact for d = 1 with the path norm."""
    x, y = _check(x, y, norm, bias_weight)
    g = np.asarray(g, dtype=np.float64)
    if g.shape != y.shape or not np.all(np.isfinite(g)):
        raise ValueError(f"g must be finite with shape {y.shape}, got {g.shape}")
    gamma = max_margin(x, y, norm, resolution, bias_weight).margin
    Phi = features(x, direction_grid(x, resolution, norm, bias_weight))
    (n, K), one = Phi.shape, np.ones((len(y), 1))
    A = y[:, None] * Phi
    A_ub = np.vstack([np.hstack([Phi, -Phi, -one]), np.hstack([-Phi, Phi, -one]),
                      np.hstack([-A, A, 0 * one]),
                      np.concatenate([np.ones(2 * K), [0.0]])[None]])
    b_ub = np.concatenate([g, -g, np.full(n, -gamma * (1 - tol)), [1.0]])
    c = np.zeros(2 * K + 1)
    c[-1] = 1.0
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(0, None)] * (2 * K + 1), method="highs")
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the distance LP: status {res.status}, {res.message}")
    return float(res.fun)


def _sphere_max(zp, coef):
    """max over |v| = 1 of |sum_j coef_j relu(v.zp_j)|, exactly. The maximiser lies in the relative
    interior of a face of the arrangement {v.zp_j = 0}; there F = L_A.v (A = active set) on
    V = {v.zp_j = 0, j in Z}, so v = +-P_V L_A/|P_V L_A|. All such candidates are evaluated."""
    n, D = zp.shape
    if n > 16:
        raise ValueError("the exact certificate enumerates 2^n activation patterns; n <= 16")
    L = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) @ (coef[:, None] * zp)
    cands = [L] + [L - np.outer(L @ z, z) / (z @ z) for z in zp]
    if D == 3:
        cands.append(np.array([np.cross(zp[j], zp[k]) for j in range(n) for k in range(j)]
                              ).reshape(-1, 3))
    C = np.vstack(cands)
    C = C[np.linalg.norm(C, axis=1) > 1e-12]
    C = C / np.linalg.norm(C, axis=1, keepdims=True)
    return float(np.abs(np.maximum(np.vstack([C, -C]) @ zp.T, 0) @ coef).max(initial=0.0))


def margin_upper_bound(x, y, lam, norm="path", bias_weight=1.0, resolution=1000):
    """Certified gamma* <= sup_{N(u)=1} |F_lam(u)| for any probability vector lam (weak LP duality:
    gamma <= sum_j lam_j y_j f(x_j) <= ||f|| sup |F_lam|). Euclidean: exact sup (``_sphere_max``
    with v = (w, beta b)). Path, d = 1: F_lam is linear on each cone and the diamond is straight
    there, so the sup is over breakpoints + corners (exact). Path, d = 2: Lipschitz bound on the
    ``_sphere_rays(resolution)`` grid, rho = pi/resolution, |grad F| <= max_A |sum_{A} lam y z|,
    N is sqrt(1 + beta^2)-Lipschitz: sup <= max_k (|F(u_k)| + Lip rho)/(N(u_k) - Lip_N rho)."""
    x, y = _check(x, y, norm, bias_weight)
    lam = np.clip(np.asarray(lam, dtype=np.float64), 0, None)
    coef = lam / lam.sum() * y
    z = np.column_stack([x, np.ones(len(x))])
    if norm == "euclidean":
        return _sphere_max(z / np.array([1.0] * x.shape[1] + [bias_weight]), coef)
    if x.shape[1] == 1:
        return float(np.abs(features(x, direction_grid(x, 0, norm, bias_weight)).T @ coef).max())
    n = len(y)
    masks = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1 if n <= 16 else None
    lip = (np.linalg.norm(masks @ (coef[:, None] * z), axis=1).max() if masks is not None
           else np.abs(coef) @ np.linalg.norm(z, axis=1))
    rays, rho = _sphere_rays(resolution), np.pi / resolution
    F = np.concatenate([np.maximum(r @ z.T, 0) @ coef for r in np.array_split(rays, 64)])
    den = unit_norm(rays, norm, bias_weight) - np.sqrt(1 + bias_weight ** 2) * rho
    if den.min() <= 0:
        raise ValueError("resolution too small for the Lipschitz certificate")
    return float(((np.abs(F) + lip * rho) / den).max())


def normalised_network(a, w, b, x, norm="path"):
    """h(x)/||h||_N for h(x) = (1/m) sum_i a_i relu(w_i.x + b_i), ||h|| = (1/m) sum |a_i| N(w_i, b_i)
    (the representation's norm, as the simulator records it); a (m,), w (m, d), b (m,)."""
    x = _points(x)
    w = np.asarray(w, dtype=np.float64).reshape(len(a), x.shape[1])
    u = np.column_stack([w, b])
    return features(x, u) @ np.asarray(a) / (np.abs(a) @ unit_norm(u, norm))


# ---- the paper's Section 5.1 example (Lemma 16) -------------------------------------------------

def section5_1_data(points=5):
    """runs/paper/section5_1_relu.toml: ``points`` evenly spaced points on [-2, -1] (label -1) and on
    [1, 2] (label +1), both ends included (placement "grid" = np.linspace)."""
    x = np.concatenate([np.linspace(-2.0, -1.0, points), np.linspace(1.0, 2.0, points)])
    return x[:, None], np.repeat([-1.0, 1.0], points)


def paper_f_b(b, x):
    """Lemma 16 (unnumbered display; the max-margin problem is (7)):
    f_b(x) = 1/(2[1+b]) * {x + b if x > b;  2x if -b < x < b;  x - b if x < -b},  b in [0, 1].
    It is continuous and equals (relu(x + b) - relu(b - x)) / (2(1 + b)) (``paper_f_b_neurons``)."""
    if not (np.isfinite(b) and b >= 0):
        raise ValueError(f"the paper's f_b needs b >= 0 (Lemma 16: b in [0, 1]), got {b!r}")
    x = np.asarray(x, dtype=np.float64)
    x = x[..., 0] if x.ndim == 2 else x
    return np.where(x > b, x + b, np.where(x < -b, x - b, 2 * x)) / (2 * (1 + b))


def paper_f_b_neurons(b):
    """(a, w, bias) of f_b = sum_i a_i relu(w_i x + bias_i): a = (1, -1)/(2(1+b)), w = (1, -1),
    bias = (b, b). Path norm sum |a| (|w| + |bias|) = 1 for every b >= 0."""
    return np.array([1.0, -1.0]) / (2 * (1 + b)), np.array([1.0, -1.0]), np.array([b, b], float)


def paper_f_b_path_norm(b):
    """Path norm of the representation above (= 1). For b in [0, 1] it is the Barron norm: any
    representation of smaller norm would beat the optimal margin 1/2."""
    a, w, bias = paper_f_b_neurons(b)
    return float(np.abs(a) @ (np.abs(w) + np.abs(bias)))


def paper_f_b_margin(b, x, y):
    """min_j y_j f_b(x_j); = f_b(1) = 1/2 on Section 5.1 data for every b in [0, 1]."""
    return float(np.min(np.asarray(y) * paper_f_b(b, x)))


def fit_paper_f_b(x, g, b_range=(0.0, 1.0), samples=2001):
    """b in b_range minimising D(b) = max_j |g_j - f_b(x_j)| for values g (data or a grid), and
    D(b). D is scanned on ``samples`` points, then refined by bounded Brent around the best one."""
    g, fx = np.asarray(g, dtype=np.float64), paper_f_b(b_range[0], x)
    if g.shape != fx.shape or not np.all(np.isfinite(g)):
        raise ValueError(f"g must be finite with shape {fx.shape}, got {g.shape}")
    D = lambda b: float(np.max(np.abs(g - paper_f_b(b, x))))
    bs = np.linspace(*b_range, samples)
    k = int(np.argmin([D(b) for b in bs]))
    lo, hi = bs[max(k - 1, 0)], bs[min(k + 1, samples - 1)]
    r = minimize_scalar(D, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return (float(r.x), float(r.fun)) if r.fun <= D(bs[k]) else (float(bs[k]), D(bs[k]))
