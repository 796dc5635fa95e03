"""Max-margin classifiers in Barron space (analysis/maxmargin.py): closed forms, Lemma 16 of the
paper, grid refinement with a dual certificate, invariances, distance to the maximisers, errors.

Notation: f = sum_k c_k relu(u_k.(x, 1)), N(u_k) = 1, sum |c_k| <= 1; path N = |w| + |b|,
Euclidean N = sqrt(w^2 + b^2); phi_u(x) = relu(w x + b). Weak duality: for every probability
vector lam on the data, gamma* <= max_{N(u)=1} |sum_j lam_j y_j phi_u(x_j)|.
"""
import importlib.util
import pathlib
import sys
import tomllib

import numpy as np
import pytest

try:
    from meanfield_sim.analysis import maxmargin as mm
except ImportError:  # the subpackage is not wired yet: load the file itself
    _path = pathlib.Path(__file__).resolve().parents[1] / "analysis" / "maxmargin.py"
    _spec = importlib.util.spec_from_file_location("_maxmargin_by_path", _path)
    mm = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = mm
    _spec.loader.exec_module(mm)

ROOT = pathlib.Path(__file__).resolve().parents[1]
X2 = np.array([[1.0, 1], [-1, -1], [1, -1], [-1, 1], [0.5, 0], [0, 0.5]])  # XOR-like, d = 2
Y2 = np.array([1, 1, -1, -1, 1, -1])
X_EVEN, Y_EVEN = np.array([-2.0, -1, 1, 2])[:, None], np.array([1, -1, -1, 1])


@pytest.mark.parametrize("x", [[-1.0, 1.0], [-2.0, -1.0, 1.0, 2.0]])
def test_odd_sets_closed_form(x):
    """x = -1 (label -1), +1 (label +1), and the odd 4-point set {-2, -1} -> -1, {1, 2} -> +1.
    Upper bound (lam = 1/2 on x = +-1): 2 gamma <= f(1) - f(-1) <= sum |c_k| max_u |phi_u(1) -
    phi_u(-1)|. Path, w = t >= 0: b = 1 - t gives 1 - relu(1 - 2t) <= 1 (= 1 iff t >= 1/2),
    b = t - 1 gives relu(2t - 1) <= 1; so gamma* <= 1/2. Euclidean: both active (b >= |w|) gives
    2|w| <= sqrt 2, one active (w >= |b|) gives w + b <= sqrt 2 at w = b = 1/sqrt 2; so gamma* <=
    1/sqrt 2. Attained by the odd f = (phi_u(x) - phi_u(-x))/2 with u = (1, 1)/2 resp.
    (1, 1)/sqrt 2 (f is increasing, so the outer points have larger margins)."""
    x = np.array(x)[:, None]
    y = np.sign(x[:, 0])
    for norm, exact in [("path", 0.5), ("euclidean", 2 ** -0.5)]:
        r = mm.max_margin(x, y, norm)
        assert abs(r.margin - exact) < 1e-12 and r.status == 0
        assert abs(mm.margin_upper_bound(x, y, r.dual, norm) - exact) < 1e-12
        assert np.abs(r(x) - r.values).max() < 1e-12 and np.abs(r.weights).sum() <= 1 + 1e-12
        assert np.all(y * r.values >= exact - 1e-12)


