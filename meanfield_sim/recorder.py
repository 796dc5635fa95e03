"""What is recorded, and when: record times and the per-record observables of a state."""
from __future__ import annotations

import numpy as np

from .flow import ParticleFlow


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
    times = np.unique(np.concatenate([[0.0], times, [t_end]]))
    times[-1] = t_end  # geomspace may miss t_end by a rounding error
    return times


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


def margins(outputs: np.ndarray, label: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(R,) smallest margin over the points of positive weight.

    Binary (k = 1): min_j y_j h(x_j). k classes: min_j (h_{y_j}(x_j) - max_{q != y_j} h_q(x_j))."""
    keep = weight > 0
    h, y = outputs[:, keep, :], label[keep]
    if h.shape[2] == 1:
        return (y[None, :] * h[:, :, 0]).min(axis=1)
    idx = np.arange(h.shape[1])
    own = h[:, idx, y]
    other = h.copy()
    other[:, idx, y] = -np.inf
    return (own - other.max(axis=2)).min(axis=1)


def path_norm(theta: np.ndarray, k: int, d: int, scale: float) -> np.ndarray:
    """(R,) path norm s_m sum_i |a_i| (|w_i| + |b_i|) (Euclidean norms of a_i and w_i)."""
    t = theta.astype(np.float64, copy=False)
    a = np.linalg.norm(t[:, :, :k], axis=2)
    w = np.linalg.norm(t[:, :, k:k + d], axis=2)
    return scale * (a * (w + np.abs(t[:, :, k + d]))).sum(axis=1)


class Recorder:
    """Turns a state into one record (a dict of arrays) for :class:`io.h5file.RunFile`."""

    def __init__(self, flow: ParticleFlow, grid: np.ndarray | None = None,
                 particle_ids: np.ndarray | None = None):
        self.flow, self.grid, self.particle_ids = flow, grid, particle_ids

    def frame(self, theta: np.ndarray, t: float, step: int) -> dict:
        flow, spec = self.flow, self.flow.spec
        ev = flow.evaluate(theta)
        out = {"time": t, "step": step, "grad_evals": flow.grad_evals,
               "risk": ev.risk.copy(), "log_risk": ev.log_risk.copy(),
               "outputs": ev.outputs.copy(),
               "margin": margins(ev.outputs, flow.data.label, flow.data.weight),
               "path_norm": path_norm(theta, spec.outputs, spec.input_dim, spec.scale)}
        if self.grid is not None:
            out["grid_outputs"] = flow.outputs_at(theta, self.grid)
        if self.particle_ids is not None:
            sub = theta[:, self.particle_ids, :].astype(np.float64)
            sl = spec.slices
            out["particles"] = {"a": sub[:, :, sl["a"]], "w": sub[:, :, sl["w"]],
                                "b": sub[:, :, sl["b"]][:, :, 0]}
        return out
