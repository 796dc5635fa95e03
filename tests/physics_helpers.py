"""Shared helpers of the physics tests (gradients, losses, dynamics).

Everything here builds small problems through the package's public entry points
(``config.resolve`` -> ``runner.build_flow``) so that the tests exercise the same code path as a
real run, and then, where a test needs control over the particles, replaces theta by a chosen
array of the right shape.
"""
from __future__ import annotations

import copy

import numpy as np

from meanfield_sim import config as config_mod
from meanfield_sim.integrate.stepper import IntegratorState, RungeKutta, StepControl
from meanfield_sim.runner import build_flow  # noqa: F401  (re-exported: ph.build_flow)

ACTIVATIONS = config_mod.ACTIVATIONS
BINARY_LOSSES = config_mod.BINARY_LOSSES


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(raw: dict) -> dict:
    """A resolved config from a raw nested dict (what ``config.loads`` returns for TOML)."""
    return config_mod.resolve(copy.deepcopy(raw))


def small_data(loss: str, n: int = 6, d: int = 2, seed: int = 1):
    """Explicit data: x ~ N(0, I_d) (n points), labels +-1 alternating (binary) or 0, 1, 2, 0, ...
    (softmax_ce, k = 3), and unequal weights (the flow must normalise them)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if loss in BINARY_LOSSES:
        labels = [1 if j % 2 == 0 else -1 for j in range(n)]
    else:
        labels = [j % 3 for j in range(n)]
    weights = rng.uniform(0.5, 1.5, size=n)
    return x, labels, weights


def small_config(activation="tanh", loss="logistic", scaling="mean_field",
                 train=("a", "w", "b"), m=5, n=6, d=2, R=2, data_seed=1, extra=None) -> dict:
    """Resolved config of a tiny problem with explicit data and a Gaussian initialisation."""
    x, labels, weights = small_data(loss, n, d, data_seed)
    raw = {
        "run": {"seed": 0, "replicas": R, "t_end": 1.0},
        "model": {"width": m, "activation": activation, "loss": loss, "scaling": scaling,
                  "train": list(train), "leaky_slope": 0.1},
        "data": {"kind": "explicit", "x": x.tolist(), "labels": labels,
                 "weights": weights.tolist()},
        "init": {"kind": "gaussian"},
        "integrator": {"method": "rk4", "dt": 0.01},
        "record": {"schedule": "linear", "count": 1},
    }
    if extra:
        raw = deep_merge(raw, extra)
    return resolve(raw)


def preactivations(theta: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """z[r, i, j] = w_ri . x_j + b_ri."""
    d = x.shape[1]
    w = theta[:, :, k:k + d]
    b = theta[:, :, k + d]
    return np.einsum("rid,jd->rij", w, x) + b[:, :, None]


def kink_distance(theta, x, k, activation) -> float:
    """Distance of the nearest pre-activation to a point where sigma is not smooth (inf for
    analytic activations): 0 for relu / leaky_relu, 0 and 1 for flat_sigmoid."""
    z = preactivations(theta, x, k)
    if activation in ("relu", "leaky_relu"):
        return float(np.abs(z).min())
    if activation == "flat_sigmoid":
        return float(min(np.abs(z).min(), np.abs(z - 1.0).min()))
    return np.inf


def smooth_particles(shape, x, k, activation, seed=0, min_gap=1e-3, scale=1.0,
                     need_inside_unit=False):
    """Random theta ~ N(0, scale^2) of the given shape, redrawn (deterministically) until no
    pre-activation lies within ``min_gap`` of a kink of sigma. With ``need_inside_unit`` also
    require that some z lies in (0, 1) (so that flat_sigmoid has a non-zero slope somewhere)."""
    for attempt in range(1000):
        rng = np.random.default_rng([seed, attempt])
        theta = scale * rng.normal(size=shape)
        if kink_distance(theta, x, k, activation) <= min_gap:
            continue
        if need_inside_unit:
            z = preactivations(theta, x, k)
            if not ((z > 0.05) & (z < 0.95)).sum() >= 3:
                continue
        return theta
    raise RuntimeError("no kink-free particle configuration found")


def fd_risk_gradient(flow, theta: np.ndarray, eps: float) -> np.ndarray:
    """Central finite differences of the per-replica risk: g[r, i, c] = dR_r / d theta[r, i, c].

    Replicas are independent (R_r depends only on theta[r]), so one perturbation of the entry
    (i, c) in every replica at once gives all R derivatives of that entry."""
    R, m, p = theta.shape
    grad = np.empty_like(theta)
    th = theta.copy()
    for i in range(m):
        for c in range(p):
            th[:, i, c] = theta[:, i, c] + eps
            up = flow.evaluate(th).risk.copy()
            th[:, i, c] = theta[:, i, c] - eps
            down = flow.evaluate(th).risk.copy()
            th[:, i, c] = theta[:, i, c]
            grad[:, i, c] = (up - down) / (2.0 * eps)
    return grad


def velocity_of(flow, theta: np.ndarray) -> np.ndarray:
    out = np.empty_like(theta)
    flow.velocity(theta, out)
    return out


def stepper(flow, method: str, dt: float = 0.01, **control) -> RungeKutta:
    return RungeKutta(flow, StepControl(method=method, dt=dt, **control), flow.spec.train_mask())


def fixed_steps(flow, theta: np.ndarray, method: str, dt: float, steps: int,
                record_every: int | None = None):
    """Integrate ``steps`` steps of size dt with ``RungeKutta.attempt`` (fixed steps for every
    tableau, adaptive ones included: their error estimate is ignored). Returns the final state
    and, with ``record_every``, the list of states every that many steps (the start included)."""
    rk = stepper(flow, method, dt)
    state = IntegratorState(theta=theta.copy(), dt=dt)
    path = [state.theta.copy()] if record_every else None
    for s in range(steps):
        y_new = rk.attempt(state, dt).y
        state.theta, state.t, state.step, state.k_first = y_new, state.t + dt, state.step + 1, None
        if record_every and (s + 1) % record_every == 0:
            path.append(state.theta.copy())
    return (state.theta, path) if record_every else state.theta
