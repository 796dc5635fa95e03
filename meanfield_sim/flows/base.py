"""What every flow offers the integrators and the recorder.

A *flow* is a vector field on a state array ``theta`` whose first axis is the replica:

- ``velocity(theta, out)``: write d theta/dt into ``out``; counts ``grad_evals``;
- ``evaluate(theta)``: outputs h (R, n, k) on the data, risk and log-risk (an :class:`Evaluation`);
- ``project(theta)``: put a state back onto the constraint set, in place (a no-op without one);
- ``train_mask``: bool over the last axis of theta, True for entries that move;
- ``scalar_series`` / ``scalars(theta)``: model-specific per-replica observables (name -> doc,
  name -> (R,) array), recorded beside risk and margin;
- ``snapshot_layout(cfg)`` / ``snapshot(theta)``: an optional group of state snapshots;
- ``data``, ``replicas``, ``outputs`` (k), ``supports_grid``.

Constrained flows return the *projected* velocity: the negative gradient with its component
along the outward normal cone removed wherever the state sits on the boundary, so that
d theta/dt lies in the tangent cone (the projected gradient flow). The integrators call
``project`` after every accepted step to remove the drift off the constraint set.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Evaluation:
    """Outputs and risk of every replica at one state."""
    outputs: np.ndarray             # (R, n, k) h(x_j)
    risk: np.ndarray                # (R,)
    log_risk: np.ndarray            # (R,) log of the risk, finite where the risk underflows
    dual: np.ndarray | None = None  # network only: (R, n, k) p_j dl/dh / exp(log_scale)
    log_scale: np.ndarray | None = None


@dataclass(frozen=True)
class Series:
    """A recorded variable: its axes after ``time`` and a description."""
    dims: tuple
    long_name: str


@dataclass
class GroupLayout:
    """An HDF5 group of time series: coordinates of its axes (besides time and replica), its
    variables, and static datasets {name: (array, dims, long_name)}."""
    group: str
    coords: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    static: dict = field(default_factory=dict)
