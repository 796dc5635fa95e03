"""The mean-field two-layer network as a flow: particles theta_i = (a_i, w_i, b_i).

    d theta_i / dt = -(1 / s_m) dR/d theta_i,     R(theta) = sum_j p_j l(h_theta(x_j), y_j)

For the mean-field scaling s_m = 1/m this is d theta_i/dt = -m dR/d theta_i, under which the
empirical measure (1/m) sum_i delta_{theta_i} follows the Wasserstein gradient flow of R
(Chizat-Bach); time t is that flow's time, comparable across widths. For s_m = 1 it is the plain
gradient flow d theta/dt = -grad R, the time of gradient descent with step dt.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..kernels import cpu as cpu_kernels
from ..model.data import Dataset
from ..model.network import NetworkSpec
from .base import Evaluation, Series, GroupLayout

PARTICLE_SUBSAMPLE_STREAM = (0x5A3B, 0)  # two entries: never a replica's key (r,)


class ParticleFlow:
    """Vector field theta -> velocity for states of shape (R, m, k + d + 1).

    ``dtype`` is the precision of the kernels' arithmetic: the data are stored in it and the
    particles cast to it for every evaluation (in the same pass that lays them out for the
    kernels). The state the integrator steps stays float64, so that steps far below float32's
    resolution of the parameters still move them."""

    supports_grid = True
    constrained = False
    scalar_series = {"path_norm": "path norm s_m sum_i |a_i| (|w_i| + |b_i|) (the paper's)",
                     "euclidean_norm": "s_m sum_i |a_i| sqrt(|w_i|^2 + b_i^2)"}

    def __init__(self, spec: NetworkSpec, data: Dataset, replicas: int, dtype=np.float64,
                 backend: str = "cpu", threads: int = 0, kernel: str = "pairwise"):
        self.spec, self.data, self.replicas = spec, data, replicas
        self.dtype, self.backend = np.dtype(dtype), backend
        # 'sorted' or 'pairwise'
        self.kernel = kernels.resolve_kernel(kernel, data.n, spec.activation)
        self.kernels = kernels.get_backend(backend, spec.input_dim, spec.outputs, self.kernel)
        self.x = np.ascontiguousarray(data.x, dtype=self.dtype)
        self.xT = np.ascontiguousarray(self.x.T)
        self.label = np.ascontiguousarray(data.label, dtype=np.int64)
        with np.errstate(divide="ignore"):
            self.log_weight = np.log(data.weight)
        R, n, k = replicas, data.n, spec.outputs
        self._h = np.empty((R, n, k))
        self._dual = np.empty((R, n, k))
        self._risk, self._log_risk, self._log_scale = np.empty(R), np.empty(R), np.empty(R)
        trains = set(spec.train)
        self._train = ("a" in trains, "w" in trains, "b" in trains)
        work = replicas * (spec.width * data.n if self.kernel == "pairwise" else
                           (spec.width + data.n) * kernels.SORTED_PAIRS_PER_PARTICLE)
        self.threads = kernels.choose_threads(work, threads)
        self.outputs = spec.outputs
        self.train_mask = spec.train_mask()
        self._snapshot_ids = None
        self.grad_evals = 0  # velocity evaluations, each a forward plus a backward pass

    def warm_up(self) -> None:
        """Compile every kernel this flow's backend may use for its storage type (or load them
        from Numba's disk cache); costs no gradient evaluation."""
        kernels.warm_up(self.backend, self.dtype)

    def outputs_at(self, theta: np.ndarray, points: np.ndarray) -> np.ndarray:
        """h(points) for every replica, shape (R, len(points), k)."""
        pts = np.ascontiguousarray(points, dtype=self.dtype)
        out = np.empty((theta.shape[0], pts.shape[0], self.spec.outputs))
        s = self.spec
        kernels.use_threads(self.threads)
        self.kernels.forward(_soa(theta, self.dtype), pts, s.outputs, s.act_id,
                             s.activation_param, s.scale, out)
        return out

    def evaluate_on(self, theta: np.ndarray, data: Dataset) -> tuple:
        """Outputs (R, n', k) and risk (R,) on other points ``data`` (a held-out test set),
        with the training loss; fresh host arrays (the loss pass on the host whatever the
        backend: this is for records, not steps)."""
        outputs = self.outputs_at(theta, data.x)
        R, n, k = outputs.shape
        with np.errstate(divide="ignore"):
            log_weight = np.log(data.weight)
        risk, log_risk, log_scale = np.empty(R), np.empty(R), np.empty(R)
        cpu_kernels.loss_pass(outputs, np.ascontiguousarray(data.label, dtype=np.int64),
                               log_weight, self.spec.loss_id, np.empty((R, n, k)), risk,
                               log_risk, log_scale)
        return outputs, risk

    def evaluate(self, theta: np.ndarray) -> Evaluation:
        """Forward and loss pass (no gradient). Returned arrays are owned by the flow and are
        overwritten by the next call; copy what must outlive it."""
        return self._evaluate(_soa(theta, self.dtype))

    def _evaluate(self, thetaT: np.ndarray) -> Evaluation:
        s = self.spec
        kernels.use_threads(self.threads)
        self.kernels.forward(thetaT, self.x, s.outputs, s.act_id, s.activation_param, s.scale,
                             self._h)
        self.kernels.loss_pass(self._h, self.label, self.log_weight, s.loss_id, self._dual,
                               self._risk, self._log_risk, self._log_scale)
        return Evaluation(self._h, self._risk, self._log_risk, self._dual, self._log_scale)

    def velocity(self, theta: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write d theta/dt at ``theta`` into ``out`` (same shape and dtype) and return it."""
        thetaT = _soa(theta, self.dtype)
        ev = self._evaluate(thetaT)
        s = self.spec
        dualT = np.ascontiguousarray(ev.dual.transpose(0, 2, 1), dtype=self.dtype)
        self.kernels.velocity(thetaT, self.xT, dualT, ev.log_scale, s.outputs, s.act_id,
                              s.activation_param, *self._train, out)
        self.grad_evals += 1
        return out

    def project(self, theta: np.ndarray) -> None:
        """No constraint: every state is admissible."""

    def scalars(self, theta: np.ndarray) -> dict:
        s = self.spec
        return dict(zip(("path_norm", "euclidean_norm"),
                        path_norms(theta, s.outputs, s.input_dim, s.scale)))

    def snapshot_layout(self, cfg: dict) -> GroupLayout | None:
        """record.particles: none, all, or a fixed seeded subsample of the particles."""
        rec, m = cfg["record"], self.spec.width
        if rec["particles"] == "none":
            return None
        if rec["particles"] == "all":
            ids = np.arange(m)
        else:
            rng = np.random.default_rng(np.random.SeedSequence(
                cfg["run"]["seed"], spawn_key=PARTICLE_SUBSAMPLE_STREAM))
            ids = np.sort(rng.choice(m, size=rec["particle_count"], replace=False))
        self._snapshot_ids = ids
        s = self.spec
        return GroupLayout("particles/network",
                              coords={"particle": ids, "output": np.arange(s.outputs),
                                      "input": np.arange(s.input_dim)},
                              variables={"a": Series(("replica", "particle", "output"),
                                                     "outer weights a_i"),
                                         "w": Series(("replica", "particle", "input"),
                                                     "inner weights w_i"),
                                         "b": Series(("replica", "particle"), "biases b_i")})

    def snapshot(self, theta: np.ndarray) -> dict:
        sub = theta[:, self._snapshot_ids, :].astype(np.float64)
        sl = self.spec.slices
        return {"a": sub[:, :, sl["a"]], "w": sub[:, :, sl["w"]], "b": sub[:, :, sl["b"]][:, :, 0]}


def _soa(theta: np.ndarray, dtype) -> np.ndarray:
    """(R, m, p) particle rows -> (R, p, m) contiguous columns of ``dtype``, the kernels' layout
    and type. O(R m p), negligible against the O(R m n) passes."""
    return np.ascontiguousarray(theta.transpose(0, 2, 1), dtype=dtype)


def path_norms(theta: np.ndarray, k: int, d: int, scale: float) -> tuple:
    """(R,) arrays over all particles: the paper's path norm s_m sum_i |a_i| (|w_i| + |b_i|) and
    the Euclidean variant s_m sum_i |a_i| sqrt(|w_i|^2 + b_i^2) (|a_i|, |w_i| Euclidean)."""
    t = theta.astype(np.float64, copy=False)
    a = np.linalg.norm(t[:, :, :k], axis=2)
    w = np.linalg.norm(t[:, :, k:k + d], axis=2)
    b = np.abs(t[:, :, k + d])
    return scale * (a * (w + b)).sum(axis=1), scale * (a * np.hypot(w, b)).sum(axis=1)
