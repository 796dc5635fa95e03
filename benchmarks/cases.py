"""What is benchmarked: shapes, cases and the problem every implementation starts from.

One *case* is a shape (m, n, d, k, R), a dtype (of the arithmetic and the data) and an
activation, relu or sigmoid (the logistic function 1 / (1 + exp(-z)), the project's "sigmoid";
its "flat_sigmoid" is another function). The network is

    h(x) = (1/m) sum_i a_i sigma(w_i . x + b_i),      a_i in R^k, w_i in R^d, b_i in R,

with the particles of R independent replicas stored as theta of shape (R, m, k + d + 1), columns
[a (k) | w (d) | b]. The risk is R(theta) = sum_j p_j l(h(x_j), y_j) with the logistic loss
l = log(1 + exp(-2 y h)), y = +-1, for k = 1 (two Gaussian classes) and softmax cross-entropy
l = logsumexp(h) - h_y, y in 0..k-1, for k > 1 (k Gaussian classes). One benchmarked *step* is
one Euler step of the mean-field gradient flow, i.e. gradient descent

    theta <- theta + dt v,      v = -(1/s_m) dR/dtheta = -m dR/dtheta,

forward pass, loss, gradient and update included. Its matrix-product part costs
F = 2 m n (2d + 3k) R floating-point operations: z = W x (2mnd), h = a^T sigma(z) (2mnk), the
back-propagated G a^T (2mnk), sigma^T G (2mnk) and C x (2mnd).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

PAIRWISE = "ours-pairwise"
"""This project with run.kernel = 'pairwise', timed beside 'ours' (run.kernel = 'auto') where
'auto' picks the sorted kernels (d = 1, relu): not a peer, so not in the fastest-peer column."""

STEP_SIZE = 1.0
"""dt. The timings do not depend on it; the agreement check measures differences relative to the
step dt v, against which a float32 state's rounding (|theta| * 6e-8) is the smaller the larger
dt is."""


@dataclass(frozen=True)
class Shape:
    width: int        # m, particles per replica
    points: int       # n, data points
    input_dim: int    # d
    outputs: int      # k; 1 = logistic loss with labels +-1, > 1 = softmax over k classes
    replicas: int = 1  # R

    @property
    def loss(self) -> str:
        return "logistic" if self.outputs == 1 else "softmax_ce"

    @property
    def num_classes(self) -> int:
        return 2 if self.outputs == 1 else self.outputs

    @property
    def matmul_flops(self) -> float:
        """F = 2 m n (2d + 3k) R: the matrix products of one step."""
        return 2.0 * self.width * self.points * (2 * self.input_dim + 3 * self.outputs) \
            * self.replicas

    def label(self) -> str:
        return (f"m={_short(self.width)} n={_short(self.points)} d={self.input_dim} "
                f"k={self.outputs} R={self.replicas}")

    def spec(self) -> str:
        """The --shapes form, M,N,D,K[,R]."""
        return f"{self.width},{self.points},{self.input_dim},{self.outputs},{self.replicas}"


def parse_shape(text: str) -> Shape:
    """'M,N,D,K' or 'M,N,D,K,R' with integers or 1e3-style numbers."""
    parts = [float(p) for p in re.split(r"[,x]", text.strip())]
    if len(parts) not in (4, 5) or any(p < 1 or p != int(p) for p in parts):
        raise ValueError(f"shape {text!r}: expected M,N,D,K[,R] with positive integers")
    return Shape(*(int(p) for p in parts))


def _short(v: int) -> str:
    """1000 -> '1e3', 4096 -> '4096'."""
    e = len(str(v)) - 1
    return f"1e{e}" if v >= 1000 and v == 10 ** e else str(v)


FULL_SHAPES = (Shape(1000, 10, 1, 1), Shape(1000, 200, 1, 1), Shape(1000, 200, 1, 1, 16),
               Shape(10_000, 1000, 1, 1), Shape(100_000, 1000, 1, 1), Shape(10_000, 1000, 2, 1),
               Shape(10_000, 1000, 32, 1), Shape(10_000, 1000, 32, 10),
               Shape(4096, 4096, 128, 10))
QUICK_SHAPES = (Shape(1000, 10, 1, 1), Shape(200, 50, 2, 3, 4))
DTYPES = ("float64", "float32")
ACTIVATIONS = ("relu", "sigmoid")


@dataclass(frozen=True)
class Case:
    shape: Shape
    dtype: str
    activation: str

    def label(self) -> str:
        return f"{self.shape.label()} {self.dtype} {self.activation}"


@dataclass
class Problem:
    """The common starting point: the project's initial particles and data (peers copy them).

    ``theta`` has the project's state type (float64: the project keeps its state in float64 and
    computes in the case's dtype); a peer rounds it to the case's dtype, in which it computes
    and keeps its state."""
    case: Case
    theta: np.ndarray   # (R, m, k + d + 1): initial state
    x: np.ndarray       # (n, d), case dtype
    label: np.ndarray   # (n,) int64: +-1 (k = 1) or class index 0..k-1 (k > 1)
    weight: np.ndarray  # (n,) float64 p_j, summing to 1
    dt: float

    @property
    def shape(self) -> Shape:
        return self.case.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.case.dtype)

    def initial_parts(self) -> tuple:
        """Fresh contiguous (a, w, b) of the initial state in the case's dtype."""
        return tuple(np.array(part, dtype=self.dtype) for part in self.split(self.theta))

    def split(self, theta: np.ndarray) -> tuple:
        """Views (a, w, b) of a state: (R, m, k), (R, m, d), (R, m)."""
        k, d = self.shape.outputs, self.shape.input_dim
        return theta[..., :k], theta[..., k:k + d], theta[..., k + d]

    def state_and_data_bytes(self) -> int:
        return self.theta.nbytes + self.x.nbytes + self.label.nbytes + self.weight.nbytes


@dataclass
class Implementation:
    """One implementation of the step, built for one problem and holding its own state."""
    step: Callable[[], None]           # advance the state by one step; returns when it is done
    state: Callable[[], np.ndarray]    # the current state as an (R, m, k + d + 1) NumPy array
