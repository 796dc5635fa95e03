"""The two-layer network h(x) = s_m sum_i a_i sigma(w_i . x + b_i) and its particles.

State layout: one array ``theta`` of shape (R, m, k + d + 1) per run, replica r, particle i,
holding [a_i (k entries), w_i (d entries), b_i]. The replica is an array axis, not a loop, and
every particle's parameters are contiguous, which is what the kernels stream over. Without a
bias, b_i stays 0 and does not train.

Initialisation (replica r draws from SeedSequence(run.seed, spawn_key=(first_replica + r,))):
- gaussian:  a ~ N(0, scale_a^2 I_k), w ~ N(0, scale_w^2 I_d), b ~ N(0, scale_b^2)
- balanced:  (w, b) as above and a = |(w, b)| u with u a uniform random unit vector in R^k
             (a random sign for k = 1), so |a_i| = |(w_i, b_i)| as in Chizat-Bach
- explicit:  the particle lists of the config, the same for every replica
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATION_IDS
from .losses import LOSS_IDS


@dataclass(frozen=True)
class NetworkSpec:
    width: int           # m
    input_dim: int       # d
    outputs: int         # k
    activation: str
    activation_param: float
    loss: str
    bias: bool
    scale: float         # s_m: 1/m (mean_field) or 1 (standard)
    train: tuple         # subset of ("a", "w", "b")

    @property
    def act_id(self) -> int:
        return ACTIVATION_IDS[self.activation]

    @property
    def loss_id(self) -> int:
        return LOSS_IDS[self.loss]

    @property
    def params_per_particle(self) -> int:
        return self.outputs + self.input_dim + 1

    @property
    def slices(self) -> dict:
        """Column ranges of the groups a, w, b in the last axis of theta."""
        k, d = self.outputs, self.input_dim
        return {"a": slice(0, k), "w": slice(k, k + d), "b": slice(k + d, k + d + 1)}

    def train_mask(self) -> np.ndarray:
        """(k + d + 1,) bool, True for the parameters that move."""
        mask = np.zeros(self.params_per_particle, dtype=bool)
        for g in self.train:
            mask[self.slices[g]] = True
        return mask


def network_spec(cfg: dict) -> NetworkSpec:
    model = cfg["model"]
    m = model["width"]
    return NetworkSpec(width=m, input_dim=cfg["derived"]["input_dim"],
                       outputs=cfg["derived"]["outputs"], activation=model["activation"],
                       activation_param=model["leaky_slope"], loss=model["loss"],
                       bias=model["bias"],
                       scale=1.0 / m if model["scaling"] == "mean_field" else 1.0,
                       train=tuple(model["train"]))


def replica_rng(seed: int, replica: int) -> np.random.Generator:
    """The random stream of global replica index ``replica``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(replica,)))


def initial_particles(cfg: dict, spec: NetworkSpec, dtype=np.float64) -> np.ndarray:
    """theta of shape (R, m, k + d + 1) as described in the module docstring."""
    run, init = cfg["run"], cfg["init"]
    R, m, k, d = run["replicas"], spec.width, spec.outputs, spec.input_dim
    theta = np.zeros((R, m, k + d + 1), dtype=np.float64)
    sl = spec.slices
    if init["kind"] == "explicit":
        theta[:, :, sl["a"]] = np.asarray(init["a"])
        theta[:, :, sl["w"]] = np.asarray(init["w"])
        if init["b"]:
            theta[:, :, sl["b"]] = np.asarray(init["b"])[:, None]
        return theta.astype(dtype)
    for r in range(R):
        rng = replica_rng(run["seed"], run["first_replica"] + r)
        w = init["scale_w"] * rng.normal(size=(m, d))
        b = init["scale_b"] * rng.normal(size=m) if spec.bias else np.zeros(m)
        if init["kind"] == "gaussian":
            a = init["scale_a"] * rng.normal(size=(m, k))
        else:
            u = rng.normal(size=(m, k))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            a = u * np.sqrt((w * w).sum(axis=1) + b * b)[:, None]
        theta[r, :, sl["a"]] = a
        theta[r, :, sl["w"]] = w
        theta[r, :, sl["b"]] = b[:, None]
    return theta.astype(dtype)
