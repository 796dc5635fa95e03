"""Dynamics of the particle flow: descent, convergence orders of the integrators, mean-field
invariance, the paper's three-neuron example (Section 5.2, Lemma 18), float32 storage, replica
splitting and adaptive stepping.

The problems are tiny (m <= 16, n = 6, d = 2) so that each test takes well under a second after
Numba's first compile; the three-neuron runs use the adaptive integrator, whose step grows like t,
so that even t = 1e6 takes ~1000 gradient evaluations.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.dirname(__file__))
import physics_helpers as ph  # noqa: E402

from meanfield_sim import config as config_mod  # noqa: E402
from meanfield_sim import runner  # noqa: E402
from meanfield_sim.integrate.stepper import IntegratorState  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
THREE_NEURONS = REPO / "runs" / "paper" / "section5_2_three_neurons.toml"


# ----------------------------------------------------------------------------------------------
# descent
# ----------------------------------------------------------------------------------------------
DESCENT_CASES = [("relu", "logistic", "mean_field"), ("tanh", "exponential", "mean_field"),
                 ("sigmoid", "softmax_ce", "standard"), ("softplus", "logistic", "standard"),
                 ("flat_sigmoid", "exponential", "mean_field"),
                 ("leaky_relu", "softmax_ce", "mean_field")]


@pytest.mark.parametrize("activation,loss,scaling", DESCENT_CASES)
def test_risk_decreases_along_small_euler_steps(activation, loss, scaling):
    """Euler with a small step is gradient descent: the risk of every replica decreases at every
    step, and by the amount the flow predicts: dR/dt = sum_i grad_i R . v_i = -s_m sum_i |v_i|^2,
    so R(n+1) - R(n) = -dt s_m |v|^2 (1 + O(dt)). The O(dt) term measured here is < 2% for the
    smooth activations (dt = 0.02), so 10% is a safe bound; ReLU-type activations are only
    piecewise smooth and get no such check."""
    cfg = ph.small_config(activation, loss, scaling, m=8, R=2)
    flow, theta = ph.build_flow(cfg)
    dt, steps = 0.02, 100
    v = np.empty_like(theta)
    risks, predicted = [], []
    for _ in range(steps):
        flow.velocity(theta, v)
        risks.append(flow.evaluate(theta).risk.copy())
        predicted.append(-dt * flow.spec.scale * (v ** 2).sum(axis=(1, 2)))
        theta = theta + dt * v
    risks, predicted = np.array(risks), np.array(predicted)
    drop = np.diff(risks, axis=0)
    assert np.all(drop < 0.0), f"risk increased at steps {np.argwhere(drop >= 0)[:5]}"
    assert np.all(risks[-1] < 0.95 * risks[0])  # and it moved appreciably
    if activation not in ("relu", "leaky_relu", "flat_sigmoid"):
        np.testing.assert_allclose(drop / predicted[:-1], 1.0, atol=0.1)


# ----------------------------------------------------------------------------------------------
# convergence orders
# ----------------------------------------------------------------------------------------------
ORDER_CASES = {  # method: (nominal order, step counts N, 2N, 4N over t in [0, 1])
    "euler": (1, (16, 32, 64)),
    "heun": (2, (8, 16, 32)),
    "bs3": (3, (4, 8, 16)),
    "rk4": (4, (4, 8, 16)),
    "dopri5": (5, (2, 4, 8)),
}
REFERENCE_STEPS = 256


@pytest.fixture(scope="module")
def order_problem():
    """A smooth problem (tanh, logistic, mean field, m = 5, R = 2) and its reference solution at
    t = 1: RK4 with 256 steps, whose error (~1e-13, extrapolated from the measured RK4 errors
    C h^4 with C ~ 2e-4) is far below the smallest error compared (dopri5 at N = 8, ~2e-10)."""
    cfg = ph.small_config("tanh", "logistic", "mean_field", m=5, R=2)
    flow, theta = ph.build_flow(cfg)
    ref = ph.fixed_steps(flow, theta, "rk4", 1.0 / REFERENCE_STEPS, REFERENCE_STEPS)
    assert np.abs(ref - theta).max() > 0.1  # the particles move: errors are not trivially 0
    return flow, theta, ref


@pytest.mark.parametrize("method", ORDER_CASES)
def test_convergence_order_by_step_halving(order_problem, method):
    """Fixed steps (RungeKutta.attempt in a loop, the embedded error estimate of bs3 / dopri5
    ignored): the error at t = 1 shrinks by 2^q per halving of the step, q = nominal order."""
    flow, theta, ref = order_problem
    order, counts = ORDER_CASES[method]
    errors = [np.abs(ph.fixed_steps(flow, theta, method, 1.0 / N, N) - ref).max()
              for N in counts]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] > 1e3 * 1e-13, "error too close to the reference's own error"
    assert np.all(np.abs(observed - order) <= 0.3), f"{method}: errors {errors}, orders {observed}"


# ----------------------------------------------------------------------------------------------
# mean-field invariance
# ----------------------------------------------------------------------------------------------
def test_duplicating_particles_leaves_mean_field_trajectory_unchanged():
    """mu = (1/m) sum delta_theta_i is the same measure if every particle is duplicated, so with
    the 1/m scaling h and the whole trajectory are unchanged (the velocity of a particle depends
    on m only through h). Only rounding differs (sums of 2m instead of m terms, reassociated):
    1e-12 allows ~1e4 ulps of drift over 100 RK4 steps."""
    m = 6
    f1, theta = ph.build_flow(ph.small_config("sigmoid", "softmax_ce", "mean_field", m=m, R=2))
    f2, _ = ph.build_flow(ph.small_config("sigmoid", "softmax_ce", "mean_field", m=2 * m, R=2))
    doubled = np.concatenate([theta, theta], axis=1)
    np.testing.assert_allclose(f2.evaluate(doubled).outputs, f1.evaluate(theta).outputs,
                               rtol=0, atol=1e-14)
    _, path1 = ph.fixed_steps(f1, theta, "rk4", 0.05, 100, record_every=10)
    _, path2 = ph.fixed_steps(f2, doubled, "rk4", 0.05, 100, record_every=10)
    assert np.abs(path1[-1] - theta).max() > 0.1  # the state moved
    for s1, s2 in zip(path1, path2):
        np.testing.assert_allclose(s2[:, :m], s1, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s2[:, m:], s1, rtol=0, atol=1e-12)
        h1 = f1.evaluate(s1).outputs.copy()
        np.testing.assert_allclose(f2.evaluate(s2).outputs, h1, rtol=0, atol=1e-12)


def test_duplicating_particles_doubles_h_in_standard_scaling():
    """Control for the test above: without the 1/m factor duplication doubles h."""
    f1, theta = ph.build_flow(ph.small_config("tanh", "logistic", "standard", m=4, R=1))
    f2, _ = ph.build_flow(ph.small_config("tanh", "logistic", "standard", m=8, R=1))
    h1 = f1.evaluate(theta).outputs.copy()
    h2 = f2.evaluate(np.concatenate([theta, theta], axis=1)).outputs
    np.testing.assert_allclose(h2, 2 * h1, rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# Section 5.2: three neurons, flat sigmoid, exponential loss
# ----------------------------------------------------------------------------------------------
def _three_neuron_ode(t, a, p1, p2, p3):
    """Gradient flow of F = p1 e^{-a1} + p2 e^{-a2} + p3 e^{a2 - a3} (paper's a's)."""
    a1, a2, a3 = a
    return [p1 * math.exp(-a1), p2 * math.exp(-a2) - p3 * math.exp(a2 - a3),
            p3 * math.exp(a2 - a3)]


def _run_three_neurons(tmp_path, weights=None, t_end=1.0e6):
    overrides = [f"run.t_end={t_end!r}"]
    if weights is not None:
        overrides.append(f"data.weights={list(weights)!r}")
    cfg = config_mod.load(THREE_NEURONS, overrides)
    path = tmp_path / "three.h5"
    result = runner.run(cfg, path)
    assert result.status == "complete"
    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_records"])
        net = f["particles/network"]
        out = {"time": f["observables/time"][:n], "a": net["a"][:n], "w": net["w"][:n],
               "b": net["b"][:n], "outputs": f["observables/outputs"][:n],
               "x": f["data/x"][:], "weight": f["data/weight"][:]}
    assert n == len(out["time"]) and n > 10
    return out


@pytest.fixture(scope="module")
def three_neurons_collapse(tmp_path_factory):
    """The run file's own setting, p = (1/4, 1/4, 1/2): p3 = 2 p1, run to t = 1e6."""
    return _run_three_neurons(tmp_path_factory.mktemp("three"))


