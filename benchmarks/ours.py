"""This project's step: one Euler step of meanfield-sim's integrator on its ParticleFlow.

The flow computes v = -m dR/dtheta with its Numba kernels (forward pass, loss pass, velocity)
in the case's dtype, and the integrator ("euler", step dt) makes theta <- theta + dt v on a
state it keeps in float64. :func:`make_step` is the only place that touches the package's config
and integrator API, so that a change there is mended here alone.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from cases import STEP_SIZE, Case, Implementation, Problem


def config_text(case: Case, kernel: str = "auto") -> str:
    """The TOML run config of a case: Gaussian-mixture data with n points split as evenly as
    possible over the classes (2 for k = 1, k otherwise), Gaussian initial particles, and
    run.kernel = ``kernel``."""
    s = case.shape
    sizes = [s.points // s.num_classes + (c < s.points % s.num_classes)
             for c in range(s.num_classes)]
    return f"""
[run]
t_end = 1.0
replicas = {s.replicas}
dtype = "{case.dtype}"
kernel = "{kernel}"
[model]
width = {s.width}
activation = "{case.activation}"
loss = "{s.loss}"
[data]
kind = "gaussian_mixture"
num_classes = {s.num_classes}
dim = {s.input_dim}
class_sizes = {sizes}
[integrator]
method = "euler"
dt = {STEP_SIZE}
"""


def resolved_kernel(case: Case) -> str:
    """The kernel run.kernel = 'auto' picks for a case: 'sorted' or 'pairwise'."""
    from meanfield_sim import config
    from meanfield_sim.kernels import resolve_kernel
    cfg = config.loads(config_text(case))
    return resolve_kernel(cfg["derived"]["kernel"], case.shape.points, cfg["model"]["activation"])


def make_step(case: Case, kernel: str = "auto"
              ) -> tuple[Problem, Implementation, Callable[[], None]]:
    """(problem, one-step implementation, velocity evaluation alone) for a case, with
    run.kernel = ``kernel``.

    The problem holds copies of the initial particles and the flow's data (x in the storage
    dtype, labels, weights p_j), from which the peers start."""
    from meanfield_sim import config
    from meanfield_sim.flows import build_flow
    from meanfield_sim.integrate import make_integrator
    from meanfield_sim.integrate.stepper import IntegratorState

    cfg = config.loads(config_text(case, kernel))
    flow, theta = build_flow(cfg)
    integrator = make_integrator(flow, cfg["integrator"])
    dt = cfg["integrator"]["dt"]
    state = IntegratorState(theta=theta, dt=dt)
    problem = Problem(case=case, theta=theta.copy(), x=flow.x.copy(), label=flow.label.copy(),
                      weight=flow.data.weight.copy(), dt=dt)
    velocity_out = np.empty_like(theta)

    def step() -> None:
        integrator.advance(state, state.t + dt)

    def velocity() -> None:
        flow.velocity(state.theta, velocity_out)

    return problem, Implementation(step=step, state=lambda: state.theta), velocity
