"""The exact sort-and-sweep kernels for d = 1 (kernels/sorted1d.py) against the pairwise kernels
and against first principles.

Agreement is measured normwise, max |sorted - pairwise| / max |pairwise|, over outputs and over
velocities. Both kernels are exact algorithms whose float64 rounding is a few ulp of the terms
summed (sorted1d's docstring bounds its error by eps |S| + eps (|w S1| + |b S0|) plus
O(n eps^2)), so 1e-12 leaves three orders of magnitude; the measured errors are 1e-16 to 1e-15.
A data point at a kink changes a velocity by O(1 / n) if the two kernels classified it
differently, far above that tolerance, so the tie cases check the convention sigma'(0) := 0
(leaky ReLU: the slope p) too.
"""
from __future__ import annotations

import numpy as np
import pytest

from meanfield_sim import config
from meanfield_sim.flows import build_flow
from meanfield_sim.kernels import cpu
from meanfield_sim.kernels.sorted1d import SortedKernels
from meanfield_sim.model.activations import ACTIVATION_IDS

RELU, LEAKY = ACTIVATION_IDS["relu"], ACTIVATION_IDS["leaky_relu"]
FLAT = ACTIVATION_IDS["flat_sigmoid"]
TOL = 1e-12
EVERY_ACTIVATION = pytest.mark.parametrize("act_id, param", [(RELU, 0.0), (LEAKY, 0.25),
                                                             (FLAT, 0.0)],
                                           ids=["relu", "leaky", "flat"])
RELU_AND_FLAT = pytest.mark.parametrize("act_id", [RELU, FLAT], ids=["relu", "flat"])


def both(thetaT, x, dualT, log_scale, k, act_id, param, train=(True, True, True)):
    """(outputs, velocity) of the pairwise and of the sorted kernels, float64 out."""
    R, m, n = thetaT.shape[0], thetaT.shape[2], x.shape[0]
    xT = np.ascontiguousarray(x.T)
    results = []
    for kern in (cpu, SortedKernels()):
        h, v = np.empty((R, n, k)), np.empty((R, m, k + 2))
        kern.forward(thetaT, x, k, act_id, param, 1.0 / m, h)
        kern.velocity(thetaT, xT, dualT, log_scale, k, act_id, param, *train, v)
        results.append((h, v))
    return results


def rel(a, b):
    scale = np.abs(a).max()
    return np.abs(a - b).max() / (scale if scale > 0 else 1.0)


def random_problem(rng, R, m, n, k, *, w=None, b=None, x=None):
    thetaT = rng.normal(size=(R, k + 2, m))
    if w is not None:
        thetaT[:, k] = w
    if b is not None:
        thetaT[:, k + 1] = b
    x = rng.normal(size=(n, 1)) if x is None else np.asarray(x, dtype=np.float64).reshape(-1, 1)
    dualT = rng.normal(size=(R, k, x.shape[0]))
    return thetaT, np.ascontiguousarray(x), dualT, rng.normal(size=R)


CASES = {
    "random": dict(R=2, m=700, n=300, k=1),
    "k=3": dict(R=2, m=400, n=90, k=3),
    "m >> n": dict(R=1, m=5000, n=3, k=1),
    "n >> m": dict(R=1, m=3, n=5000, k=2),
    "one point": dict(R=1, m=50, n=1, k=1),
    "replicas": dict(R=5, m=64, n=33, k=1),
}


@EVERY_ACTIVATION
@pytest.mark.parametrize("case", CASES)
def test_sorted_agrees_with_pairwise_on_random_problems(case, act_id, param):
    thetaT, x, dualT, log_scale = random_problem(np.random.default_rng(1), **CASES[case])
    (h1, v1), (h2, v2) = both(thetaT, x, dualT, log_scale, thetaT.shape[1] - 2, act_id, param)
    assert rel(h1, h2) <= TOL and rel(v1, v2) <= TOL


