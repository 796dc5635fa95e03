"""Time stepping: Runge-Kutta integrators of the gradient flow (``stepper``, ``tableaus``) and
the discrete optimisers momentum and Adam (``optimizers``), all behind ``advance(state, t)``."""
from __future__ import annotations

from .optimizers import Optimizer, OptimizerControl
from .stepper import RungeKutta, StepControl, StepHook

OPTIMIZERS = ("momentum", "adam")


def make_integrator(flow, integ: dict, between_steps: StepHook | None = None):
    """The integrator or optimiser named by ``integrator.method`` for ``flow``;
    ``between_steps(state)`` runs before every step."""
    if integ["method"] in OPTIMIZERS:
        return Optimizer(flow, OptimizerControl(**{k: integ[k] for k in
                                                   OptimizerControl.__dataclass_fields__}),
                         between_steps)
    return RungeKutta(flow, StepControl.from_config(integ), flow.train_mask, between_steps)
