"""The mean-field network flow with its state and data on a CUDA device (``run.backend =
"cuda"``): the vector field of :class:`.network.ParticleFlow`, computed by
:mod:`meanfield_sim.kernels.cuda` on device arrays.

The integrator's state, stages and FSAL stage are float64 device arrays (its arithmetic is
``kernels.cuda.DEVICE_ARRAYS``); ``velocity`` copies nothing between host and device (the
log-scales stay on the device too), so a step moves only its finite flag and error norms to
the host. Records and checkpoints copy the state to the host (``to_host``), and
``evaluate``, ``outputs_at`` and ``evaluate_on`` accept host or device states and return host
arrays, for the recorder.
"""
from __future__ import annotations

import numpy as np

from ..model.data import Dataset
from ..model.network import NetworkSpec
from .base import Evaluation
from .network import ParticleFlow


class DeviceParticleFlow(ParticleFlow):
    """:class:`ParticleFlow` on the GPU: same constructor, same vector field."""

    def __init__(self, spec: NetworkSpec, data: Dataset, replicas: int, dtype=np.float64,
                 threads: int = 0):
        super().__init__(spec, data, replicas, dtype=dtype, backend="cuda", threads=threads)
        from numba import cuda

        K = self.kernels
        self.array_ops = K.DEVICE_ARRAYS
        self._forward, self._velocity_sums, self._layout = K.pair_kernels(self.dtype)
        R, n, k, m, p = replicas, data.n, spec.outputs, spec.width, spec.params_per_particle
        self._x, self._xT = cuda.to_device(self.x), cuda.to_device(self.xT)
        self._label, self._log_weight = cuda.to_device(self.label), cuda.to_device(self.log_weight)
        self._trained = cuda.to_device(self.train_mask.astype(np.int8))
        self._thetaT = cuda.device_array((R, p, m), dtype=self.dtype)
        self._sums = cuda.device_array((R, p, m), dtype=self.dtype)
        self._h_dev = cuda.device_array((R, n, k), dtype=self.dtype)
        self._dualT = cuda.device_array((R, k, n), dtype=self.dtype)
        self._scalars_dev = [cuda.device_array(R) for _ in range(3)]  # risk, log risk, log scale
        self._param = self.dtype.type(spec.activation_param)  # the pair kernels' scalars: in
        # the storage type, so that float32 kernels hold no float64 at all

    def _device_layout(self, theta):
        """The kernels' (R, p, m) storage-type particles from a host or device state."""
        theta = self.array_ops.to_device(theta)
        K = self.kernels
        self._layout[K.thread_grid(theta.shape[0] * theta.shape[1]), K.THREADS](theta,
                                                                                self._thetaT)
        return self._thetaT

    def _outputs(self, thetaT, x, out) -> None:
        s, K = self.spec, self.kernels
        self._forward[K.block_grid(x.shape[0] * thetaT.shape[0]), K.THREADS](
            thetaT, x, s.outputs, s.act_id, self._param, self.dtype.type(s.scale), out)

    def _evaluate_device(self, thetaT) -> None:
        """Forward and loss pass on the device into the flow's device buffers."""
        K = self.kernels
        self._outputs(thetaT, self._x, self._h_dev)
        K.loss_pass[K.block_grid(thetaT.shape[0]), K.THREADS](self._h_dev, self._label, self._log_weight,
                                                self.spec.loss_id, self._dualT,
                                                *self._scalars_dev)

    def evaluate(self, theta) -> Evaluation:
        """Forward and loss pass; host arrays (fresh copies)."""
        self._evaluate_device(self._device_layout(theta))
        risk, log_risk, log_scale = (a.copy_to_host() for a in self._scalars_dev)
        h = self._h_dev.copy_to_host().astype(np.float64)
        dual = self._dualT.copy_to_host().astype(np.float64).transpose(0, 2, 1)
        return Evaluation(h, risk, log_risk, np.ascontiguousarray(dual), log_scale)

    def velocity(self, theta, out):
        """Write d theta/dt at the device state ``theta`` into the device array ``out``."""
        K, s = self.kernels, self.spec
        thetaT = self._device_layout(theta)
        self._evaluate_device(thetaT)
        grid = K.thread_grid(thetaT.shape[0] * s.width)
        self._velocity_sums[grid, K.THREADS](thetaT, self._xT, self._dualT, s.outputs, s.act_id,
                                             self._param, self._sums)
        K.write_velocity[grid, K.THREADS](self._sums, self._scalars_dev[2], self._trained, out)
        self.grad_evals += 1
        return out

    def outputs_at(self, theta, points: np.ndarray) -> np.ndarray:
        """h(points) for every replica, (R, len(points), k) float64 on the host."""
        from numba import cuda

        pts = cuda.to_device(np.ascontiguousarray(points, dtype=self.dtype))
        thetaT = self._device_layout(theta)
        out = cuda.device_array((thetaT.shape[0], pts.shape[0], self.spec.outputs),
                                dtype=self.dtype)
        self._outputs(thetaT, pts, out)
        return out.copy_to_host().astype(np.float64)
