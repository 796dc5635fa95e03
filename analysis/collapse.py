"""Neural-collapse (NC1-NC4) and simplex-geometry measures of one frame of features (pure NumPy).

Inputs: features H (n, p) (penultimate features y_j, final outputs z_j or outputs h(x_j)), integer
labels (n,) in 0..K-1, weights p_j >= 0 (n,) (default all 1; points of weight 0 are dropped first,
so their values may be anything), optionally a classifier A (K, p) and bias b (K,) (default 0).
K = n_classes, else A.shape[0], else max(labels) + 1. All arithmetic is float64. Every function
takes the keywords n_classes= and class_weighting=.

Conventions. Within class c, w_j = p_j / sum_{i in c} p_i, mu_c = sum_{j in c} w_j h_j and
Cov_c = sum_{j in c} w_j (h_j - mu_c)(h_j - mu_c)^T (population covariance, no n-1). Class weights
pi_c are 1/K (class_weighting="equal", default, as in the paper and Papyan et al.) or
P_c / sum P (class_weighting="by_weight", P_c = sum_{j in c} p_j). Then mu_G = sum_c pi_c mu_c,
Sigma_W = sum_c pi_c Cov_c, Sigma_B = sum_c pi_c (mu_c - mu_G)(mu_c - mu_G)^T (both (1/K) sum_c
for "equal"), and M = [mu_1 - mu_G, ..., mu_K - mu_G] (p, K). Pairs (c, c') mean c < c'.
Pseudo-inverses and spans drop directions whose eigenvalue is <= rcond * the largest (rcond=1e-10).
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

_RCOND = 1e-10


# the points of positive weight h (n, p), their labels y, weights p and w (normalised within each
# class); K; pi_c; mu_c (K, p); mc = mu_c - mu_G (K, p) = M^T; dev = h_j - mu_{c_j}; Var_c; A; b
_Frame = collections.namedtuple("_Frame", "h y p w K pi means mc dev var A b")


def _frame(H, labels, weights=None, A=None, b=None, n_classes=None, class_weighting="equal"):
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2:
        raise ValueError(f"H must have shape (n, p); got shape {H.shape}")
    n, dim = H.shape
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape (n,) = ({n},) to match H; got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
    p = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"weights must have shape (n,) = ({n},) to match H; got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("weights must be finite and >= 0")
    if A is not None:
        A = np.asarray(A, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != dim or not np.all(np.isfinite(A)):
            raise ValueError(f"A must be a finite (K, p) array with p = {dim}; got shape {A.shape}")
    K = int(n_classes if n_classes is not None else
            A.shape[0] if A is not None else labels.max() + 1 if n else 0)
    if K < 2:
        raise ValueError(f"need K >= 2 classes (from n_classes, A or labels); got K = {K}")
    if A is not None and A.shape[0] != K:
        raise ValueError(f"A must have K = {K} rows (n_classes); got {A.shape[0]}")
    if n and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"labels must lie in 0..K-1 = 0..{K - 1}")
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        if A is None or b.shape != (K,) or not np.all(np.isfinite(b)):
            raise ValueError(f"b must be a finite ({K},) array and needs A; got shape {b.shape}")
    elif A is not None:
        b = np.zeros(K)
    if class_weighting not in ("equal", "by_weight"):
        raise ValueError(f"class_weighting must be 'equal' or 'by_weight'; got {class_weighting!r}")
    keep = p > 0
    h, y, p = H[keep], labels[keep], p[keep]
    if not np.all(np.isfinite(h)):
        raise ValueError("H must be finite at the points of positive weight")
    mass = np.bincount(y, weights=p, minlength=K)
    if np.any(mass == 0):
        raise ValueError(f"weights/labels: class {np.flatnonzero(mass == 0)[0]} has no point "
                         "of positive weight")
    w = p / mass[y]
    onehot = (y[:, None] == np.arange(K)).astype(np.float64)  # (n, K)
    means = (onehot * w[:, None]).T @ h
    pi = np.full(K, 1.0 / K) if class_weighting == "equal" else mass / mass.sum()
    dev = h - means[y]
    var = np.bincount(y, weights=w * np.sum(dev**2, axis=1), minlength=K)
    return _Frame(h, y, p, w, K, pi, means, means - pi @ means, dev, var, A, b)


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def _cosines(V):
    """(K, K) cosines between the rows of V."""
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    return np.clip(U @ U.T, -1.0, 1.0)


def _pairs(X):
    return X[np.triu_indices(X.shape[0], 1)]


def class_statistics(H, labels, weights=None, *, n_classes=None, class_weighting="equal"):
    """dict: means mu_c (K, p); global_mean mu_G = sum_c pi_c mu_c (p,); class_weights pi_c (K,);
    class_var Var_c = tr Cov_c = sum_{j in c} w_j |h_j - mu_c|^2 (K,); sigma_w = sum_c pi_c Cov_c
    (p, p); sigma_b = sum_c pi_c (mu_c - mu_G)(mu_c - mu_G)^T (p, p). See the module docstring."""
    f = _frame(H, labels, weights, n_classes=n_classes, class_weighting=class_weighting)
    D, Bm = _roots(f)
    return dict(means=f.means, global_mean=f.pi @ f.means, class_weights=f.pi, class_var=f.var,
                sigma_w=D.T @ D, sigma_b=Bm.T @ Bm)


def _roots(f):
    """D (n, p), Bm (K, p) with Sigma_W = D^T D and Sigma_B = Bm^T Bm."""
    return np.sqrt(f.pi[f.y] * f.w)[:, None] * f.dev, np.sqrt(f.pi)[:, None] * f.mc


def _nc1(f, rcond=_RCOND):
    D, Bm = _roots(f)
    _, s, vt = np.linalg.svd(Bm, full_matrices=False)  # Sigma_B = V diag(s^2) V^T
    lam = s**2
    on = lam > rcond * lam.max()
    pinv = np.sum(np.sum((D @ vt[on].T) ** 2, axis=0) / lam[on]) / f.K if lam.max() > 0 else np.nan
    d2 = np.sum((f.means[:, None, :] - f.means[None, :, :]) ** 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cdnv = np.mean(_pairs((f.var[:, None] + f.var[None, :]) / (2 * d2)))
    return float(pinv), _div(np.sum(D**2), np.sum(Bm**2)), float(cdnv)


def nc1_trace_pinv(H, labels, weights=None, *, rcond=_RCOND, **kw):
    """NC1 (Papyan et al.): tr(Sigma_W Sigma_B^+) / K, Sigma_B^+ = sum_{lam_i > rcond lam_max}
    v_i v_i^T / lam_i (eigenpairs of Sigma_B, i.e. inverted on its range); nan if Sigma_B = 0."""
    return _nc1(_frame(H, labels, weights, **kw), rcond)[0]


def nc1_trace_ratio(H, labels, weights=None, **kw):
    """NC1: tr Sigma_W / tr Sigma_B."""
    return _nc1(_frame(H, labels, weights, **kw))[1]


def cdnv(H, labels, weights=None, **kw):
    """NC1 (Galanti et al.'s class-distance normalised variance): mean over pairs c < c' of
    (Var_c + Var_c') / (2 |mu_c - mu_c'|^2), Var_c = sum_{j in c} w_j |h_j - mu_c|^2."""
    return _nc1(_frame(H, labels, weights, **kw))[2]


def _nc2(f):
    norms = np.linalg.norm(f.mc, axis=1)
    err = np.abs(_pairs(_cosines(f.mc)) + 1.0 / (f.K - 1))
    G = f.mc @ f.mc.T  # M^T M
    T = np.eye(f.K) - 1.0 / f.K
    etf = np.linalg.norm(G / np.linalg.norm(G) - T / np.sqrt(f.K - 1))
    return _div(norms.std(), norms.mean()), float(err.mean()), float(err.max()), float(etf)


def equinorm_cov(H, labels, weights=None, **kw):
    """NC2: std_c |mu_c - mu_G| / mean_c |mu_c - mu_G| (population std over the K classes)."""
    return _nc2(_frame(H, labels, weights, **kw))[0]


def equiangularity(H, labels, weights=None, **kw):
    """NC2: (mean, max) over pairs c < c' of |cos(mu_c - mu_G, mu_c' - mu_G) + 1/(K-1)|."""
    return _nc2(_frame(H, labels, weights, **kw))[1:3]


def etf_gram_error(H, labels, weights=None, **kw):
    """NC2: || M^T M / ||M^T M||_F - (I - 11^T/K) / sqrt(K-1) ||_F; sqrt(K-1) = ||I - 11^T/K||_F."""
    return _nc2(_frame(H, labels, weights, **kw))[3]


def _nc3(f):
    frob = np.linalg.norm(f.A / np.linalg.norm(f.A) - f.mc / np.linalg.norm(f.mc))
    cos = np.sum(f.A * f.mc, axis=1) / (np.linalg.norm(f.A, axis=1) * np.linalg.norm(f.mc, axis=1))
    return float(frob), float(cos.mean())


def self_duality(H, labels, A, weights=None, **kw):
    """NC3: (|| A^T/||A||_F - M/||M||_F ||_F, mean_c cos(a_c, mu_c - mu_G)), row a_c of A for
    class c; (0, 1) on a self-dual configuration."""
    return _nc3(_frame(H, labels, weights, A=A, **kw))


def _nc4(f):
    pred = np.argmax(f.h @ f.A.T + f.b, axis=1)
    d2 = np.stack([np.sum((f.h - m) ** 2, axis=1) for m in f.means], axis=1)
    return float(np.sum(f.p * (pred == np.argmin(d2, axis=1))) / np.sum(f.p))


def ncc_agreement(H, labels, A, b=None, weights=None, **kw):
    """NC4: sum_j p_j [argmax_c (A h_j + b)_c = argmin_c |h_j - mu_c|] / sum_j p_j (b = 0 if None;
    ties go to the lowest index); 1 when the classifier acts as the nearest-class-centre rule."""
    return _nc4(_frame(H, labels, weights, A=A, b=b, **kw))


def _simplex(f, s=None, rcond=_RCOND):
    norms = np.linalg.norm(f.means, axis=1)
    cos = _cosines(f.means)
    centroid = f.means.mean(axis=0)
    out = dict(norms=norms, norm_cov=_div(norms.std(), norms.mean()), cosines=cos,
               cos_error_max=float(np.max(np.abs(_pairs(cos) + 1.0 / (f.K - 1)))),
               centroid_norm=float(np.linalg.norm(centroid)), isometry_error=np.nan)
    if f.A is not None:
        _, sv, vt = np.linalg.svd(f.means - centroid, full_matrices=False)
        AU = f.A @ vt[sv**2 > rcond * sv.max() ** 2].T  # A on an orthonormal basis of the span
        s = np.linalg.norm(f.A, 2) if s is None else float(s)
        E = AU.T @ AU - s**2 * np.eye(AU.shape[1])
        out["isometry_error"] = float(np.max(np.abs(np.linalg.eigvalsh(E)))) if E.size else np.nan
    return out


def simplex_geometry(H, labels, weights=None, A=None, *, s=None, rcond=_RCOND, **kw):
    """Paper's prediction (Lemma 8 / Corollary 9: y_i at the vertices of a regular simplex centred
    at 0, A isometric on their span), with uncentred class means mu_c. dict of
    norms |mu_c| (K,) (all equal R); norm_cov std_c|mu_c| / mean_c|mu_c| (0); cosines
    cos(mu_c, mu_c') (K, K) (off-diagonal -1/(K-1)); cos_error_max max_{c<c'} |cos + 1/(K-1)| (0);
    centroid_norm |(1/K) sum_c mu_c| (0; equal class weight whatever class_weighting);
    isometry_error ||P A^T A P - s^2 P||_op = max_{v in span, |v|=1} | |Av|^2 - s^2 | (0; nan
    without A), s = ||A||_op unless given (Corollary 9: s = 1). P projects onto
    span{mu_c - (1/K) sum mu_c}, which is span{mu_c} on an exact simplex; unlike span{mu_c} its
    dimension (K-1) does not jump to K, and the error to ~s^2, as soon as the centroid leaves 0."""
    return _simplex(_frame(H, labels, weights, A=A, **kw), s, rcond)


def _spread(f):
    dist = np.linalg.norm(f.dev, axis=1)
    worst = np.array([dist[f.y == c].max() for c in range(f.K)])
    dmin = np.min(_pairs(np.linalg.norm(f.means[:, None, :] - f.means[None, :, :], axis=-1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return worst / dmin


def class_spread_ratio(H, labels, weights=None, **kw):
    """(K,): max_{j in c, p_j > 0} |h_j - mu_c| / min_{c' != c''} |mu_c' - mu_c''| per class c
    (0 when collapsed; the same minimal distance of two class means for every c)."""
    return _spread(_frame(H, labels, weights, **kw))


@dataclasses.dataclass(frozen=True)
class CollapseMeasures:
    """One frame's measures (floats; nan where A is needed but absent). Exact simplex: all 0
    except nc3_mean_cos = 1, nc4_agreement = 1, simplex_norm_mean = R."""
    nc1_trace_pinv: float
    nc1_trace_ratio: float
    cdnv: float
    equinorm_cov: float
    equiangularity: float
    equiangularity_max: float
    etf_gram_error: float
    nc3_self_duality: float
    nc3_mean_cos: float
    nc4_agreement: float
    simplex_norm_mean: float
    simplex_norm_cov: float
    simplex_cos_error_max: float
    simplex_centroid_norm: float
    simplex_isometry_error: float
    class_spread_ratio: float


def collapse_measures(H, labels, weights=None, A=None, b=None, *, n_classes=None,
                      class_weighting="equal", s=None, rcond=_RCOND) -> CollapseMeasures:
    """All measures above for one frame (s and rcond as in simplex_geometry and nc1_trace_pinv);
    class_spread_ratio is the max over classes of class_spread_ratio(...)."""
    f = _frame(H, labels, weights, A, b, n_classes, class_weighting)
    sg = _simplex(f, s, rcond)
    nc3 = _nc3(f) if A is not None else (np.nan, np.nan)
    return CollapseMeasures(*_nc1(f, rcond), *_nc2(f), *nc3, _nc4(f) if A is not None else np.nan,
                            float(sg["norms"].mean()), sg["norm_cov"], sg["cos_error_max"],
                            sg["centroid_norm"], sg["isometry_error"], float(_spread(f).max()))


def _lead(x, name, shape):
    if x is None:
        return None
    try:
        return np.broadcast_to(np.asarray(x, dtype=np.float64), shape)
    except ValueError:
        raise ValueError(f"{name} must broadcast to shape {shape}; got {np.shape(x)}") from None


def collapse_over_time(H, labels, weights=None, A=None, b=None, **kw) -> dict:
    """collapse_measures over leading axes: H (..., n, p), labels (n,), weights (n,) or (..., n),
    A (K, p) or (..., K, p), b (K,) or (..., K) -> {name: array of shape (...)}."""
    H = np.asarray(H, dtype=np.float64)
    if H.ndim < 2:
        raise ValueError(f"H must have shape (..., n, p); got shape {H.shape}")
    lead, (n, _) = H.shape[:-2], H.shape[-2:]
    W = _lead(weights, "weights", lead + (n,))
    As, bs = _lead(A, "A", lead + np.shape(A)[-2:]), _lead(b, "b", lead + np.shape(b)[-1:])
    out = {f.name: np.empty(lead) for f in dataclasses.fields(CollapseMeasures)}
    for i in np.ndindex(*lead):
        frame = [None if X is None else X[i] for X in (W, As, bs)]
        for k, v in dataclasses.asdict(collapse_measures(H[i], labels, *frame, **kw)).items():
            out[k][i] = v
    return out
