"""What is recorded, and when: record times and the per-record observables of a state."""
from __future__ import annotations

import numpy as np

from .flows.base import Series, GroupLayout


def record_times(rec: dict, t_end: float) -> np.ndarray:
    """Sorted, distinct record times in [0, t_end], always containing 0 and t_end.

    log: 0 and ``count`` log-spaced times from ``t_first`` to t_end; linear: ``count`` equal steps;
    list: the given times."""
    if rec["schedule"] == "log":
        times = np.geomspace(rec["t_first"], t_end, rec["count"])
    elif rec["schedule"] == "linear":
        times = np.linspace(0.0, t_end, rec["count"] + 1)
    else:
        times = np.asarray(rec["times"], dtype=np.float64)
    return np.unique(np.concatenate([[0.0], times, [t_end]]))


def evaluation_grid(rec: dict) -> np.ndarray | None:
    """(G, d) grid points from grid_min/grid_max/grid_points (d = 1 or 2), x fastest for d = 2."""
    if not rec["grid_points"]:
        return None
    axes = [np.linspace(lo, hi, n) for lo, hi, n in
            zip(rec["grid_min"], rec["grid_max"], rec["grid_points"])]
    if len(axes) == 1:
        return axes[0][:, None]
    gx, gy = np.meshgrid(axes[0], axes[1], indexing="xy")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def point_margins(outputs: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(R, n) margin of each point: y_j h(x_j) (binary, k = 1), or h_{y_j}(x_j) - max_{q != y_j}
    h_q(x_j) (k classes). A point is classified correctly iff its margin is > 0."""
    if outputs.shape[2] == 1:
        return label[None, :] * outputs[:, :, 0]
    idx = np.arange(outputs.shape[1])
    own = outputs[:, idx, label]
    other = outputs.copy()
    other[:, idx, label] = -np.inf
    return own - other.max(axis=2)


def margin_and_error(outputs: np.ndarray, label: np.ndarray, weight: np.ndarray) -> tuple:
    """(R,) smallest margin over the points of positive weight, and (R,) weighted error
    sum_j p_j [margin_j <= 0] (a tie counts as an error), from one :func:`point_margins`."""
    point = point_margins(outputs, label)
    return point[:, weight > 0].min(axis=1), ((point <= 0) * weight[None, :]).sum(axis=1)


class NonFiniteError(RuntimeError):
    """A recorded quantity became inf or NaN: the run cannot go on meaningfully."""


def check_finite(frame: dict) -> None:
    """Raise :class:`NonFiniteError` naming the first recorded quantity of ``frame`` that is not
    finite, with the time, step and the first replica concerned (axis 1 after time is replica
    for every series)."""
    for group, values in frame.items():
        if not isinstance(values, dict):
            continue
        for name, array in values.items():
            flat = np.asarray(array).reshape(len(array), -1)
            bad = ~np.isfinite(flat)
            if bad.any():
                replica = int(np.flatnonzero(bad.any(axis=1))[0])
                raise NonFiniteError(
                    f"{group}/{name} became non-finite ({flat[replica][bad[replica]][0]}) at "
                    f"t = {frame['time']:.6g} (step {frame['step']}), replica index {replica}: "
                    "the state or the outputs overflowed (initial scales or step too large?)")


class Recorder:
    """Turns a state into one record for :class:`io.h5file.RunFile`: a dict with time, step,
    grad_evals and one dict of arrays per group (``observables`` and the flow's snapshots)."""

    def __init__(self, flow, grid: np.ndarray | None = None,
                 snapshot: GroupLayout | None = None, test=None):
        self.flow, self.grid, self.snapshot, self.test = flow, grid, snapshot, test

    def layouts(self) -> dict:
        """The groups this recorder fills, for :class:`io.h5file.RunFile`."""
        flow = self.flow
        obs = {"risk": Series(("replica",), "risk R = sum_j p_j l(h(x_j), y_j)"),
               "log_risk": Series(("replica",), "natural log of the risk"),
               "margin": Series(("replica",), "min_j y_j h(x_j) (binary); "
                                "min_j h_yj - max_{q != y_j} h_q (k classes)"),
               **{name: Series(("replica",), doc) for name, doc in flow.scalar_series.items()},
               "error": Series(("replica",), "training error sum_j p_j [margin_j <= 0]"),
               "outputs": Series(("replica", "sample", "output"), "outputs h(x_j)")}
        coords = {"sample": np.arange(flow.data.n), "output": np.arange(flow.outputs)}
        static = {}
        if self.test is not None:
            obs.update(test_risk=Series(("replica",), "risk on the held-out test points"),
                       test_margin=Series(("replica",), "smallest margin on the test points"),
                       test_error=Series(("replica",), "test error sum_j q_j [margin_j <= 0] "
                                         "over the test points x'_j with weights q_j"),
                       test_outputs=Series(("replica", "test_sample", "output"),
                                           "outputs h(x'_j) on the held-out test points"))
            coords.update(test_sample=np.arange(self.test.n),
                          input=np.arange(self.test.x.shape[1]))
            static.update(test_x=(self.test.x, ("test_sample", "input"), "test points x'_j"),
                          test_label=(self.test.label, ("test_sample",), "test labels"),
                          test_weight=(self.test.weight, ("test_sample",),
                                       "test weights q_j (sum 1)"))
        if self.grid is not None:
            obs["grid_outputs"] = Series(("replica", "grid_point", "output"),
                                         "network outputs on the evaluation grid")
            coords.update(grid_point=np.arange(self.grid.shape[0]),
                          input=np.arange(self.grid.shape[1]))
            static["grid_x"] = (self.grid, ("grid_point", "input"), "evaluation grid points")
        layouts = {"observables": GroupLayout("observables", coords, obs, static)}
        if self.snapshot is not None:
            layouts[self.snapshot.group] = self.snapshot
        return layouts

    def frame(self, theta: np.ndarray, t: float, step: int) -> dict:
        flow = self.flow
        ev = flow.evaluate(theta)
        obs = {"risk": ev.risk.copy(), "log_risk": ev.log_risk.copy(),
               "outputs": ev.outputs.copy(),
               **flow.scalars(theta)}
        obs["margin"], obs["error"] = margin_and_error(ev.outputs, flow.data.label,
                                                       flow.data.weight)
        if self.test is not None:
            outputs, risk = flow.evaluate_on(theta, self.test)
            obs.update(test_risk=risk, test_outputs=outputs)
            obs["test_margin"], obs["test_error"] = margin_and_error(outputs, self.test.label,
                                                                     self.test.weight)
        if self.grid is not None:
            obs["grid_outputs"] = flow.outputs_at(theta, self.grid)
        out = {"time": t, "step": step, "grad_evals": flow.grad_evals, "observables": obs}
        if self.snapshot is not None:
            out[self.snapshot.group] = flow.snapshot(theta)
        return out