def test_even_four_points_closed_form():
    """x = +-1 -> -1, x = +-2 -> +1. Symmetrising f (w -> -w keeps N), f is even and the dual lam is
    alpha/2 on +-2, (1 - alpha)/2 on +-1: gamma* = min_alpha max_u |alpha g(2) - (1 - alpha) g(1)|/2
    with g(x) = phi_u(x) + phi_u(-x), s = |w|.
    Path: g is linear in s on the pieces of the diamond cut at s = 1/3, 1/2, so the max is over
    (g(2), g(1)) in {(2,2), (4/3,4/3), (3/2,1), (2,1), (1/2,0), (0,0)}; the binding terms are
    |2 alpha - 1| (constant neuron) and |3 alpha - 1|/2 (relu(+-x)), equal at alpha = 3/7:
    gamma* = 1/7, attained by f = -(3/7) + (2/7)(relu(x) + relu(-x)) (f(1) = -1/7, f(2) = 1/7).
    Euclidean, cells b >= 2s: F = 2(2 alpha - 1) b; |b| <= s: F = (2 alpha - 1) b + (3 alpha - 1) s,
    max sqrt((3 alpha-1)^2 + (2 alpha-1)^2) when alpha >= 2/5; -2s <= b <= -s: at most alpha/sqrt 2.
    2(1 - 2 alpha) = sqrt(...) gives alpha = 1 - 1/sqrt 3 and gamma* = 2/sqrt 3 - 1, with the
    neuron at angle -30 degrees (w, b) = (cos 30, -sin 30) and the constant."""
    r = mm.max_margin(X_EVEN, Y_EVEN, "path", resolution=0)          # breakpoints + corners
    assert abs(r.margin - 1 / 7) < 1e-12
    order = np.argsort(r.directions[:, 0])
    assert np.allclose(r.directions[order], [[-1, 0], [0, 1], [1, 0]], atol=1e-12)
    assert np.allclose(r.weights[order], [2 / 7, -3 / 7, 2 / 7], atol=1e-12)
    # without the diamond's corners the breakpoints alone are NOT enough
    kinks = np.column_stack([np.ones(4), -X_EVEN[:, 0]])
    assert mm.max_margin(X_EVEN, Y_EVEN, "path", directions=np.vstack([kinks, -kinks])
                         ).margin < 1 / 7 - 0.03
    exact = 2 / np.sqrt(3) - 1
    r = mm.max_margin(X_EVEN, Y_EVEN, "euclidean", resolution=48)   # grid holds -30 degrees
    assert abs(r.margin - exact) < 1e-12
    # a generic grid: gamma_U <= gamma* <= gamma_U / cos(delta/2), delta = max angular gap
    res = 1000
    r = mm.max_margin(X_EVEN, Y_EVEN, "euclidean", resolution=res)
    assert r.margin <= exact + 1e-12 and exact <= r.margin / np.cos(np.pi / res)
    assert exact - r.margin > 1e-9                      # not exact for the Euclidean norm
    ub = mm.margin_upper_bound(X_EVEN, Y_EVEN, r.dual, "euclidean")
    assert exact - 1e-12 <= ub < exact + 1e-6


def test_section5_1_lemma16():
    """Lemma 16: f_b = (1/(2[1+b])) {x + b, x > b; 2x, |x| < b; x - b, x < -b}, b in [0, 1], are
    maximisers of (7). f_b = (relu(x + b) - relu(b - x))/(2(1 + b)) has path norm 1 and f_b(1) = 1/2,
    y f_b >= 1/2 on the data: the paper's value is gamma* = 1/2 (the upper bound 1/2 is the one of
    the 2-point test, which only uses x = +-1). The LP (exact for d = 1) must agree."""
    cfg = tomllib.loads((ROOT / "runs" / "paper" / "section5_1_relu.toml").read_text())["data"]
    assert cfg["kind"] == "intervals" and cfg["placement"] == "grid"
    x_cfg = np.concatenate([np.linspace(*c["interval"], c["points"]) for c in cfg["classes"]])
    y_cfg = np.concatenate([np.full(c["points"], c["label"]) for c in cfg["classes"]])
    x, y = mm.section5_1_data(5)
    assert np.array_equal(x[:, 0], x_cfg) and np.array_equal(y, y_cfg)
    r = mm.max_margin(x, y, "path")
    assert abs(r.margin - 0.5) < 1e-12
    assert abs(mm.max_margin(x, y, "path", resolution=0).margin - 0.5) < 1e-12
    grid = np.linspace(-3, 3, 241)
    for b in [0.0, 0.25, 0.5, 1.0]:
        a, w, bias = mm.paper_f_b_neurons(b)
        rep = np.maximum(np.outer(grid, w) + bias, 0) @ a
        assert np.abs(rep - mm.paper_f_b(b, grid)).max() < 1e-14
        assert mm.paper_f_b_path_norm(b) == pytest.approx(1.0, abs=1e-15)
        assert mm.paper_f_b_margin(b, x, y) == pytest.approx(0.5, abs=1e-15)
        assert mm.distance_to_maximisers(x, y, mm.paper_f_b(b, x)) < 1e-8
    # not unique: f_0 and f_1 are both optimal and differ on the data (f_0(2) = 1, f_1(2) = 3/4)
    assert np.abs(mm.paper_f_b(0, x) - mm.paper_f_b(1, x)).max() == pytest.approx(0.25)
    assert mm.paper_f_b_margin(1.5, x, y) < 0.5 - 0.09     # b > 1: f_b(1) = 1/(1 + b)


