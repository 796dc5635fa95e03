"""Discrete optimisers beside the gradient-flow integrators: heavy-ball momentum and Adam.

They see the flow's velocity v as the negative gradient direction g = -v (for the mean-field
network that is m grad R; Adam is invariant to that scale up to its eps). One step with learning
rate ``dt`` advances time by ``dt``, so t = (number of steps) * dt as for Euler = gradient
descent. In those units momentum with coefficient mu follows, for small dt, the gradient flow
sped up by 1 / (1 - mu); Adam follows no gradient flow (its steps have size ~dt whatever the
gradient), which is why it is here: to test geometry that is not Euclidean.

- momentum:  buf <- mu buf + g;                 theta <- theta - dt buf
- adam:      m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
             theta <- theta - dt (m / (1 - b1^s)) / (sqrt(v / (1 - b2^s)) + eps),  s = step number

Every step has the full learning rate (a shortened step would still advance the buffers as a
whole step and change the run with the number of records): a record is taken at the step
nearest its requested time, so optimiser runs record at multiples of dt, and requested times
closer together than dt share one record. Constrained flows are projected after every step
(projected momentum / projected Adam). The buffers live in ``IntegratorState.moments``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arithmetic import HOST_ARRAYS
from .stepper import (IntegrationError, IntegratorState, StepHook, VectorField, before_step,
                      grid_times, nearest_step)


@dataclass
class OptimizerControl:
    method: str
    dt: float
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_steps: int = 100_000_000


class Optimizer:
    """Steps ``state`` with momentum or Adam until ``state.t == t_stop``."""

    def __init__(self, field_: VectorField, control: OptimizerControl,
                 between_steps: StepHook | None = None):
        self.field, self.control = field_, control
        self.between_steps = between_steps
        self.arrays = HOST_ARRAYS  # NumPy states only (config refuses run.backend = "cuda")
        self._v = None

    def reached_times(self, times: np.ndarray) -> np.ndarray:
        """The distinct times ``advance`` stops at for requested record times: each rounded to
        the nearest multiple of dt (requested times closer than dt share one)."""
        return grid_times(times, self.control.dt)

    def advance(self, state: IntegratorState, t_stop: float) -> None:
        """Take full steps up to the one nearest ``t_stop``; state.t = state.step * dt."""
        c = self.control
        if self._v is None or self._v.shape != state.theta.shape:
            self._v = np.empty_like(state.theta)
        target = nearest_step(t_stop, c.dt)
        while state.step < target:
            before_step(state, self.between_steps, c.max_steps, t_stop)
            grad = -self.field.velocity(state.theta, self._v)
            update = self._update(state, grad)
            state.theta = state.theta - c.dt * update
            if not np.isfinite(state.theta).all():
                raise IntegrationError(f"state became non-finite at t = {state.t:.6g} with "
                                       f"learning rate dt = {c.dt:.3g}; reduce integrator.dt")
            if self.field.constrained:
                self.field.project(state.theta)
            state.step += 1
            state.t = state.step * c.dt

    def _update(self, state: IntegratorState, grad: np.ndarray) -> np.ndarray:
        c, mom = self.control, state.moments
        if c.method == "momentum":
            buf = mom.get("buf")
            mom["buf"] = grad.copy() if buf is None else c.momentum * buf + grad
            return mom["buf"]
        if "m" not in mom:
            mom["m"], mom["v"], mom["count"] = np.zeros_like(grad), np.zeros_like(grad), 0
        mom["count"] += 1
        mom["m"] = c.beta1 * mom["m"] + (1 - c.beta1) * grad
        mom["v"] = c.beta2 * mom["v"] + (1 - c.beta2) * grad * grad
        m_hat = mom["m"] / (1 - c.beta1 ** mom["count"])
        v_hat = mom["v"] / (1 - c.beta2 ** mom["count"])
        return m_hat / (np.sqrt(v_hat) + c.eps)
