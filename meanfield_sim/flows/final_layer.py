"""Section 3's final-layer toy model: free outputs z_j in an l^p ball, one per data point.

State theta (R, n, k): z_j = h(x_j) for every replica and point, constrained to |z_j|_p <= R.
Flow: the projected gradient flow of the softmax cross-entropy risk
    dz_j/dt = Pi_{T(z_j)}( -p_j (softmax(z_j) - e_{y_j}) ),
T the tangent cone of the ball. The points do not interact, so each z_j converges to the unique
minimiser of Phi_{y_j} on the ball (Lemma 4): every class collapses to one point (Lemma 2 /
Corollary 3) and the points form the symmetric simplex alpha e_i + beta sum_{j != i} e_j
(equation (4) for p = 2; ``theory.final_layer_vertex`` for other p), whatever the weights p_j.
Time is the gradient-flow time of R; a point of weight p_j moves at speed ~ p_j.
"""
from __future__ import annotations

import numpy as np

from ..model.data import Dataset
from ..model.network import replica_rng
from ..theory import final_layer_simplex
from .base import Evaluation
from .projections import (lp_boundary, lp_norm, project_lp_ball, snap_to_lp_sphere,
                          tangent_lp_ball)
from .softmax import class_offsets_plus_spread, class_spread, softmax_risk


class FinalLayerFlow:
    supports_grid = False
    constrained = True
    scalar_series = {
        "max_norm": "max_j |z_j|_p / R (1 on the boundary of the ball)",
        "class_spread": "max over classes of max_j |z_j - class mean|_2 (0 when collapsed)",
        "vertex_error": "max_j |z_j - z*_{y_j}|_2, z* the minimiser of Lemma 4 for this p, R",
        # all maxima over the points of positive weight
    }

    def __init__(self, data: Dataset, replicas: int, radius: float, p: float):
        self.data, self.replicas, self.radius, self.p = data, replicas, radius, p
        self.outputs = len(data.class_labels)
        self.train_mask = np.ones(self.outputs, dtype=bool)
        self.vertices = final_layer_simplex(self.outputs, radius, p)
        self._on = self._held = None  # constraints frozen for one step (see begin_step)
        self.grad_evals = 0

    @classmethod
    def from_config(cls, cfg: dict, data: Dataset) -> "FinalLayerFlow":
        toy = cfg["toy"]
        return cls(data, cfg["run"]["replicas"], toy["radius"], toy["norm_p"])

    def initial_state(self, cfg: dict) -> np.ndarray:
        run, toy = cfg["run"], cfg["toy"]
        return np.stack([class_offsets_plus_spread(
            replica_rng(run["seed"], run["first_replica"] + r), self.data.label, self.outputs,
            toy["init_offset"], toy["init_spread"]) for r in range(self.replicas)])

    def warm_up(self) -> None:
        project_lp_ball(np.zeros((1, self.outputs)), self.radius, self.p)

    def evaluate(self, theta: np.ndarray) -> Evaluation:
        risk, log_risk, _ = softmax_risk(theta, self.data.label, self.data.weight)
        return Evaluation(theta, risk, log_risk)

    def velocity(self, theta: np.ndarray, out: np.ndarray) -> np.ndarray:
        _, _, grad = softmax_risk(theta, self.data.label, self.data.weight)
        np.negative(grad, out=out)
        held = tangent_lp_ball(theta, out, self.radius, self.p, self._on)
        if self._on is not None and self._held is None:  # first stage: at the step's start
            self._held = held
        self.grad_evals += 1
        return out

    def begin_step(self, theta: np.ndarray) -> None:
        """Freeze the active constraints (outputs on the sphere) for the stages of one step."""
        self._on, self._held = lp_boundary(theta, self.radius, self.p), None

    def project(self, theta: np.ndarray) -> None:
        """Into the ball; outputs the constraint held during the step back onto the sphere."""
        project_lp_ball(theta, self.radius, self.p)
        if self._held is not None:
            snap_to_lp_sphere(theta, self.radius, self.p, self._held)
        self._on = self._held = None

    def scalars(self, theta: np.ndarray) -> dict:
        data, keep = self.data, self.data.weight > 0
        z = theta[:, keep]
        return {"max_norm": lp_norm(z, self.p).max(axis=1) / self.radius,
                "class_spread": class_spread(theta, data.label, data.weight),
                "vertex_error": np.linalg.norm(z - self.vertices[data.label[keep]],
                                               axis=-1).max(axis=1)}

    def snapshot_layout(self, cfg: dict):
        """The state is the outputs, recorded in /observables already."""
        return None