def test_section5_1_maximiser_set_on_data():
    """Any maximiser needs f(1) - f(-1) = 1 = sum |c|, so every neuron has |phi(1) - phi(-1)| = 1:
    relu(t x + 1 - t) (weight +), relu(-t x + 1 - t) (weight -), t in [1/2, 1], each side of mass
    1/2. Hence on [1, 2]: f = 1/2 + T (x - 1), on [-2, -1]: f = -1/2 + T' (x + 1) with T, T' in
    [1/4, 1/2] independent; f_b is the odd case T = T' = 1/(2(1 + b)). So the collapsed values
    +-1/2 are 1/4 away (f(2) >= 3/4), and the optimal asymmetric f with T = 1/2, T' = 1/4 is 1/8
    from the best f_b (T = 3/8, b = 1/3)."""
    x, y = mm.section5_1_data(5)
    r = mm.max_margin(x, y, "path")
    for side in (y > 0, y < 0):
        slope = np.diff(r.values[side]) / np.diff(x[side, 0])
        assert np.ptp(slope) < 1e-9 and 0.25 - 1e-9 <= slope[0] <= 0.5 + 1e-9
    assert abs(mm.distance_to_maximisers(x, y, 0.5 * y) - 0.25) < 1e-6
    asym = np.maximum(x[:, 0], 0) / 2 - np.maximum(1 - x[:, 0], 0) / 4   # b1 = 0, b2 = 1
    assert mm.distance_to_maximisers(x, y, asym) < 1e-8
    b, dev = mm.fit_paper_f_b(x, asym)
    assert abs(b - 1 / 3) < 1e-6 and abs(dev - 1 / 8) < 1e-9
    b, dev = mm.fit_paper_f_b(x, mm.paper_f_b(0.37, x))
    assert abs(b - 0.37) < 1e-6 and dev < 1e-9
    grid = np.linspace(-3, 3, 241)                                   # the run's evaluation grid
    b, dev = mm.fit_paper_f_b(grid, mm.paper_f_b(0.8, grid) + 1e-3 * np.sin(grid))
    assert abs(b - 0.8) < 1e-2 and dev < 1.1e-3
    # the run's normalisation h / ||h||: a mean-field net (1/m) sum a_i relu(w_i x + b_i) of f_b
    a, w, bias = mm.paper_f_b_neurons(0.3)
    g = mm.normalised_network(7 * 2 * a, w[:, None], bias, x)       # m = 2, any scale of a
    assert np.abs(g - mm.paper_f_b(0.3, x)).max() < 1e-14


@pytest.mark.parametrize("norm", mm.NORMS)
def test_d2_grid_refinement_and_certificate(norm):
    """Nested grids (resolution doubling) give non-decreasing gamma_U <= gamma*; the dual
    certificate sup |F_lam| bounds gamma* from above (Euclidean: exact sup over the sphere by
    enumeration of the arrangement's faces; path: Lipschitz bound on a finer grid)."""
    gammas = []
    for res in [4, 8, 16, 32, 64, 128]:
        r = mm.max_margin(X2, Y2, norm, res)
        gammas.append(r.margin)
    assert np.all(np.diff(gammas) >= -1e-10)
    assert gammas[-1] - gammas[-2] < 1e-3
    ub = mm.margin_upper_bound(X2, Y2, r.dual, norm, resolution=1500)
    assert max(gammas) <= ub
    assert ub - gammas[-1] < (1e-4 if norm == "euclidean" else 3e-3)


def test_d2_norm_comparison():
    """(|w| + |b|)/sqrt 2 <= sqrt(|w|^2 + b^2) <= |w| + |b|: on the same rays
    gamma_path <= gamma_euclid <= sqrt 2 gamma_path."""
    gp, ge = (mm.max_margin(X2, Y2, n, 32).margin for n in mm.NORMS)
    assert gp <= ge + 1e-12 <= np.sqrt(2) * gp + 1e-12


