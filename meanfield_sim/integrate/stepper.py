"""Explicit Runge-Kutta integration of d theta/dt = F(theta) with fixed or adaptive steps.

Fixed step: every step has size dt (Euler with step dt is gradient descent with learning rate dt,
in the flow's time units), and t = (number of steps) * dt. A record is taken at the step nearest
its requested time, as for the optimisers: a step shortened to land on a record time would make
the trajectory depend on the record schedule (and Euler no longer gradient descent).

Adaptive (embedded pairs): the local error estimate err = dt * sum_s b_err_s k_s is measured in the
RMS norm scaled by atol + rtol * max(|y|, |y_new|) over the trainable entries of each replica;
replicas share one step, so the worst replica decides. A step is accepted when that norm is <= 1,
and the next step is dt times the PI factor safety * err^-(1/q - 0.75 beta) * err_prev^beta
(Hairer's DOPRI5 controller, beta = 0.04), clipped to [0.2, 5], q = ``order`` (the error estimate
is O(dt^q): the lower-order solution of the pair has order q - 1), never growing right after a
rejection; a rejected step shrinks by max(0.2, safety * err^(-1/q)).

Adaptive steps land on requested output times exactly (the step is clipped, and the controller's
proposal is kept for the step after), so records need no interpolation.

Constrained flows (projected gradient flows) supply the tangent-cone velocity. Each step first
freezes the active constraints at its initial point (``begin_step``), so that all its stages see
one smooth vector field; after every accepted step the state is projected back onto the
constraint set (the projection method of Hairer-Lubich-Wanner, GNI IV.4). This keeps each
method's order while the active set stays the same and costs one order at the instants where it
changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol

import numpy as np

from .arithmetic import array_ops, entry_weights
from .tableaus import TABLEAUS, Tableau


class VectorField(Protocol):
    """What the integrators need of a flow (see ``flows.base``)."""
    grad_evals: int
    constrained: bool

    def velocity(self, theta: np.ndarray, out: np.ndarray) -> np.ndarray: ...

    def project(self, theta: np.ndarray) -> None: ...

    def begin_step(self, theta: np.ndarray) -> None: ...


StepHook = Callable[["IntegratorState"], None]
"""Called before every step attempt with the current state: where a run checks for stop
requests and writes its heartbeat. It may raise to stop the integration between steps."""


def nearest_step(t: float, dt: float) -> int:
    """Number of the step of size dt nearest time t (ties to even)."""
    return round(t / dt)


def grid_times(times, dt: float) -> np.ndarray:
    """Requested record times rounded to the nearest multiple of dt, distinct and sorted:
    where fixed-step methods record (requested times closer than dt share one)."""
    return np.unique(np.rint(np.asarray(times, dtype=np.float64) / dt)) * dt


class IntegrationError(RuntimeError):
    """The integration cannot continue (non-finite state, step size underflow, step limit)."""


def before_step(state, between_steps: StepHook | None, max_steps: int, t_stop: float) -> None:
    """What every integrator does before a step attempt: run the hook (stop requests,
    heartbeat), then refuse a step beyond ``integrator.max_steps``."""
    if between_steps is not None:
        between_steps(state)
    if state.step >= max_steps:
        raise IntegrationError(f"integrator.max_steps = {max_steps} reached at "
                               f"t = {state.t:.6g} before t = {t_stop:.6g}")


@dataclass
class StepControl:
    method: str = "dopri5"
    dt: float = 1e-2
    rtol: float = 1e-6
    atol: float = 1e-9
    dt_max: float = math.inf
    dt_min: float = 1e-12
    safety: float = 0.9
    max_steps: int = 100_000_000

    @classmethod
    def from_config(cls, integ: dict) -> "StepControl":
        return cls(**{k: integ[k] for k in cls.__dataclass_fields__})


@dataclass
class IntegratorState:
    """Everything needed to continue an integration from where it stands."""
    theta: np.ndarray
    t: float = 0.0
    step: int = 0
    dt: float = 1e-2          # step proposed for the next step
    rejected: int = 0
    err_prev: float = 1.0     # error norm of the last accepted step (PI controller)
    k_first: np.ndarray | None = field(default=None, repr=False)  # FSAL stage, if valid
    moments: dict = field(default_factory=dict, repr=False)  # optimiser buffers (momentum, Adam)


class Attempt(NamedTuple):
    """A step tried: the new state (a fresh array), whether all of it is finite, and for
    adaptive methods each replica's error norm (the step is acceptable where <= 1)."""
    y: np.ndarray
    norms: np.ndarray | None
    finite: bool


