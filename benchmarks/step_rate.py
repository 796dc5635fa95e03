"""Gradient evaluations per second of meanfield-sim's kernels against a NumPy reference.

One "gradient evaluation" is a forward pass, the loss pass and the particle velocities: the unit
of work of every integrator step. The NumPy reference is the vectorised way a researcher would
write the same velocity, materialising the m x n pre-activation matrix. Both run in this process
on the same inputs; the script checks they agree, then prints medians and the ratio.

    python benchmarks/step_rate.py --m 10000 --n 1000 --d 1 --k 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from meanfield_sim import config
from meanfield_sim.runner import build_flow


def numpy_velocity(theta, x, label, weight, k, scale):
    """ReLU + logistic (k = 1) velocity, vectorised over the (m, n) matrix, one replica."""
    a, w, b = theta[:, :k], theta[:, k:-1], theta[:, -1]
    z = w @ x.T + b[:, None]                      # (m, n)
    s = np.maximum(z, 0.0)
    h = scale * (a[:, 0] @ s)                     # (n,)
    u = label * h
    g = weight * (-2.0 * label) / (1.0 + np.exp(2.0 * u))   # p_j dl/dh
    ds = (z > 0).astype(z.dtype)
    coef = (a[:, 0:1] * g[None, :]) * ds          # (m, n)
    v = np.empty_like(theta)
    v[:, 0] = -(s @ g)
    v[:, k:-1] = -(coef @ x)
    v[:, -1] = -coef.sum(axis=1)
    return v


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=1)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    cfg = config.loads(f"""
[run]
t_end = 1.0
replicas = {args.replicas}
dtype = "{args.dtype}"
[model]
width = {args.m}
activation = "relu"
loss = "logistic"
[data]
kind = "gaussian_mixture"
num_classes = 2
dim = {args.d}
points_per_class = {args.n // 2}
""")
    flow, theta = build_flow(cfg)
    out = np.empty_like(theta)
    t0 = time.perf_counter()
    flow.velocity(theta, out)
    first = time.perf_counter() - t0
    d, k = flow.spec.input_dim, flow.spec.outputs
    ref = numpy_velocity(theta[0], flow.x, flow.label, flow.data.weight, k, flow.spec.scale)
    err = np.abs(out[0] - ref).max() / np.abs(ref).max()
    ours = median_time(lambda: flow.velocity(theta, out), args.repeats)
    theirs = median_time(lambda: [numpy_velocity(theta[r], flow.x, flow.label, flow.data.weight,
                                                 k, flow.spec.scale)
                                  for r in range(args.replicas)], max(3, args.repeats // 4))
    pairs = args.replicas * args.m * flow.data.n
    print(f"m = {args.m}, n = {flow.data.n}, d = {d}, k = {k}, R = {args.replicas}, "
          f"{args.dtype}; first call (compile or cache load) {first:.2f} s; "
          f"max relative difference to NumPy {err:.1e}")
    print(f"meanfield-sim: {ours * 1e3:8.3f} ms per gradient evaluation  "
          f"({1 / ours:8.1f} evals/s, {pairs / ours / 1e9:.2f} G particle-data pairs/s)")
    print(f"NumPy (m x n): {theirs * 1e3:8.3f} ms per gradient evaluation  "
          f"({1 / theirs:8.1f} evals/s)")
    print(f"ratio NumPy / meanfield-sim: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