def adversarial(rng, name):
    m, n = 600, 200
    if name == "kinks outside the data":  # t = -b/w beyond [-1, 1] on both sides
        w = rng.normal(size=m)
        return random_problem(rng, 1, m, n, 1, w=w, b=w * rng.choice([-1, 1], m) * 5.0,
                              x=rng.uniform(-1, 1, n))
    if name == "|b/w| >> |x|":
        return random_problem(rng, 1, m, n, 1, w=1e-4 * rng.normal(size=m),
                              b=1e3 * rng.normal(size=m), x=rng.uniform(-1, 1, n))
    if name == "all on one side":  # every particle active on all data
        return random_problem(rng, 1, m, n, 1, w=np.abs(rng.normal(size=m)) + 0.1,
                              b=np.full(m, 10.0), x=rng.uniform(-1, 1, n))
    if name == "w = 0":  # z = b for every x: active everywhere (b > 0) or nowhere (b <= 0)
        return random_problem(rng, 1, m, n, 1, w=np.zeros(m),
                              b=rng.choice([-1.0, 0.0, 0.5], m), x=rng.normal(size=n))
    if name == "ties":  # kinks exactly on data points: x_j = -b_i / w_i in exact arithmetic
        x = rng.integers(-8, 9, n) / 4.0  # repeated points too
        w = rng.choice([-2.0, -0.5, 0.5, 1.0, 4.0], m)
        return random_problem(rng, 1, m, n, 1, w=w, b=-w * rng.choice(x, m), x=x)
    if name == "ties at z = 1":  # the flat sigmoid's second edge exactly on data points
        x = rng.integers(-8, 9, n) / 4.0
        w = rng.choice([-2.0, -0.5, 0.5, 1.0, 4.0], m)
        return random_problem(rng, 1, m, n, 1, w=w, b=1.0 - w * rng.choice(x, m), x=x)
    if name == "clustered with an outlier":  # every point but one in the first kink bucket:
        # the bucket's guess is far off and the lookup falls back to its binary search
        x = np.concatenate([rng.uniform(0, 1e-3, n - 1), [1e3]])
        w = rng.normal(size=m)
        return random_problem(rng, 1, m, n, 1, w=w, b=-w * rng.uniform(0, 1e-3, m), x=x)
    if name == "steep":  # large |w| and |b| with kinks inside the data
        w = 1e3 * rng.normal(size=m)
        return random_problem(rng, 1, m, n, 1, w=w, b=-w * rng.uniform(-1, 1, m),
                              x=rng.uniform(-1, 1, n))
    raise KeyError(name)


@EVERY_ACTIVATION
@pytest.mark.parametrize("name", ["kinks outside the data", "|b/w| >> |x|", "all on one side",
                                  "w = 0", "ties", "ties at z = 1", "clustered with an outlier",
                                  "steep"])
def test_sorted_agrees_with_pairwise_on_adversarial_problems(name, act_id, param):
    thetaT, x, dualT, log_scale = adversarial(np.random.default_rng(2), name)
    (h1, v1), (h2, v2) = both(thetaT, x, dualT, log_scale, 1, act_id, param)
    assert rel(h1, h2) <= TOL and rel(v1, v2) <= TOL


def test_a_point_on_a_kink_is_inactive_as_in_the_pairwise_kernel():
    """One ReLU particle with its kink at x = 0.5 (w = 2, b = -1) and data 0, 0.5, 1: z = -1, 0,
    1. The point at the kink contributes sigma(0) = 0 and sigma'(0) := 0, so v_w = -g_2 a x_2
    and v_b = -g_2 a (the third point only); by hand, and by both kernels."""
    thetaT = np.array([[[3.0], [2.0], [-1.0]]])  # a, w, b
    x = np.array([[0.0], [0.5], [1.0]])
    dualT = np.array([[[1.0, 10.0, 100.0]]])
    (h1, v1), (h2, v2) = both(thetaT, x, dualT, np.zeros(1), 1, RELU, 0.0)
    expected = -np.array([100.0 * 1.0, 3.0 * 100.0 * 1.0, 3.0 * 100.0])  # v_a, v_w, v_b
    assert np.array_equal(v2[0, 0], expected) and np.array_equal(v1[0, 0], expected)
    assert np.array_equal(h2[0, :, 0], [0.0, 0.0, 3.0]) and np.array_equal(h1, h2)


@RELU_AND_FLAT
def test_frozen_groups_get_zero_velocity(act_id):
    thetaT, x, dualT, log_scale = random_problem(np.random.default_rng(3), 2, 300, 50, 2)
    for train in ((True, False, False), (False, True, False), (False, False, True)):
        (_, v1), (_, v2) = both(thetaT, x, dualT, log_scale, 2, act_id, 0.0, train)
        frozen = np.repeat(np.logical_not(train), [2, 1, 1])
        assert np.all(v2[:, :, frozen] == 0.0) and rel(v1, v2) <= TOL


