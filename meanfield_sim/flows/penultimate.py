"""Section 4's penultimate-layer toy model: free features y_j in R^m and a linear map A.

State theta (R, P), per replica the concatenation of Y (n x m, row j = y_j), A (k x m) and
b (k), P = n m + k m + k; outputs h_j = A y_j + b. Risk: softmax cross-entropy
R = sum_j p_j Phi_{y_j}(h_j), with dR/dy_j = A^T g_j, dR/dA = sum_j g_j y_j^T, dR/db = sum_j g_j,
g_j = p_j (softmax(h_j) - e_{y_j}).

toy.constraint = "ball": the projected gradient flow with |y_j|_2 <= R and |A|_op <= s (the
velocity is projected onto the tangent cones; states are projected after every step; the
spectral projection clips singular values). Corollary 9 (no bias, s = 1, m >= k - 1): minimisers
collapse each class to one feature y_i, the y_i are the vertices of a regular simplex centred at
0 with |y_i| = R, and A is an isometric embedding of their span, so h_i = A y_i is the simplex of
equation (4).

toy.constraint = "weight_decay": the unconstrained gradient flow of
R + lambda_A |A|_F^2 + lambda_Y sum_j |y_j|^2 (the unconstrained-features model of the
neural-collapse literature).
"""
from __future__ import annotations

import numpy as np

from ..model.data import Dataset
from ..model.network import replica_rng
from ..theory import final_layer_simplex
from .base import Evaluation, GroupLayout, Series
from .projections import (lp_boundary, project_lp_ball, project_spectral_ball, snap_to_lp_sphere,
                          snap_to_spectral_sphere, spectral_active_frame, tangent_lp_ball,
                          tangent_spectral_ball)
from .softmax import class_offsets_plus_spread, class_spread, softmax_risk


