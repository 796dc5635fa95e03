"""Shared helpers of the toy-flow tests (Sections 3 and 4 of E & Wojtowytsch).

Configs as TOML text built from a base plus dotted overrides, integration to a list of times
with the package's own integrators, and reference values computed independently of
``meanfield_sim.theory`` (the symmetric minimiser of Lemma 4 from the root of phi'(alpha) by
Brent's method, and Phi_i itself).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from meanfield_sim import config as config_mod
from meanfield_sim.flows import build_flow
from meanfield_sim.integrate import make_integrator
from meanfield_sim.integrate.stepper import IntegratorState

_BASE = {
    "run": {"t_end": 100.0, "replicas": 1, "seed": 0},
    "model": {"kind": "final_layer", "loss": "softmax_ce"},
    "data": {"kind": "classes", "num_classes": 3, "points_per_class": 1},
    "toy": {"radius": 1.0},
    "record": {"count": 10},
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def toy_toml(**overrides) -> str:
    """TOML text of the base config with overrides given as section__key=value."""
    sections = {s: dict(v) for s, v in _BASE.items()}
    for dotted, value in overrides.items():
        section, key = dotted.split("__", 1)
        sections.setdefault(section, {})[key] = value
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def toy_config(**overrides) -> dict:
    """A resolved config: ``toy_config(model__kind="penultimate_layer", toy__radius=1.5)``."""
    return config_mod.loads(toy_toml(**overrides))


def integrate(cfg: dict, times, flow=None, theta=None):
    """(flow, [state at each time], integrator state) with the integrator of ``cfg``."""
    if flow is None:
        flow, theta = build_flow(cfg)
    stepper = make_integrator(flow, cfg["integrator"])
    state = IntegratorState(theta=theta.copy(), dt=cfg["integrator"]["dt"])
    states = []
    for t in times:
        stepper.advance(state, t)
        states.append(state.theta.copy())
    return flow, states, state


def phi(z: np.ndarray, i: int) -> np.ndarray:
    """Phi_i(z) = log sum_j exp(z_j) - z_i along the last axis."""
    top = z.max(axis=-1, keepdims=True)
    return (top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))) - z[..., i]


def lp_vertex_reference(k: int, radius: float, p: float) -> tuple[float, float]:
    """(alpha, beta) of Lemma 4 for 1 < p < inf, independently of ``theory``: the minimiser
    is symmetric and on the sphere, beta(alpha) = -((R^p - alpha^p)/(k-1))^(1/p), and alpha is
    the root of the derivative of phi(alpha) = log(e^alpha + (k-1) e^beta) - alpha, which
    is -1 + O(1) at alpha -> 0+ and -> +inf as alpha -> R- (beta' blows up), found by Brent's
    method to ~1e-16 relative."""
    def dphi(a):
        rest = (radius ** p - a ** p) / (k - 1)
        b = -rest ** (1.0 / p)
        db = a ** (p - 1.0) * rest ** (1.0 / p - 1.0) / (k - 1)
        m = max(a, b)
        ea, eb = math.exp(a - m), (k - 1) * math.exp(b - m)
        return (ea + eb * db) / (ea + eb) - 1.0
    a = brentq(dphi, 1e-12 * radius, radius * (1.0 - 1e-14), xtol=1e-300, rtol=1e-15,
               maxiter=500)
    return a, -((radius ** p - a ** p) / (k - 1)) ** (1.0 / p)


def simplex_rows(k: int, alpha: float, beta: float) -> np.ndarray:
    """(k, k) matrix with row i = alpha e_i + beta sum_{j != i} e_j."""
    return np.full((k, k), beta) + (alpha - beta) * np.eye(k)