def test_float32_storage_computes_in_float64():
    """float32 particles and data: the sorted kernels compute in float64 on the float32
    values, so they agree with the float64 pairwise kernels on those values."""
    thetaT, x, dualT, log_scale = random_problem(np.random.default_rng(4), 1, 500, 100, 1)
    t32, x32, d32 = (a.astype(np.float32) for a in (thetaT, x, dualT))
    (h1, v1), _ = both(t32.astype(np.float64), x32.astype(np.float64), d32.astype(np.float64),
                       log_scale, 1, RELU, 0.0)
    _, (h2, v2) = both(t32, x32, d32, log_scale, 1, RELU, 0.0)
    assert rel(h1, h2) <= TOL and rel(v1, v2) <= TOL


@RELU_AND_FLAT
def test_duplicating_the_particles_leaves_the_mean_field_flow_unchanged(act_id):
    """Every particle twice, with the 1/m of h halved: same outputs, same velocity for each
    copy (the mean-field velocity field does not depend on m)."""
    thetaT, x, dualT, log_scale = random_problem(np.random.default_rng(5), 1, 200, 60, 1)
    kern = SortedKernels()
    doubled = np.ascontiguousarray(np.concatenate([thetaT, thetaT], axis=2))
    outs = []
    for th in (thetaT, doubled):
        m = th.shape[2]
        h, v = np.empty((1, 60, 1)), np.empty((1, m, 3))
        kern.forward(th, x, 1, act_id, 0.0, 1.0 / m, h)
        kern.velocity(th, np.ascontiguousarray(x.T), dualT, log_scale, 1, act_id, 0.0,
                      True, True, True, v)
        outs.append((h, v))
    (h1, v1), (h2, v2) = outs
    assert rel(h1, h2) <= 1e-15 and np.array_equal(v2[:, :200], v2[:, 200:])
    assert rel(v1, v2[:, :200]) <= 1e-15


@RELU_AND_FLAT
def test_velocity_is_minus_m_times_the_risk_gradient(act_id):
    """Central differences of the risk R = sum_j p_j l(h(x_j)) (logistic loss, the sorted
    forward pass) against v = -m dR/dtheta, away from kinks (no data point within 1e-3 of a
    particle's kink). Steps h = 1e-5: a truncation error O(h^2) of about 1e-10, and rounding
    m eps R / h of about 4e-10, against velocities of order 0.1."""
    rng = np.random.default_rng(6)
    m, n = 40, 25
    x = np.sort(rng.uniform(-1, 1, n)).reshape(-1, 1)
    w = rng.choice([-1, 1], m) * rng.uniform(0.5, 2, m)
    b = -w * rng.uniform(-1.5, 1.5, m)
    for i in range(m):  # move kinks (z = 0, and z = 1 for the flat sigmoid) away from the data
        while min(np.min(np.abs(x[:, 0] + (b[i] - edge) / w[i])) for edge in (0.0, 1.0)) < 1e-3:
            b[i] += 1e-2
    thetaT = np.stack([rng.normal(size=m), w, b])[None]
    label = rng.choice([-1, 1], n).astype(np.int64)
    log_weight = np.full(n, -np.log(n))
    kern = SortedKernels()

    def risk_and_dual(th):
        h, dual = np.empty((1, n, 1)), np.empty((1, n, 1))
        scalars = np.empty((3, 1))
        kern.forward(th, x, 1, act_id, 0.0, 1.0 / m, h)
        kern.loss_pass(h, label, log_weight, 0, dual, *scalars)
        return scalars[0, 0], np.ascontiguousarray(dual.transpose(0, 2, 1)), scalars[2]

    _, dualT, log_scale = risk_and_dual(thetaT)
    v = np.empty((1, m, 3))
    kern.velocity(thetaT, np.ascontiguousarray(x.T), dualT, log_scale, 1, act_id, 0.0,
                  True, True, True, v)
    step = 1e-5
    fd = np.empty((m, 3))
    for i in range(m):
        for e in range(3):
            plus, minus = thetaT.copy(), thetaT.copy()
            plus[0, e, i] += step
            minus[0, e, i] -= step
            fd[i, e] = -m * (risk_and_dual(plus)[0] - risk_and_dual(minus)[0]) / (2 * step)
    assert rel(fd, v[0]) <= 1e-8


