"""PyTorch CPU peers, batched over replicas with batched matrix products (one graph, no loop).

``torch``: autograd. The risk, summed over the independent replicas,

    R = sum_r sum_j p_j l(h_r(x_j), y_j),    h_r = sigma(W_r X^T + b_r 1^T)^T A_r / m,

is built from tensors a (R, m, k), w (R, m, d), b (R, m) with requires_grad; ``R.backward()``
gives dR/dtheta and the step is theta <- theta - dt m dR/dtheta under no_grad. The losses are
``softplus(-2 y h)`` (logistic, y = +-1) and ``cross_entropy`` (softmax, y = class index).

``torch-compile``: ``torch.compile`` (Inductor, default options) of the whole step written with
the explicit gradient formulas of :mod:`peers_numpy` (no autograd): Z = W X^T + b,
G = p dl/dH, v_a = -sigma(Z) G, C = (A G^T) * sigma'(Z), v_w = -C X, v_b = -C 1. Compilation
specialises on shapes and dtypes, so every case compiles anew; its time is reported apart.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from cases import Implementation, Problem

torch.set_num_threads(os.cpu_count())


def activation(name: str, z: torch.Tensor) -> torch.Tensor:
    return torch.relu(z) if name == "relu" else torch.sigmoid(z)


def risk(a, w, b, x, label, p, activation_name):
    """sum_r sum_j p_j l(h_r(x_j), y_j)."""
    s = activation(activation_name, w @ x.T + b.unsqueeze(-1))
    h = s.transpose(1, 2) @ a / a.shape[1]
    if h.shape[-1] == 1:
        losses = F.softplus(-2 * label * h[..., 0])
    else:
        losses = F.cross_entropy(h.transpose(1, 2), label.expand(h.shape[0], -1),
                                 reduction="none")
    return (losses * p).sum()


def _tensors(problem: Problem):
    """(a, w, b) copies of the initial state and (x, label, p) as torch tensors."""
    a, w, b = (torch.from_numpy(part) for part in problem.initial_parts())
    x = torch.from_numpy(problem.x)
    label = torch.from_numpy(problem.label)
    if problem.shape.outputs == 1:
        label = label.to(x.dtype)
    return (a, w, b), (x, label, torch.from_numpy(problem.weight).to(x.dtype))


def _state(a, w, b) -> np.ndarray:
    return torch.cat([a.detach(), w.detach(), b.detach().unsqueeze(-1)], dim=-1).numpy()


def make_autograd_step(problem: Problem) -> Implementation:
    (a, w, b), data = _tensors(problem)
    params = [t.requires_grad_() for t in (a, w, b)]
    speed = problem.dt * problem.shape.width  # v = -m grad, theta += dt v

    def step() -> None:
        risk(a, w, b, *data, problem.case.activation).backward()
        with torch.no_grad():
            for t in params:
                t -= speed * t.grad
                t.grad = None

    return Implementation(step=step, state=lambda: _state(a, w, b))


def explicit_step(a, w, b, x, label, p, dt: float, activation_name: str):
    """One step with the hand-written gradient; returns the new (a, w, b)."""
    z = w @ x.T + b.unsqueeze(-1)
    if activation_name == "relu":
        s, ds = torch.relu(z), (z > 0).to(z.dtype)
    else:
        s = torch.sigmoid(z)
        ds = s * (1 - s)
    h = s.transpose(1, 2) @ a / a.shape[1]
    if h.shape[-1] == 1:
        y = label.unsqueeze(-1)
        slope = -2 * y * torch.sigmoid(-2 * y * h)
    else:
        slope = torch.softmax(h, dim=-1) - F.one_hot(label, h.shape[-1]).to(h.dtype)
    g = p.unsqueeze(-1) * slope
    c = (a @ g.transpose(1, 2)) * ds
    return a - dt * (s @ g), w - dt * (c @ x), b - dt * c.sum(dim=-1)


def make_compiled_step(problem: Problem) -> Implementation:
    torch._dynamo.reset()  # forget earlier cases' graphs: each case compiles for its own shapes
    params, data = _tensors(problem)
    compiled = torch.compile(explicit_step)
    current = list(params)

    def step() -> None:
        current[:] = compiled(*current, *data, problem.dt, problem.case.activation)

    return Implementation(step=step, state=lambda: _state(*current))