@pytest.fixture(scope="module")
def three_neurons_no_collapse(tmp_path_factory):
    """p = (0.3, 0.3, 0.4): p3 != 2 p1."""
    return _run_three_neurons(tmp_path_factory.mktemp("three"), weights=(0.3, 0.3, 0.4))


@pytest.mark.parametrize("which", ["three_neurons_collapse", "three_neurons_no_collapse"])
def test_three_neurons_inner_weights_stay_exactly_fixed(which, request):
    """sigma' = 0 at every data point (z in {-1, 0, 1, 2} for these neurons), so w and b receive
    exactly zero velocity and never move -- bit for bit -- while all groups are trainable."""
    run = request.getfixturevalue(which)
    assert run["a"].shape == (len(run["time"]), 1, 3, 1)
    assert run["w"].shape == (len(run["time"]), 1, 3, 1)
    assert run["b"].shape == (len(run["time"]), 1, 3)
    assert np.array_equal(run["w"], np.broadcast_to(np.array([-1.0, 1.0, 1.0])[None, None, :, None],
                                                    run["w"].shape))
    assert np.array_equal(run["b"], np.broadcast_to(np.array([0.0, 1.0, 0.0])[None, None, :],
                                                    run["b"].shape))
    assert np.abs(run["a"][-1]).min() > 5.0  # while a moved far