@RELU_AND_FLAT
def test_warm_started_counts_follow_moving_particles(act_id):
    """The kernels keep each particle's active range between calls and only verify it: over
    steps that move kinks across data points (and flip the sign of some w) the results must
    stay those of the pairwise kernels."""
    rng = np.random.default_rng(8)
    thetaT, x, dualT, log_scale = random_problem(rng, 2, 400, 120, 1)
    kern, xT = SortedKernels(), np.ascontiguousarray(x.T)
    for step in range(6):
        thetaT[:, 1:] += 0.05 * rng.normal(size=thetaT[:, 1:].shape)  # w and b move
        h1, h2 = np.empty((2, 120, 1)), np.empty((2, 120, 1))
        v1, v2 = np.empty((2, 400, 3)), np.empty((2, 400, 3))
        cpu.forward(thetaT, x, 1, act_id, 0.0, 1 / 400, h1)
        kern.forward(thetaT, x, 1, act_id, 0.0, 1 / 400, h2)
        cpu.velocity(thetaT, xT, dualT, log_scale, 1, act_id, 0.0, True, True, True, v1)
        kern.velocity(thetaT, xT, dualT, log_scale, 1, act_id, 0.0, True, True, True, v2)
        assert rel(h1, h2) <= TOL and rel(v1, v2) <= TOL, step


@RELU_AND_FLAT
def test_velocity_after_an_in_place_change_searches_again(act_id):
    """After forward, the particles change in place (every w flips sign): velocity's check of
    the kept ranges must fail and search anew (a stale range would misclassify pairs)."""
    thetaT, x, dualT, log_scale = random_problem(np.random.default_rng(7), 1, 300, 80, 1)
    kern = SortedKernels()
    h = np.empty((1, 80, 1))
    kern.forward(thetaT, x, 1, act_id, 0.0, 1.0 / 300, h)
    thetaT[0, 1] *= -1.0  # flip every w: every active range changes
    v_stale, v_fresh = np.empty((1, 300, 3)), np.empty((1, 300, 3))
    xT = np.ascontiguousarray(x.T)
    kern.velocity(thetaT, xT, dualT, log_scale, 1, act_id, 0.0, True, True, True, v_stale)
    cpu.velocity(thetaT, xT, dualT, log_scale, 1, act_id, 0.0, True, True, True, v_fresh)
    assert rel(v_fresh, v_stale) <= TOL


def test_nan_data_are_refused():
    kern = SortedKernels()
    with pytest.raises(ValueError, match="NaN"):
        kern.forward(np.zeros((1, 3, 2)), np.array([[0.0], [np.nan]]), 1, RELU, 0.0, 0.5,
                     np.empty((1, 2, 1)))


# ----------------------------------------------------------------------------------------------
# the switch: run.kernel in the config
# ----------------------------------------------------------------------------------------------
BASE = """
[run]
t_end = 1.0
{run}
[model]
width = 20
activation = "{activation}"
[data]
kind = "gaussian_mixture"
num_classes = 2
dim = {dim}
class_sizes = [5, 5]
"""


def allowed(kernel="auto", activation="relu", dim=1, run=""):
    text = BASE.format(run=f'kernel = "{kernel}"\n{run}', activation=activation, dim=dim)
    return config.loads(text)["derived"]["kernel"]


def test_auto_leaves_the_choice_to_the_flow_where_sorted_applies():
    assert allowed("auto", "relu") == "auto" and allowed("auto", "leaky_relu") == "auto"
    assert allowed("auto", "sigmoid") == "pairwise"
    assert allowed("auto", "relu", dim=2) == "pairwise"
    assert allowed("pairwise", "relu") == "pairwise"
    assert allowed("sorted", "leaky_relu") == "sorted"
    assert allowed("auto", "flat_sigmoid") == "auto"


@pytest.mark.parametrize("activation, points, kernel", [
    ("relu", 10, "pairwise"), ("relu", 199, "pairwise"), ("relu", 200, "sorted"),
    ("leaky_relu", 1000, "sorted"), ("flat_sigmoid", 399, "pairwise"),
    ("flat_sigmoid", 400, "sorted")])