@pytest.mark.parametrize("s", [0.5, 3.0])
def test_scaling(s):
    """g(x) = f(x/s) has neurons (w/s, b): N(w/s, b) = N_s(w, b)/s with N_s(w, b) = N(w, s b)
    (both norms), and g(s x_j) = f(x_j). Hence gamma*(s X; N) = s gamma*(X; N_s) exactly, and since
    min(1, s) N <= N_s <= max(1, s) N: for s >= 1, gamma*(X) <= gamma*(s X) <= s gamma*(X)."""
    x, y = mm.section5_1_data(4)
    lhs = mm.max_margin(s * x, y, "path", 0).margin
    assert abs(lhs - s * mm.max_margin(x, y, "path", 0, bias_weight=s).margin) < 1e-12
    lhs = mm.max_margin(s * x, y, "euclidean", 2000).margin
    rhs = s * mm.max_margin(x, y, "euclidean", 2000, bias_weight=s).margin
    assert abs(lhs - rhs) < 1e-5
    for norm, xx, yy, res in [("path", X_EVEN, Y_EVEN, 0), ("euclidean", X2, Y2, 32)]:
        g1, gs = (mm.max_margin(t * xx, yy, norm, res).margin for t in (1.0, s))
        lo, hi = sorted([g1, s * g1])
        assert lo - 1e-4 <= gs <= hi + 1e-4


@pytest.mark.parametrize("x, y, res", [(X_EVEN, Y_EVEN, 0), (X2, Y2, 32)])
def test_symmetries(x, y, res):
    """(x, y) -> (-x, -y): g(x) = -f(-x) (neurons (-a, -w, b), same norm); y -> -y: g = -f;
    x -> Q x (rotation, |w| Euclidean); permutations. The d = 2 grid maps to itself under
    w -> -w and quarter turns, so these hold to LP accuracy; a generic rotation to grid accuracy."""
    for norm in mm.NORMS:
        g = mm.max_margin(x, y, norm, res).margin
        assert abs(mm.max_margin(-x, -y, norm, res).margin - g) < 1e-10
        assert abs(mm.max_margin(x, -y, norm, res).margin - g) < 1e-10
        p = np.random.default_rng(1).permutation(len(y))
        r = mm.max_margin(x[p], y[p], norm, res)
        assert abs(r.margin - g) < 1e-10 and np.all(y[p] * r.values >= g - 1e-9)
        if x.shape[1] == 2:
            for ang, tol in [(np.pi / 2, 1e-10), (0.3, 1e-3)]:
                Q = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
                assert abs(mm.max_margin(x @ Q.T, y, norm, res).margin - g) < tol


def test_distance_to_maximisers():
    for x, y, res in [(X_EVEN, Y_EVEN, 0), (X2, Y2, 16)]:
        r = mm.max_margin(x, y, "path", res)
        assert mm.distance_to_maximisers(x, y, r.values, "path", res) < 1e-8
        assert mm.distance_to_maximisers(x, y, 0.9 * r.values, "path", res) > 0.05 * r.margin
    x, y = mm.section5_1_data(5)
    d = mm.distance_to_maximisers(x, y, 0.9 * mm.paper_f_b(0.5, x))   # margin 0.45 < 1/2
    assert d >= 0.05 - 1e-6


def test_bad_input():
    x, y = mm.section5_1_data(3)
    with pytest.raises(ValueError, match="labels"):
        mm.max_margin(x, (y > 0).astype(int))                          # {0, 1}
    with pytest.raises(ValueError, match="d > 2"):
        mm.max_margin(np.zeros((4, 3)), [1, -1, 1, -1])
    with pytest.raises(ValueError, match="cannot be separated"):
        mm.max_margin([[0.0], [0.0], [1.0]], [1, -1, 1])
    with pytest.raises(ValueError, match="shape"):
        mm.max_margin(x, y[:-1])
    with pytest.raises(ValueError, match="norm"):
        mm.max_margin(x, y, "sup")
    with pytest.raises(ValueError, match="non-finite"):
        mm.max_margin(np.array([[np.nan], [1.0]]), [1, -1])
    with pytest.raises(ValueError, match="resolution"):
        mm.max_margin(X2, Y2, "path", resolution=1)
    with pytest.raises(ValueError, match="g must"):
        mm.distance_to_maximisers(x, y, np.zeros(3))
    with pytest.raises(ValueError, match="b >= 0"):
        mm.paper_f_b(-0.5, x)
    with pytest.raises(ValueError, match="bias_weight"):
        mm.max_margin(x, y, bias_weight=0.0)