@pytest.mark.parametrize("which", ["three_neurons_collapse", "three_neurons_no_collapse"])
def test_three_neurons_outer_weights_follow_the_ode(which, request):
    """(a1, a2, a3) from the file (which stores (a1, -a2, a3)) against an independent solve_ivp
    solution (DOP853, rtol 1e-11) of the reduced ODE; a1 also against its closed form
    log(e^{a1(0)} + p1 t) (a1' = p1 e^{-a1} means (e^{a1})' = p1).

    Tolerance: the run integrates with dopri5 at rtol 1e-8 per step over ~160 steps; its global
    error measured here is 1.4e-8 relative to max(1, |a|); we allow 1e-6 relative (70x), which
    still detects any wrong coefficient in the gradient (a 1% error in a rate moves a by ~1e-2).
    """
    run = request.getfixturevalue(which)
    t, p = run["time"], run["weight"]
    np.testing.assert_array_equal(run["x"][:, 0], [-1.0, 0.0, 1.0])
    stored = run["a"][:, 0, :, 0]
    a = np.stack([stored[:, 0], -stored[:, 1], stored[:, 2]])
    assert np.all(a[:, 0] == 0.0)
    sol = solve_ivp(_three_neuron_ode, (0.0, t[-1]), [0.0, 0.0, 0.0], method="DOP853",
                    rtol=1e-11, atol=1e-12, t_eval=t, args=tuple(p))
    assert sol.success
    closed_a1 = np.log(1.0 + p[0] * t)
    np.testing.assert_allclose(sol.y[0], closed_a1, rtol=1e-9, atol=1e-10)  # the reference
    scale = np.maximum(1.0, np.abs(sol.y))
    assert np.all(np.abs(a - sol.y) <= 1e-6 * scale), np.abs(a - sol.y).max()
    assert np.all(np.abs(a[0] - closed_a1) <= 1e-6 * np.maximum(1.0, closed_a1))
    # and the stored outputs are h(-1) = a1, h(0) = -a2, h(1) = a3 - a2 exactly
    h = run["outputs"][:, 0, :, 0]
    np.testing.assert_array_equal(h[:, 0], a[0])
    np.testing.assert_allclose(h[:, 1], -a[1], rtol=1e-15, atol=0)
    np.testing.assert_allclose(h[:, 2], a[2] - a[1], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("which", ["three_neurons_collapse", "three_neurons_no_collapse"])
def test_three_neurons_gap_tends_to_log_p3_over_2p1(which, request):
    """Lemma 18, quantitatively: h(t, 1) - h(t, -1) -> L = log(p3 / (2 p1)), which is 0 iff
    p3 = 2 p1. From the ODE, e^{-a1} = 1 / (e^{a1(0)} + p1 t) ~ 1/(p1 t) and, balancing
    a3' = p3 e^{a2 - a3} against u = a3 - a2 growing like log t, e^{a2 - a3} ~ 2 / (p3 t); so
    h(1) - h(-1) = (a3 - a2) - a1 = log(p3 t / 2) - log(p1 t) + corrections. The corrections
    decay at least like log(t)/t (solve_ivp shows ~4/t for both weight sets); at t = 1e6 we allow
    (1 + log t)/t = 1.5e-5, three times the measured gap and ~3e4 times smaller than
    |L| = 0.405 of the non-collapsing case."""
    run = request.getfixturevalue(which)
    t, p = run["time"], run["weight"]
    h = run["outputs"][:, 0, :, 0]
    gap = h[:, 2] - h[:, 0]
    L = math.log(p[2] / (2 * p[0]))
    T = t[-1]
    assert T == 1.0e6
    assert abs(gap[-1] - L) <= (1 + math.log(T)) / T, (gap[-1], L)
    # the approach is steady: |gap - L| keeps shrinking over the last decades
    late = t >= 1e3
    assert np.all(np.diff(np.abs(gap[late] - L)) < 0)
    if which == "three_neurons_no_collapse":
        assert L == pytest.approx(math.log(0.4 / 0.6))
        assert abs(gap[-1]) > 0.4  # the two points of class +1 do not collapse
    else:
        assert L == 0.0


# ----------------------------------------------------------------------------------------------
# precision, replicas, adaptive stepping
# ----------------------------------------------------------------------------------------------
def _advance(flow, theta, method, t_stop, **control):
    rk = ph.stepper(flow, method, **control)
    state = IntegratorState(theta=theta.copy(), dt=control.get("dt", 0.01))
    rk.advance(state, t_stop)
    return state


def test_float32_matches_float64_within_float32_precision():
    """run.dtype = float32 runs the kernels in float32 (data stored in float32, particles cast
    for every evaluation, blocked float32 sums; see kernels.cpu) while the state stays float64.
    Each velocity then errs by ~1e-6 relative (float32 rounding of z, sigma and sums of up to
    64 terms); over 100 RK4 steps to t = 1 the state differs from the float64 run by about
    t |v| 1e-6, and we allow 2e-5 relative to the state's scale. It must also differ by more
    than float64 rounding -- otherwise float32 was not used."""
    base = dict(activation="tanh", loss="softmax_ce", scaling="mean_field", m=8, R=2)
    f64, theta64 = ph.build_flow(ph.small_config(**base))
    f32, theta32 = ph.build_flow(ph.small_config(**base, extra={"run": {"dtype": "float32"}}))
    assert theta32.dtype == np.float64 and f32.x.dtype == np.float32
    np.testing.assert_array_equal(theta32, theta64)  # the same draws
    s64 = _advance(f64, theta64, "rk4", 1.0, dt=0.01)
    s32 = _advance(f32, theta32, "rk4", 1.0, dt=0.01)
    assert s32.theta.dtype == s64.theta.dtype == np.float64
    assert s32.step == s64.step == 100
    scale = np.abs(theta64).max()
    diff = np.abs(s32.theta - s64.theta)
    assert diff.max() <= 2e-5 * scale, diff.max()
    assert diff.max() > 1e-9 * scale
    h32 = f32.evaluate(s32.theta).outputs.copy()
    h64 = f64.evaluate(s64.theta).outputs.copy()
    np.testing.assert_allclose(h32, h64, rtol=0, atol=2e-5 * max(1.0, np.abs(h64).max()))


@pytest.mark.parametrize("d", (1, 2, 11))
def test_float32_does_not_stagnate_under_small_steps(d):
    """Euler steps that move each parameter by ~1e-9 of its size, far below float32's
    resolution (6e-8): a float32 state would not move at all. With run.dtype = float32 the
    state stays float64, so 200 such steps move it as the float64 run does, up to the float32
    error of the velocities (~1e-6 relative; 1e-4 allowed). d = 1, 2, 11: the three kernels."""
    base = dict(activation="sigmoid", loss="logistic", scaling="mean_field", m=20, d=d, R=2)
    moved = {}
    for dtype in ("float64", "float32"):
        flow, theta = ph.build_flow(ph.small_config(**base, extra={"run": {"dtype": dtype}}))
        v = ph.velocity_of(flow, theta)
        dt = 1e-9 * np.abs(theta).max() / np.abs(v).max()
        moved[dtype] = ph.fixed_steps(flow, theta, "euler", dt, 200) - theta
    step = np.abs(moved["float64"]).max()
    assert step > 0
    np.testing.assert_allclose(moved["float32"], moved["float64"], rtol=0, atol=1e-4 * step)


def _replica_run(tmp_path, name, replicas, first, integrator):
    cfg = ph.small_config("softplus", "logistic", "mean_field", m=6, R=replicas, extra={
        "run": {"seed": 11, "first_replica": first, "t_end": 0.5},
        "record": {"schedule": "linear", "count": 5, "particles": "all"},
        "integrator": integrator})
    runner.run(cfg, tmp_path / name)
    with h5py.File(tmp_path / name, "r") as f:
        n = int(f.attrs["n_records"])
        return {key: f[path][:n] for key, path in (
            ("a", "particles/network/a"), ("w", "particles/network/w"),
            ("b", "particles/network/b"), ("outputs", "observables/outputs"),
            ("risk", "observables/risk"), ("time", "observables/time"))} | {
            "replica": f["observables/replica"][:], "steps": int(f["observables/step"][n - 1])}


def test_replicas_equal_separate_runs(tmp_path):
    """R = 3 in one run against three runs with replicas = 1 and first_replica = 0, 1, 2 (same
    seed): replica r draws its particles from SeedSequence(seed, spawn_key=(first_replica + r,))
    and evolves independently, so with fixed steps the trajectories agree to rounding (the
    kernels may group sums differently for different R; 1e-12 is ~1e4 ulps)."""
    rk4 = {"method": "rk4", "dt": 0.01}
    joint = _replica_run(tmp_path, "joint.h5", 3, 0, rk4)
    assert list(joint["replica"]) == [0, 1, 2]
    assert not np.allclose(joint["a"][:, 0], joint["a"][:, 1])  # replicas really differ
    for r in range(3):
        single = _replica_run(tmp_path, f"single{r}.h5", 1, r, rk4)
        assert list(single["replica"]) == [r]
        np.testing.assert_array_equal(single["time"], joint["time"])
        np.testing.assert_array_equal(single["a"][0, 0], joint["a"][0, r])  # same initial draw
        for key in ("a", "w", "b", "outputs", "risk"):
            np.testing.assert_allclose(single[key][:, 0], joint[key][:, r], rtol=0, atol=1e-12,
                                       err_msg=f"replica {r}, {key}")


def test_replicas_under_the_default_adaptive_integrator_share_its_step(tmp_path):
    """What the README promises for dopri5 (the default): replicas share one step size, set by
    the worst replica's error estimate, so every replica's local error is within the tolerance
    but replica r takes other steps than its single run. Both are then solutions of the same
    ODE to that tolerance: each within 100 (atol + rtol |theta|) of a fine RK4 reference (the
    bound of test_adaptive_dopri5_matches_fine_rk4_with_fewer_evaluations), hence within twice
    that of each other -- and not bitwise equal, which the README does not claim."""
    default = {"method": "dopri5"}  # the default method, with the default rtol and atol
    rtol, atol = 1e-6, 1e-9
    joint = _replica_run(tmp_path, "joint.h5", 3, 0, default)
    fine = _replica_run(tmp_path, "fine.h5", 3, 0, {"method": "rk4", "dt": 0.5 / 400})
    np.testing.assert_allclose(joint["time"], fine["time"], rtol=1e-15)  # fine: steps x dt
    differ = False
    for r in range(3):
        single = _replica_run(tmp_path, f"single{r}.h5", 1, r, default)
        np.testing.assert_array_equal(single["time"], joint["time"])
        for key in ("a", "w", "b"):
            ref = fine[key][:, r]
            bound = 100 * (atol + rtol * np.abs(ref))
            for run, label in ((joint[key][:, r], "joint"), (single[key][:, 0], "single")):
                assert np.all(np.abs(run - ref) <= bound), (label, r, key)
            assert np.all(np.abs(joint[key][:, r] - single[key][:, 0]) <= 2 * bound)
            differ |= not np.array_equal(joint[key][:, r], single[key][:, 0])
    assert differ  # shared steps: if this ever fails, replicas got their own steps; update README


def test_adaptive_dopri5_matches_fine_rk4_with_fewer_evaluations():
    """dopri5 at rtol = 1e-8, atol = 1e-10 reaches the state of RK4 with 400 fixed steps
    (error ~1e-13 by the h^4 law measured above) to within a small multiple of its per-step
    tolerance, and needs far fewer gradient evaluations than the 1600 of the fine RK4 run.
    Global error of a tolerance-controlled method is typically a few times the local tolerance;
    we allow 100 * (atol + rtol |theta|)."""
    cfg = ph.small_config("tanh", "logistic", "mean_field", m=6, R=2)
    flow, theta = ph.build_flow(cfg)
    T = 2.0
    flow.grad_evals = 0
    fine = ph.fixed_steps(flow, theta, "rk4", T / 400, 400)
    fine_evals = flow.grad_evals
    assert fine_evals == 1600
    flow.grad_evals = 0
    rtol, atol = 1e-8, 1e-10
    adaptive = _advance(flow, theta, "dopri5", T, dt=0.01, rtol=rtol, atol=atol)
    evals = flow.grad_evals
    assert adaptive.t == T
    assert np.abs(fine - theta).max() > 0.1
    err = np.abs(adaptive.theta - fine)
    assert np.all(err <= 100 * (atol + rtol * np.abs(fine))), err.max()
    assert evals < fine_evals / 4, (evals, fine_evals)
    # and loosening the tolerance makes it both cheaper and (measurably) less accurate
    flow.grad_evals = 0
    loose = _advance(flow, theta, "dopri5", T, dt=0.01, rtol=1e-4, atol=1e-6)
    assert flow.grad_evals < evals
    assert np.abs(loose.theta - fine).max() > err.max()


def test_fixed_step_integration_takes_t_over_dt_steps():
    """400 steps of 0.005 sum to 1.9999999999999793, not 2: the last one must land on t = 2
    instead of leaving a sliver step of 2e-14 (a wasted step's gradient evaluations)."""
    flow, theta = ph.build_flow(ph.small_config("tanh", "logistic", "mean_field", m=4, R=1))
    flow.grad_evals = 0
    state = _advance(flow, theta, "rk4", 2.0, dt=0.005)
    assert state.t == 2.0
    assert state.step == 400 and flow.grad_evals == 4 * 400, (state.step, flow.grad_evals)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_fixed_step_trajectory_does_not_depend_on_the_record_schedule(tmp_path, method):
    """Fixed-step methods take every step at full size dt and record at the step nearest each
    requested time. Two schedules (log, 9 records; linear, 4) on t_end = 1 with dt = 0.03
    (not a divisor: the last record is step 33, t = 0.99) give the same states at the common
    steps, and for euler the final state is 33 plain gradient-descent steps theta += dt v,
    taken here by hand: bitwise, since both do the same floating-point operations."""
    def run_with(schedule, count):
        cfg = ph.small_config("tanh", "logistic", "mean_field", m=5, R=2, extra={
            "run": {"t_end": 1.0}, "integrator": {"method": method, "dt": 0.03},
            "record": {"schedule": schedule, "count": count, "particles": "all"}})
        out = tmp_path / f"{schedule}.h5"
        runner.run(cfg, out)
        with h5py.File(out, "r") as f:
            n = int(f.attrs["n_records"])
            steps = f["observables/step"][:n]
            a = f["particles/network/a"][:n]
        return cfg, dict(zip(steps.tolist(), a))

    cfg, by_log = run_with("log", 9)
    _, by_linear = run_with("linear", 4)
    assert max(by_log) == max(by_linear) == 33
    common = set(by_log) & set(by_linear)
    assert len(common) >= 2
    for step in common:
        np.testing.assert_array_equal(by_log[step], by_linear[step])
    if method == "euler":
        flow, theta = ph.build_flow(cfg)
        for _ in range(33):
            theta = theta + 0.03 * ph.velocity_of(flow, theta)
        np.testing.assert_array_equal(by_log[33], theta[:, :, :1])