def test_the_flow_picks_the_faster_kernel(activation, points, kernel):
    """Where the sorted kernels apply, 'auto' takes the faster family: pairwise below
    kernels.SORTED_FROM_POINTS[activation] data points, sorted from there on."""
    text = BASE.format(run="", activation=activation, dim=1).replace(
        "class_sizes = [5, 5]", f"class_sizes = [{points // 2}, {points - points // 2}]")
    flow, _ = build_flow(config.loads(text))
    assert flow.kernel == kernel
    assert isinstance(flow.kernels, SortedKernels) == (kernel == "sorted")


@pytest.mark.parametrize("activation, dim, run, why", [
    ("sigmoid", 1, "", "model.activation = 'sigmoid'"),
    ("relu", 3, "", "d = 3"),
    ("relu", 1, 'backend = "cuda"', "run.backend = 'cuda'"),
])
def test_sorted_where_it_does_not_apply_is_a_config_error(activation, dim, run, why):
    with pytest.raises(config.ConfigError, match="run.kernel = 'sorted'") as err:
        allowed("sorted", activation, dim, run)
    assert why in str(err.value)


def integrate(path, overrides, times, kernel, perturbation=0.0):
    """(steps, gradient evaluations, states at ``times``) of the config at ``path`` under
    ``kernel``, with its own integrator, from its initial state times 1 + perturbation N(0, 1)."""
    from meanfield_sim.integrate import make_integrator
    from meanfield_sim.integrate.stepper import IntegratorState

    cfg = config.load(path, [f'run.kernel="{kernel}"', f"run.t_end={times[-1]}", *overrides])
    flow, theta = build_flow(cfg)
    assert flow.kernel == kernel
    theta = theta * (1.0 + perturbation * np.random.default_rng(0).normal(size=theta.shape))
    integrator = make_integrator(flow, cfg["integrator"])
    state = IntegratorState(theta=theta, dt=cfg["integrator"]["dt"])
    frames = []
    for t in times:
        integrator.advance(state, t)
        frames.append(state.theta.copy())
    return state.step, flow.grad_evals, np.array(frames)


def run_under_both_kernels(path, overrides, times):
    return [integrate(path, overrides, times, kernel) for kernel in ("pairwise", "sorted")]


def test_section_5_1_runs_identically_under_both_kernels():
    """The paper's Section 5.1 example (ReLU, m = 1000, n = 10) to t = 1000 with its adaptive
    integrator: same steps and evaluations, and the states at t = 1, 10, 100, 1000 equal to
    rounding. The kernels differ by 1e-16 to 1e-15 per evaluation and the flow carries the
    differences along; a kink crossing a data point amplifies them (a particle crossing a tick
    earlier sees the velocity jump a tick earlier). Measured: 1.1e-15 at t = 1, 10, 100
    (164, 307, 402 steps), 1.3e-12 at t = 1000 (473 steps); the bound is 1e-14 per step."""
    (steps1, evals1, f1), (steps2, evals2, f2) = run_under_both_kernels(
        "runs/paper/section5_1_relu.toml", [], (1.0, 10.0, 100.0, 1000.0))
    assert (steps1, evals1) == (steps2, evals2) and steps1 > 10
    assert rel(f1[0], f2[0]) <= TOL and rel(f1, f2) <= 1e-14 * steps1


@pytest.mark.parametrize("weights", [[0.25, 0.25, 0.5], [0.2, 0.2, 0.6]])
def test_section_5_2_runs_identically_under_both_kernels(weights):
    """The paper's Section 5.2 example (three flat-sigmoid neurons, every data point on an
    edge z = 0 or z = 1 of a neuron) to t = 10^4: same steps and evaluations, w and b exactly
    still under both kernels (sigma' = 0 at every point: each point is outside every band),
    and a equal to rounding (measured: see the assertion's bound, 1e-15 per step)."""
    (steps1, evals1, f1), (steps2, evals2, f2) = run_under_both_kernels(
        "runs/paper/section5_2_three_neurons.toml", [f"data.weights={weights}"],
        (1.0, 100.0, 1.0e4))
    assert (steps1, evals1) == (steps2, evals2) and steps1 > 10
    w_and_b = f2[..., 1:]  # frames (time, replica, particle, (a, w, b))
    assert np.array_equal(w_and_b, np.broadcast_to(w_and_b[:1], w_and_b.shape))
    assert np.array_equal(f1[..., 1:], w_and_b)
    assert rel(f1, f2) <= 1e-15 * steps1


