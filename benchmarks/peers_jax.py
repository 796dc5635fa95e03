"""JAX peer: ``jax.jit`` of the whole step, gradient by ``jax.value_and_grad``, replicas by
``jax.vmap``.

For one replica, with a (m, k), w (m, d), b (m,),

    risk(a, w, b) = sum_j p_j l(h(x_j), y_j),    h = sigma(w X^T + b 1^T)^T a / m,

with l = softplus(-2 y h) (logistic, y = +-1) or logsumexp(h) - h_y (softmax, y = class index).
The jitted step maps ``value_and_grad(risk)`` over replicas and returns
theta - dt m dR/dtheta. float64 needs ``jax_enable_x64``, switched on at import; float32 inputs
stay float32 under it.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from cases import Implementation, Problem

jax.config.update("jax_enable_x64", True)


def risk(a, w, b, x, label, p, activation_name: str):
    """sum_j p_j l(h(x_j), y_j) for one replica."""
    z = w @ x.T + b[:, None]
    s = jax.nn.relu(z) if activation_name == "relu" else jax.nn.sigmoid(z)
    h = s.T @ a / a.shape[0]
    if h.shape[-1] == 1:
        losses = jax.nn.softplus(-2 * label * h[:, 0])
    else:
        losses = (jax.nn.logsumexp(h, axis=-1)
                  - jnp.take_along_axis(h, label[:, None], axis=-1)[:, 0])
    return p @ losses


@partial(jax.jit, static_argnames=("activation_name",))
def step_all(a, w, b, x, label, p, dt, activation_name: str):
    """One gradient-descent step of every replica: theta <- theta - dt m dR/dtheta."""
    value_and_grad = jax.value_and_grad(partial(risk, activation_name=activation_name),
                                        argnums=(0, 1, 2))
    _, grads = jax.vmap(value_and_grad, in_axes=(0, 0, 0, None, None, None))(a, w, b, x, label, p)
    speed = dt * a.shape[1]
    return tuple(t - speed * g for t, g in zip((a, w, b), grads))


def make_step(problem: Problem) -> Implementation:
    dtype = problem.dtype
    current = [jnp.asarray(part) for part in problem.initial_parts()]
    label = jnp.asarray(problem.label if problem.shape.outputs > 1
                        else problem.label.astype(dtype))
    data = (jnp.asarray(problem.x), label, jnp.asarray(problem.weight.astype(dtype)))
    dt = np.asarray(problem.dt, dtype=dtype)

    def step() -> None:
        current[:] = step_all(*current, *data, dt, activation_name=problem.case.activation)
        jax.block_until_ready(current)

    def state() -> np.ndarray:
        a, w, b = (np.asarray(t) for t in current)
        return np.concatenate([a, w, b[..., None]], axis=-1)

    return Implementation(step=step, state=state)
