"""Neural-collapse and simplex-geometry measures (analysis/collapse.py).

Exact regular simplices must give errors at rounding level; a perturbed simplex must give errors
of order eps (order eps^2 for the NC1 variances); an independent slow implementation with Python
loops must agree to 1e-12; the measures must be invariant under rotations, (for the centred ones)
translations, relabelling and duplication of points; bad input must raise ValueError naming the
argument.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
try:
    from meanfield_sim.analysis import collapse
except ImportError:  # packaging of analysis/ as meanfield_sim.analysis not wired yet
    _spec = importlib.util.spec_from_file_location("collapse", ROOT / "analysis" / "collapse.py")
    collapse = importlib.util.module_from_spec(_spec)
    sys.modules["collapse"] = collapse  # dataclasses looks its module up there
    _spec.loader.exec_module(collapse)

NAMES = [f.name for f in collapse.dataclasses.fields(collapse.CollapseMeasures)]
NEEDS_A = {"nc3_self_duality", "nc3_mean_cos", "nc4_agreement", "simplex_isometry_error"}
UNCENTRED = {"simplex_norm_mean", "simplex_norm_cov", "simplex_cos_error_max",
             "simplex_centroid_norm", "simplex_isometry_error"}
ONE_ON_SIMPLEX = {"nc3_mean_cos", "nc4_agreement"}


def random_orthogonal(rng, p):
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


def simplex(K, R, p, rng, rotate):
    """(K, p) rows: vertices of a regular simplex of radius R centred at 0 (p >= K-1), and the
    self-dual classifier A = sqrt((K-1)/K) / R * Y^T, an isometry on the span (Corollary 9)."""
    E = np.eye(K) - 1.0 / K  # centred basis vectors, |row| = sqrt((K-1)/K)
    basis = np.linalg.svd(E)[2][: K - 1]  # orthonormal basis of the hyperplane sum z = 0
    Y = np.zeros((K, p))
    Y[:, : K - 1] = E @ basis.T * (R / math.sqrt((K - 1) / K))
    if rotate:
        Y = Y @ random_orthogonal(rng, p).T
    return Y, math.sqrt((K - 1) / K) / R * Y


def random_problem(rng, K=4, p=6, per_class=5, zero_weights=True):
    labels = np.concatenate([np.arange(K)] * per_class)
    rng.shuffle(labels)
    n = labels.size
    centres = 3 * rng.normal(size=(K, p))
    H = rng.normal(size=(n, p)) + centres[labels]
    weights = rng.uniform(0.1, 2.0, size=n)
    if zero_weights:  # a third of the points weigh 0 (never all of a class); their values are NaN
        zero = np.concatenate([np.flatnonzero(labels == c)[1:3] for c in range(K)])
        weights[zero] = 0.0
        H[zero] = np.nan
    A = centres + 2 * rng.normal(size=(K, p))  # a noisy nearest-centre classifier
    return H, labels, weights, A, rng.normal(size=K)


def measures(*args, **kw):
    return collapse.dataclasses.asdict(collapse.collapse_measures(*args, **kw))


def test_module_imports_only_numpy():
    tree = ast.parse((ROOT / "analysis" / "collapse.py").read_text())
    mods = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for a in node.names}
    mods |= {node.module.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom)}
    assert mods <= {"numpy", "collections", "dataclasses", "__future__"}, mods


@pytest.mark.parametrize("K", [2, 3, 5, 10])
@pytest.mark.parametrize("extra_dim, rotate", [(0, False), (0, True), (4, True)])
def test_exact_simplex(K, extra_dim, rotate):
    rng = np.random.default_rng(K + 10 * extra_dim)
    R, p = 1.7, K - 1 + extra_dim
    Y, A = simplex(K, R, p, rng, rotate)
    # A maps the vertices onto the final-layer simplex of equation (4), and ||A||_op = 1
    alpha, beta = math.sqrt((K - 1) / K) * R, -R / math.sqrt(K * (K - 1))
    np.testing.assert_allclose(A @ Y.T, beta + (alpha - beta) * np.eye(K), atol=1e-12)
    assert abs(np.linalg.norm(A, 2) - 1) < 1e-12
    labels = np.repeat(np.arange(K), 3)
    H, weights = Y[labels], rng.uniform(0.5, 2.0, size=labels.size)
    for cw in ("equal", "by_weight"):
        m = measures(H, labels, weights, A, rng.normal() * np.ones(K), class_weighting=cw)
        for name, value in m.items():
            if cw == "by_weight" and name in {"equinorm_cov", "equiangularity",
                                              "equiangularity_max", "etf_gram_error",
                                              "nc3_self_duality", "nc3_mean_cos"}:
                continue  # mu_G is then the weighted mean, not the simplex's centre
            target = R if name == "simplex_norm_mean" else float(name in ONE_ON_SIMPLEX)
            assert abs(value - target) < 1e-12, (name, value)
    geo = collapse.simplex_geometry(H, labels, weights, A)
    np.testing.assert_allclose(geo["norms"], R, rtol=1e-13)
    np.testing.assert_allclose(geo["cosines"], np.where(np.eye(K) == 1, 1.0, -1 / (K - 1)),
                               atol=1e-13)
    assert collapse.simplex_geometry(H, labels, weights, 2 * A, s=2)["isometry_error"] < 1e-12


LINEAR = ["equinorm_cov", "equiangularity", "equiangularity_max", "etf_gram_error",
          "nc3_self_duality", "simplex_norm_cov", "simplex_cos_error_max",
          "simplex_centroid_norm", "simplex_isometry_error", "class_spread_ratio"]
QUADRATIC = ["nc1_trace_pinv", "nc1_trace_ratio", "cdnv"]


@pytest.mark.parametrize("K, extra_dim", [(3, 0), (5, 3), (10, 2)])
def test_perturbed_simplex_scaling(K, extra_dim):
    """Every point and A move by eps * (fixed random direction). The linear errors are
    eps * c1 + eps^2 * c2 + ..., so err(2 eps) / err(eps) = 2 (1 + eps c2/c1 + O(eps^2)); with
    eps = 1e-5 a relative tolerance of 1e-3 allows |c2/c1| up to 100 while a wrong power (ratio
    1, 4 or 8) is off by 50 % or more. The NC1 variants are variances: Sigma_W is exactly eps^2
    times a fixed matrix and Sigma_B = Sigma_B(0) + O(eps), so their ratio is 4 (1 + O(eps)).
    Rounding: errors near 1e-5 (1e-10 for NC1) computed from O(1) data carry relative rounding
    of ~1e-11 (1e-6 at worst), far inside the tolerance."""
    rng = np.random.default_rng(K)
    Y, A0 = simplex(K, 1.0, K - 1 + extra_dim, rng, rotate=True)
    labels = np.repeat(np.arange(K), 4)
    weights = rng.uniform(0.5, 2.0, size=labels.size)
    dH, dA = rng.normal(size=(labels.size, Y.shape[1])), rng.normal(size=A0.shape)
    eps = 1e-5
    m1, m2 = (measures(Y[labels] + e * dH, labels, weights, A0 + e * dA) for e in (eps, 2 * eps))
    for name in LINEAR + QUADRATIC:
        assert m1[name] > 0, name
        expected = 4.0 if name in QUADRATIC else 2.0
        assert abs(m2[name] / m1[name] / expected - 1) < 1e-3, (name, m2[name] / m1[name])
    assert m1["nc4_agreement"] == m2["nc4_agreement"] == 1.0
    assert 0 < 1 - m1["nc3_mean_cos"] < 1e-3


def slow_reference(H, labels, weights, A, b, K, class_weighting):
    """Every measure from its formula with Python loops; NumPy only for pinv and eigenvalues."""
    n, p = len(H), len(H[0])
    pts = [j for j in range(n) if weights[j] > 0]
    mass = [sum(weights[j] for j in pts if labels[j] == c) for c in range(K)]
    mu = [[sum(weights[j] * H[j][i] for j in pts if labels[j] == c) / mass[c] for i in range(p)]
          for c in range(K)]
    pi = [1 / K] * K if class_weighting == "equal" else [m / sum(mass) for m in mass]
    muG = [sum(pi[c] * mu[c][i] for c in range(K)) for i in range(p)]
    cov = [[[sum(weights[j] * (H[j][i] - mu[c][i]) * (H[j][k] - mu[c][k])
                 for j in pts if labels[j] == c) / mass[c] for k in range(p)] for i in range(p)]
           for c in range(K)]
    SW = [[sum(pi[c] * cov[c][i][k] for c in range(K)) for k in range(p)] for i in range(p)]
    SB = [[sum(pi[c] * (mu[c][i] - muG[i]) * (mu[c][k] - muG[k]) for c in range(K))
           for k in range(p)] for i in range(p)]
    var = [sum(cov[c][i][i] for i in range(p)) for c in range(K)]

    def dot(u, v):
        return sum(x * y for x, y in zip(u, v))

    def sub(u, v):
        return [x - y for x, y in zip(u, v)]

    def norm(u):
        return math.sqrt(dot(u, u))

    def cos(u, v):
        return dot(u, v) / (norm(u) * norm(v))

    def std_over_mean(xs):
        mean = sum(xs) / len(xs)
        return math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) / mean

    pairs = [(c, d) for c in range(K) for d in range(c + 1, K)]
    cen = [sub(mu[c], muG) for c in range(K)]
    out = {}
    SBp = np.linalg.pinv(np.array(SB), rcond=1e-10, hermitian=True)
    out["nc1_trace_pinv"] = sum(SW[i][k] * SBp[k][i] for i in range(p) for k in range(p)) / K
    out["nc1_trace_ratio"] = sum(SW[i][i] for i in range(p)) / sum(SB[i][i] for i in range(p))
    out["cdnv"] = sum((var[c] + var[d]) / (2 * dot(sub(mu[c], mu[d]), sub(mu[c], mu[d])))
                      for c, d in pairs) / len(pairs)
    out["equinorm_cov"] = std_over_mean([norm(v) for v in cen])
    angle_errors = [abs(cos(cen[c], cen[d]) + 1 / (K - 1)) for c, d in pairs]
    out["equiangularity"] = sum(angle_errors) / len(pairs)
    out["equiangularity_max"] = max(angle_errors)
    G = [[dot(cen[c], cen[d]) for d in range(K)] for c in range(K)]
    gn = math.sqrt(sum(g * g for row in G for g in row))
    out["etf_gram_error"] = math.sqrt(sum((G[c][d] / gn - ((c == d) - 1 / K) / math.sqrt(K - 1))
                                          ** 2 for c in range(K) for d in range(K)))
    an = math.sqrt(sum(a * a for row in A for a in row))
    mn = math.sqrt(sum(x * x for v in cen for x in v))
    out["nc3_self_duality"] = math.sqrt(sum((A[c][i] / an - cen[c][i] / mn) ** 2
                                            for c in range(K) for i in range(p)))
    out["nc3_mean_cos"] = sum(cos(A[c], cen[c]) for c in range(K)) / K
    agree = 0.0
    for j in pts:
        scores = [dot(A[c], H[j]) + b[c] for c in range(K)]
        dists = [norm(sub(H[j], mu[c])) for c in range(K)]
        agree += weights[j] * (scores.index(max(scores)) == dists.index(min(dists)))
    out["nc4_agreement"] = agree / sum(weights[j] for j in pts)
    norms = [norm(v) for v in mu]
    out["simplex_norm_mean"] = sum(norms) / K
    out["simplex_norm_cov"] = std_over_mean(norms)
    out["simplex_cos_error_max"] = max(abs(cos(mu[c], mu[d]) + 1 / (K - 1)) for c, d in pairs)
    centroid = [sum(mu[c][i] for c in range(K)) / K for i in range(p)]
    out["simplex_centroid_norm"] = norm(centroid)
    C = np.array([sub(mu[c], centroid) for c in range(K)]).T  # (p, K)
    P = C @ np.linalg.pinv(C, rcond=1e-5)  # projector onto the span of the centred means
    AtA = [[sum(A[c][i] * A[c][k] for c in range(K)) for k in range(p)] for i in range(p)]
    s2 = np.linalg.norm(np.array(A), 2) ** 2
    out["simplex_isometry_error"] = max(abs(np.linalg.eigvalsh(P @ np.array(AtA) @ P - s2 * P)))
    dmin = min(norm(sub(mu[c], mu[d])) for c, d in pairs)
    spread = [max(norm(sub(H[j], mu[c])) for j in pts if labels[j] == c) / dmin
              for c in range(K)]
    out["class_spread_ratio"] = max(spread)
    return out, dict(means=mu, global_mean=muG, class_var=var, sigma_w=SW, sigma_b=SB,
                     spread=spread)


@pytest.mark.parametrize("K, p", [(2, 3), (4, 6), (5, 2), (3, 3)])
@pytest.mark.parametrize("cw", ["equal", "by_weight"])
def test_against_slow_reference(K, p, cw):
    rng = np.random.default_rng(100 * K + p)
    H, labels, weights, A, b = random_problem(rng, K, p)
    ref, stats = slow_reference(H.tolist(), labels.tolist(), weights.tolist(), A.tolist(),
                                b.tolist(), K, cw)
    got = measures(H, labels, weights, A, b, class_weighting=cw)
    assert 0 < got["nc4_agreement"] < 1 or (K, p) == (3, 3)  # a non-trivial fraction
    for name in NAMES:
        assert math.isclose(got[name], ref[name], rel_tol=1e-12, abs_tol=1e-12), \
            (name, got[name], ref[name])
    st = collapse.class_statistics(H, labels, weights, class_weighting=cw)
    for key in ("means", "global_mean", "class_var", "sigma_w", "sigma_b"):
        np.testing.assert_allclose(st[key], stats[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(collapse.class_spread_ratio(H, labels, weights), stats["spread"],
                               rtol=1e-12)
    if cw == "by_weight":  # mu_G is then the p-weighted mean of all points
        keep = weights > 0
        np.testing.assert_allclose(st["global_mean"], weights[keep] @ H[keep] / weights.sum(),
                                   rtol=1e-12, atol=1e-14)


def test_public_functions_match_collapse_measures():
    H, labels, weights, A, b = random_problem(np.random.default_rng(7))
    m = measures(H, labels, weights, A, b)
    geo = collapse.simplex_geometry(H, labels, weights, A)
    got = dict(nc1_trace_pinv=collapse.nc1_trace_pinv(H, labels, weights),
               nc1_trace_ratio=collapse.nc1_trace_ratio(H, labels, weights),
               cdnv=collapse.cdnv(H, labels, weights),
               equinorm_cov=collapse.equinorm_cov(H, labels, weights),
               equiangularity=collapse.equiangularity(H, labels, weights)[0],
               equiangularity_max=collapse.equiangularity(H, labels, weights)[1],
               etf_gram_error=collapse.etf_gram_error(H, labels, weights),
               nc3_self_duality=collapse.self_duality(H, labels, A, weights)[0],
               nc3_mean_cos=collapse.self_duality(H, labels, A, weights)[1],
               nc4_agreement=collapse.ncc_agreement(H, labels, A, b, weights),
               simplex_norm_mean=geo["norms"].mean(), simplex_norm_cov=geo["norm_cov"],
               simplex_cos_error_max=geo["cos_error_max"],
               simplex_centroid_norm=geo["centroid_norm"],
               simplex_isometry_error=geo["isometry_error"],
               class_spread_ratio=collapse.class_spread_ratio(H, labels, weights).max())
    assert set(got) == set(NAMES)
    for name in NAMES:
        assert got[name] == m[name], name


def assert_same(m1, m2, names, rtol=1e-10):
    for name in names:
        assert math.isclose(m1[name], m2[name], rel_tol=rtol, abs_tol=1e-12), \
            (name, m1[name], m2[name])


@pytest.mark.parametrize("cw", ["equal", "by_weight"])
def test_invariances(cw):
    rng = np.random.default_rng(11)
    H, labels, weights, A, b = random_problem(rng, K=5, p=7)
    keep = weights > 0
    H, labels, weights = H[keep], labels[keep], weights[keep]  # NaN rows would spoil H + t
    base = measures(H, labels, weights, A, b, class_weighting=cw)
    Q = random_orthogonal(rng, H.shape[1])  # h -> Q h, A -> A Q^T keeps A h + b
    assert_same(base, measures(H @ Q.T, labels, weights, A @ Q.T, b, class_weighting=cw), NAMES)
    t = 10 * rng.normal(size=H.shape[1])  # h -> h + t, b -> b - A t keeps A h + b
    shifted = measures(H + t, labels, weights, A, b - A @ t, class_weighting=cw)
    assert_same(base, shifted, set(NAMES) - UNCENTRED, rtol=1e-8)  # |t| ~ 30: cancellation
    assert not math.isclose(base["simplex_centroid_norm"], shifted["simplex_centroid_norm"])
    perm = rng.permutation(5)  # class c becomes perm[c]
    A2, b2 = np.empty_like(A), np.empty_like(b)
    A2[perm], b2[perm] = A, b
    assert_same(base, measures(H, perm[labels], weights, A2, b2, class_weighting=cw), NAMES)
    doubled = measures(np.vstack([H, H]), np.concatenate([labels, labels]),
                       np.concatenate([weights, weights]) / 2, A, b, class_weighting=cw)
    assert_same(base, doubled, NAMES)
    order = rng.permutation(labels.size)  # the order of the points is irrelevant
    assert_same(base, measures(H[order], labels[order], weights[order], A, b,
                               class_weighting=cw), NAMES)


def test_zero_weight_points_are_ignored():
    H, labels, weights, A, b = random_problem(np.random.default_rng(3))
    keep = weights > 0
    assert np.isnan(H[~keep]).all()
    m = measures(H, labels, weights, A, b)
    assert all(np.isfinite(v) for v in m.values())
    assert_same(m, measures(H[keep], labels[keep], weights[keep], A, b), NAMES, rtol=1e-14)


def test_default_weights_are_equal():
    H, labels, _, A, b = random_problem(np.random.default_rng(4), zero_weights=False)
    equal = measures(H, labels, np.full(labels.size, 0.3), A, b)
    assert_same(measures(H, labels, None, A, b), equal, NAMES, rtol=1e-14)


def test_collapse_over_time():
    rng = np.random.default_rng(5)
    T, Rep, K, p = 3, 2, 4, 5
    labels = np.repeat(np.arange(K), 3)
    H = rng.normal(size=(T, Rep, labels.size, p))
    A, b = rng.normal(size=(T, Rep, K, p)), rng.normal(size=(T, Rep, K))
    weights = rng.uniform(0.5, 1.5, size=labels.size)
    out = collapse.collapse_over_time(H, labels, weights, A, b)
    assert set(out) == set(NAMES)
    for t in range(T):
        for r in range(Rep):
            m = measures(H[t, r], labels, weights, A[t, r], b[t, r])
            for name in NAMES:
                assert out[name].shape == (T, Rep) and out[name][t, r] == m[name]
    no_a = collapse.collapse_over_time(H, labels)  # without A: its measures are nan
    for name in NAMES:
        assert np.isnan(no_a[name]).all() == (name in NEEDS_A), name
    fixed = collapse.collapse_over_time(H, labels, weights, A[0, 0])  # one A for all frames
    assert fixed["nc4_agreement"][2, 1] == measures(H[2, 1], labels, weights, A[0, 0])[
        "nc4_agreement"]
    with pytest.raises(ValueError, match="weights"):
        collapse.collapse_over_time(H, labels, np.ones((T, 7, labels.size)))
    with pytest.raises(ValueError, match="H"):
        collapse.collapse_over_time(np.ones(3), labels)


@pytest.mark.parametrize("change, match", [
    (dict(H=np.ones(12)), r"H must have shape \(n, p\)"),
    (dict(labels=np.zeros(11, dtype=int)), r"labels must have shape"),
    (dict(labels=np.arange(12) % 3 + 0.0), r"labels must be integers"),
    (dict(labels=np.arange(12) % 3 - 1), r"labels must lie in"),
    (dict(weights=np.ones(13)), r"weights must have shape"),
    (dict(weights=-np.ones(12)), r"weights must be finite and >= 0"),
    (dict(weights=np.where(np.arange(12) % 3 == 1, 0.0, 1.0)), r"class 1 has no point"),
    (dict(n_classes=4), r"class 3 has no point"),
    (dict(labels=np.zeros(12, dtype=int)), r"K >= 2"),
    (dict(n_classes=1), r"K >= 2"),
    (dict(A=np.ones((3, 4))), r"A must be a finite \(K, p\)"),
    (dict(A=np.ones((4, 2)), n_classes=3), r"A must have K = 3 rows"),
    (dict(A=np.ones((3, 2)), b=np.ones(4)), r"b must be a finite \(3,\)"),
    (dict(b=np.ones(3)), r"b must .* needs A"),
    (dict(H=np.full((12, 2), np.nan)), r"H must be finite"),
    (dict(class_weighting="uniform"), r"class_weighting"),
])
def test_bad_input(change, match):
    args = dict(H=np.random.default_rng(0).normal(size=(12, 2)), labels=np.arange(12) % 3,
                weights=None)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        collapse.collapse_measures(args.pop("H"), args.pop("labels"), **args)