def test_a_flat_sigmoid_flow_differs_between_kernels_as_by_one_rounding_of_its_start():
    """The Section 5.1 network with the flat sigmoid (m = 1000, n = 10) to t = 10: this flow
    amplifies perturbations (measured: a relative 1e-16 perturbation of the initial state
    grows to 1.6e-13 at t = 1 and 1.8e-9 at t = 10 under the pairwise kernels alone), so
    "identical to rounding" means: the kernels differ by no more than such a perturbation
    does (measured: 1.9e-13 and 2.2e-9), here within a factor of 10."""
    path, flat, times = "runs/paper/section5_1_relu.toml", ['model.activation="flat_sigmoid"'], \
        (0.1, 1.0, 10.0)
    pairwise, perturbed, sorted_ = (integrate(path, flat, times, kernel, perturbation)[2]
                                    for kernel, perturbation in (("pairwise", 0.0),
                                                                 ("pairwise", 1e-16),
                                                                 ("sorted", 0.0)))
    for t, a, b, c in zip(times, pairwise, perturbed, sorted_):
        assert rel(a, c) <= 10.0 * rel(a, b) + TOL, t


def test_flat_sigmoid_at_its_edges_by_hand():
    """One flat-sigmoid particle sigma(2x - 1) and data 0, 0.25, 0.5, 1: z = -1, -0.5, 0, 1.
    Only the points at z = 0 (sigma = 0) and z = 1 (sigma = 1) touch it, both outside the band,
    so v_w = v_b = 0 exactly and v_a = -g_4 (sigma = 1 at the last point only); with a point
    added at z = 1/2 (sigma = 1/2, sigma' = 3/2) the band holds it: by hand, and by both
    kernels."""
    thetaT = np.array([[[3.0], [2.0], [-1.0]]])  # a, w, b
    x = np.array([[0.0], [0.25], [0.5], [1.0]])
    dualT = np.array([[[1.0, 10.0, 100.0, 1000.0]]])
    (h1, v1), (h2, v2) = both(thetaT, x, dualT, np.zeros(1), 1, FLAT, 0.0)
    assert np.array_equal(v2[0, 0], [-1000.0, 0.0, 0.0]) and np.array_equal(v1, v2)
    assert np.array_equal(h2[0, :, 0], [0.0, 0.0, 0.0, 3.0]) and np.array_equal(h1, h2)
    x, dualT = np.array([[0.75], [1.0]]), np.array([[[10.0, 1000.0]]])
    (h1, v1), (h2, v2) = both(thetaT, x, dualT, np.zeros(1), 1, FLAT, 0.0)
    expected = -np.array([10.0 * 0.5 + 1000.0, 3.0 * 10.0 * 1.5 * 0.75, 3.0 * 10.0 * 1.5])
    assert rel(expected, v2[0, 0]) <= 1e-15 and rel(v1, v2) <= 1e-15
    assert rel(h2[0, :, 0], [1.5, 3.0]) <= 1e-15


def test_the_data_stay_sorted_once_while_fresh_grid_arrays_come_and_go():
    """A flow evaluates on its data every step and on a fresh grid array at every record: the
    data's sorted order (and with it the particles' kept ranges) must survive any number of
    grid calls, not be evicted by them."""
    rng = np.random.default_rng(9)
    thetaT, x, _, _ = random_problem(rng, 1, 50, 30, 1)
    kern, h = SortedKernels(), np.empty((1, 30, 1))
    kern.forward(thetaT, x, 1, RELU, 0.0, 0.02, h)
    first = kern._sorted_points(x)
    for _ in range(20):
        grid = np.linspace(-3, 3, 41).reshape(-1, 1)  # a new array each record, as outputs_at
        kern.forward(thetaT, grid, 1, RELU, 0.0, 0.02, np.empty((1, 41, 1)))
        kern.forward(thetaT, x, 1, RELU, 0.0, 0.02, h)
    assert all(a is b for a, b in zip(kern._sorted_points(x), first))