class PenultimateFlow:
    supports_grid = False
    scalar_series = {
        "feature_norm_max": "max_j |y_j|_2 / R",
        "operator_norm": "|A|_op, the largest singular value of A",
        "feature_spread": "max over classes of max_j |y_j - class mean|_2 (0 when collapsed)",
        "vertex_error": "max_j |h_j - z*_{y_j}|_2, z* the simplex of equation (4) with radius "
                        "operator_bound * R",
        "objective": "the flow's objective: the risk, plus the weight-decay terms if any",
    }

    def __init__(self, data: Dataset, replicas: int, m: int, radius: float, bound: float,
                 bias: bool, constraint: str, decay_A: float = 0.0, decay_Y: float = 0.0):
        self.data, self.replicas, self.m = data, replicas, m
        self.radius, self.bound, self.bias = radius, bound, bias
        self.constrained = constraint == "ball"
        self.decay_A, self.decay_Y = (0.0, 0.0) if self.constrained else (decay_A, decay_Y)
        self.outputs = k = len(data.class_labels)
        n = data.n
        self.sizes = (n * m, k * m, k)
        self.train_mask = np.ones(sum(self.sizes), dtype=bool)
        if not bias:
            self.train_mask[-k:] = False
        # |h_j| <= |A| |y_j| <= bound * radius: the simplex of (4) at that radius
        self.vertices = final_layer_simplex(k, bound * radius, 2.0)
        self._frozen = self._held = None  # constraints frozen for one step (see begin_step)
        self.grad_evals = 0

    @classmethod
    def from_config(cls, cfg: dict, data: Dataset) -> "PenultimateFlow":
        toy = cfg["toy"]
        return cls(data, cfg["run"]["replicas"], toy["feature_dim"], toy["radius"],
                   toy["operator_bound"], toy["bias"], toy["constraint"],
                   toy["weight_decay_A"], toy["weight_decay_Y"])

    def split(self, theta: np.ndarray):
        """Views (Y (R, n, m), A (R, k, m), b (R, k)) into a state or velocity array."""
        n, k, m = self.data.n, self.outputs, self.m
        a, b = self.sizes[0], self.sizes[0] + self.sizes[1]
        return (theta[:, :a].reshape(-1, n, m), theta[:, a:b].reshape(-1, k, m), theta[:, b:])

    def initial_state(self, cfg: dict) -> np.ndarray:
        run, toy = cfg["run"], cfg["toy"]
        theta = np.zeros((self.replicas, sum(self.sizes)))
        Y, A, _ = self.split(theta)
        for r in range(self.replicas):
            rng = replica_rng(run["seed"], run["first_replica"] + r)
            Y[r] = class_offsets_plus_spread(rng, self.data.label, self.m, toy["init_offset"],
                                             toy["init_spread"])
            A[r] = toy["init_scale_A"] / np.sqrt(self.m) * rng.normal(size=A[r].shape)
        return theta

    def warm_up(self) -> None:
        """Nothing to compile: the flow is NumPy."""

    def _outputs(self, theta):
        Y, A, b = self.split(theta)
        return np.einsum("rkm,rnm->rnk", A, Y) + b[:, None, :]

    def evaluate(self, theta: np.ndarray) -> Evaluation:
        h = self._outputs(theta)
        risk, log_risk, _ = softmax_risk(h, self.data.label, self.data.weight)
        return Evaluation(h, risk, log_risk)

    def velocity(self, theta: np.ndarray, out: np.ndarray) -> np.ndarray:
        Y, A, _ = self.split(theta)
        _, _, g = softmax_risk(self._outputs(theta), self.data.label, self.data.weight)
        vY, vA, vb = self.split(out)
        np.negative(np.einsum("rnk,rkm->rnm", g, A), out=vY)
        np.negative(np.einsum("rnk,rnm->rkm", g, Y), out=vA)
        if self.bias:
            np.negative(g.sum(axis=1), out=vb)
        else:
            vb[...] = 0.0
        if self.constrained:
            on, frames = self._frozen if self._frozen is not None else (None, None)
            held = (tangent_lp_ball(Y, vY, self.radius, 2.0, on),
                    tangent_spectral_ball(A, vA, self.bound, frames))
            if self._frozen is not None and self._held is None:  # first stage: step's start
                self._held = held
        else:
            vY -= 2.0 * self.decay_Y * Y
            vA -= 2.0 * self.decay_A * A
        self.grad_evals += 1
        return out

    def begin_step(self, theta: np.ndarray) -> None:
        """Freeze the active constraints (features on the sphere, singular values of A at the
        bound) for the stages of one step."""
        if self.constrained:
            Y, A, _ = self.split(theta)
            self._frozen = (lp_boundary(Y, self.radius, 2.0),
                            spectral_active_frame(A, self.bound))
            self._held = None

    def project(self, theta: np.ndarray) -> None:
        """Into the balls; what the constraints held during the step back onto their spheres."""
        if self.constrained:
            Y, A, _ = self.split(theta)
            project_lp_ball(Y, self.radius, 2.0)
            project_spectral_ball(A, self.bound)
            if self._held is not None:
                snap_to_lp_sphere(Y, self.radius, 2.0, self._held[0])
                snap_to_spectral_sphere(A, self.bound, self._held[1])
        self._frozen = self._held = None

    def scalars(self, theta: np.ndarray) -> dict:
        Y, A, _ = self.split(theta)
        data, keep = self.data, self.data.weight > 0
        h = self._outputs(theta)
        risk, _, _ = softmax_risk(h, data.label, data.weight)
        penalty = (self.decay_A * (A * A).sum(axis=(1, 2))
                   + self.decay_Y * (Y * Y).sum(axis=(1, 2)))
        return {"feature_norm_max": np.linalg.norm(Y[:, keep], axis=-1).max(axis=1) / self.radius,
                "operator_norm": np.linalg.norm(A, ord=2, axis=(1, 2)),
                "feature_spread": class_spread(Y, data.label, data.weight),
                "vertex_error": np.linalg.norm(h[:, keep] - self.vertices[data.label[keep]],
                                               axis=-1).max(axis=1),
                "objective": risk + penalty}

    def snapshot_layout(self, cfg: dict) -> GroupLayout | None:
        """record.particles = 'all': features, A and b at every record."""
        if cfg["record"]["particles"] == "none":
            return None
        return GroupLayout("particles/features",
                           coords={"sample": np.arange(self.data.n),
                                   "feature": np.arange(self.m),
                                   "output": np.arange(self.outputs)},
                           variables={"y": Series(("replica", "sample", "feature"), "features y_j"),
                                      "A": Series(("replica", "output", "feature"),
                                                  "linear map A"),
                                      "b": Series(("replica", "output"), "output bias b")})

    def snapshot(self, theta: np.ndarray) -> dict:
        Y, A, b = self.split(theta)
        return {"y": Y.copy(), "A": A.copy(), "b": b.copy()}