class RungeKutta:
    """Integrates a :class:`VectorField` with the tableau ``control.method``."""

    def __init__(self, field_: VectorField, control: StepControl, train_mask: np.ndarray,
                 between_steps: StepHook | None = None):
        self.field = field_
        self.control = control
        self.tableau: Tableau = TABLEAUS[control.method]
        self.mask = train_mask
        self.between_steps = between_steps
        self.arrays = array_ops(field_)  # host (NumPy) or device arrays
        self._stack: np.ndarray | None = None  # the stages k_s, stacked (S, *state shape)
        self._y: np.ndarray | None = None       # the stage argument, for S > 1
        self._weight: np.ndarray | None = None  # 1 / 0 per trainable / frozen state entry
        tab = self.tableau
        self._a = np.array([list(row) + [0.0] * (tab.stages - len(row)) for row in tab.a])
        self._b = np.array(tab.b)
        self._b_err = np.array(tab.b_err) if tab.adaptive else None

    def reached_times(self, times: np.ndarray) -> np.ndarray:
        """The distinct times ``advance`` stops at for requested record times: exactly those
        for adaptive steps; for fixed steps each rounded to the nearest multiple of dt
        (requested times closer than dt share one)."""
        if self.tableau.adaptive:
            return np.asarray(times, dtype=np.float64)
        return grid_times(times, self.control.dt)

    def _stages(self, theta):
        """The stage buffer (S, *theta.shape), allocated once per state shape."""
        shape = (self.tableau.stages, *theta.shape)
        if self._stack is None or self._stack.shape != shape or self._stack.dtype != theta.dtype:
            ops = self.arrays
            self._stack = ops.empty(shape, dtype=theta.dtype)
            self._y = ops.empty_like(theta) if self.tableau.stages > 1 else None
            self._weight = ops.to_device(entry_weights(self.mask, theta.shape))
        return self._stack

    def attempt(self, state: IntegratorState, dt: float) -> "Attempt":
        """One step of size dt from ``state``, which is unchanged."""
        tab, y0, ops = self.tableau, state.theta, self.arrays
        k = self._stages(y0)
        y = self._y
        if self.field.constrained:
            self.field.begin_step(y0)
        if tab.fsal and state.k_first is not None:
            ops.assign(k[0], state.k_first)
        else:
            self.field.velocity(y0, k[0])
        for s in range(1, tab.stages):
            ops.combine(y, y0, k, dt * self._a[s], s, check=False)
            self.field.velocity(y, k[s])
        y_new = ops.empty_like(y0)
        finite = ops.combine(y_new, y0, k, dt * self._b, tab.stages)
        norms = None
        if tab.adaptive:
            norms = np.empty(y0.shape[0])
            c = self.control
            ops.error_norms(y0, y_new, k, dt * self._b_err, self._weight, c.atol, c.rtol,
                            norms)
        return Attempt(y_new, norms, finite)

    PI_BETA = 0.04  # Hairer's DOPRI5 default: damps the step-size oscillation on stiff stretches

    def _growth(self, norm: float, err_prev: float) -> float:
        """Step factor after an accepted step: the PI controller
        safety * norm^-(1/q - 0.75 beta) * err_prev^beta, clipped to [0.2, 5]."""
        if norm == 0.0:
            return 5.0
        q, beta = self.tableau.order, self.PI_BETA
        factor = self.control.safety * norm ** (-(1.0 / q - 0.75 * beta)) * err_prev ** beta
        return min(5.0, max(0.2, factor))

    @staticmethod
    def error_norm(norms: np.ndarray) -> float:
        """The step's error: the worst replica's scaled RMS norm (inf if any is not finite)."""
        worst = float(norms.max())
        return worst if math.isfinite(worst) else math.inf

    def advance(self, state: IntegratorState, t_stop: float) -> None:
        """Step ``state`` forward until state.t == t_stop exactly (adaptive), or to the step
        nearest t_stop (fixed step)."""
        if not self.tableau.adaptive:
            return self._advance_fixed(state, t_stop)
        c, tab = self.control, self.tableau
        while state.t < t_stop:
            before_step(state, self.between_steps, c.max_steps, t_stop)
            remaining = t_stop - state.t
            dt = state.dt
            # a step within rounding of t_stop lands on it: t accumulates rounding errors, and
            # an extra step of 1e-14 would waste a whole step's gradient evaluations
            clipped = dt >= remaining - 1e-12 * max(abs(t_stop), dt)
            if clipped:
                dt = remaining
            y_new, norms, finite = self.attempt(state, dt)
            norm = self.error_norm(norms)
            if norm <= 1.0 and finite:
                grow = self._growth(norm, state.err_prev)
                if state.rejected:
                    grow = min(grow, 1.0)
                proposal = min(c.dt_max, dt * grow)
                self._accept(state, y_new, t_stop if clipped else state.t + dt)
                # a step clipped to hit t_stop says nothing about the step the error allows
                state.dt = max(proposal, state.dt) if clipped else proposal
                state.rejected = 0
                state.err_prev = max(norm, 1e-4)
            else:
                shrink = 0.2 if not math.isfinite(norm) else max(
                    0.2, c.safety * norm ** (-1.0 / tab.order))
                state.dt = dt * shrink
                state.rejected += 1
                if state.dt < c.dt_min:
                    why = ("every step tried made the state non-finite"
                           if not finite else
                           "the flow may be stiff or singular there")
                    raise IntegrationError(
                        f"step size {state.dt:.3g} fell below integrator.dt_min = {c.dt_min:.3g} "
                        f"at t = {state.t:.6g}; {why}")

    def _advance_fixed(self, state: IntegratorState, t_stop: float) -> None:
        """Full steps of size dt up to the one nearest t_stop; state.t = state.step * dt."""
        c = self.control
        target = nearest_step(t_stop, c.dt)
        while state.step < target:
            before_step(state, self.between_steps, c.max_steps, t_stop)
            y_new, _, finite = self.attempt(state, c.dt)
            if not finite:
                raise IntegrationError(f"state became non-finite at t = {state.t:.6g} with "
                                       f"fixed step dt = {c.dt:.3g}; reduce integrator.dt")
            self._accept(state, y_new, (state.step + 1) * c.dt)

    def _accept(self, state, y_new, t_new):
        if self.field.constrained:
            # projection method: the step's drift off the constraint set is removed, and the
            # last stage (evaluated before projecting) is no longer the derivative there
            self.field.project(y_new)
        state.theta = y_new
        state.t = t_new
        state.step += 1
        reuse = self.tableau.fsal and not self.field.constrained
        state.k_first = self.arrays.copy(self._stack[-1]) if reuse else None
