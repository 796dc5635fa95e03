"""CUDA kernels (numba-cuda) for the two-layer network, and the integrator's state arithmetic
on the device. Imported only for ``run.backend = "cuda"``.

The passes are those of :mod:`.cpu` and compute the same sums (``forward``: h_rjq = s_m
sum_i a_riq sigma(w_ri . x_j + b_ri); ``loss_pass``: risk and dual weights in scaled form;
``velocity_sums`` + ``write_velocity``: v_ri = -exp(log_scale_r) sum_j (g_rj sigma(z_ij),
(g_rj . a_ri) sigma'(z_ij) x_j, (g_rj . a_ri) sigma'(z_ij))), with the same per-pair arithmetic:
the activations and losses of :mod:`meanfield_sim.model` are called from the device code as
they are from the CPU kernels (numba-cuda compiles them for the GPU), and only ``fastexp``'s
exponentials are replaced by the device's own (``math.exp``, libdevice).

Precision. The state the integrator steps is float64 on the device. The pair kernels
(``forward``, ``velocity_sums``) compute in the storage type ``run.dtype`` and, for float32,
contain no float64 instruction at all (``tests/test_cuda_backend.py`` reads their PTX): each
thread sums its terms in blocks of ``FLUSH`` into a running total (two float32 levels), and a
block adds its threads' totals by a pairwise tree. The O(n) loss pass and the O(m p) layout and
write-back passes run in float64.

Layout: the particles are laid out as thetaT (R, p, m) in the storage type by ``layout``, one
thread per particle, from the float64 state (R, m, p); ``velocity_sums`` runs one thread per
(replica, particle) over all data points and writes unscaled sums (R, p, m); ``write_velocity``
scales them by -exp(log_scale_r) into the float64 stage buffer (R, m, p). ``forward`` runs a
block per (data point, replica) whose threads stride over the particles.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import cuda, float32, float64, types
from numba.cuda.core import config as cuda_config
from numba.extending import overload

from ..model import fastexp
from ..model.activations import activation, activation_and_slope
from ..model.losses import binary_loss, logsumexp_except, softplus_terms

SIMULATOR = bool(cuda_config.ENABLE_CUDASIM)  # Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)
THREADS = 4 if SIMULATOR else 128
"""Threads per block, a power of two (the block sums are pairwise trees). The simulator runs
each thread as a Python thread: 4 keep its tests fast and still stride, flush and reduce."""
FLUSH = 3 if SIMULATOR else 64
"""Terms a thread sums before adding them to its running total (3 under the simulator, so that
tiny test problems cross several flushes)."""
MAX_BLOCKS = 1 if SIMULATOR else 1 << 20
"""Most blocks one launch asks for; every kernel strides over its items beyond the grid. (The
simulator's cost is per block, so it gets one.)"""
ROWS = 16  # accumulators per thread: outputs (forward) or velocity rows; more run in chunks


@overload(fastexp.fast_exp, target="cuda", inline="always")
def _device_exp(x):
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


@overload(fastexp.fast_expm1, target="cuda", inline="always")
def _device_expm1(x):
    if isinstance(x, types.Float):
        return lambda x: math.expm1(x)
    return None


@overload(fastexp.fast_exp_expm1, target="cuda", inline="always")
def _device_exp_expm1(x):
    if isinstance(x, types.Float):
        return lambda x: (math.exp(x), math.expm1(x))
    return None


# a CPU function that takes an array, as a device function (the simulator cannot pass its
# device arrays to a CPU-compiled function; numba-cuda compiles either form the same way)
_logsumexp_except = cuda.jit(device=True)(logsumexp_except.py_func)

NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


@lru_cache(maxsize=None)
def pair_kernels(dtype) -> tuple:
    """(forward, velocity_sums, layout) for storage type ``dtype``: the accumulators' type is
    a compile-time constant of the kernels, so each storage type has its own."""
    real = NUMBA_TYPES[np.dtype(dtype)]

    @cuda.jit(device=True)
    def counted(acc, total, rows, count):
        """One more term is in acc: every FLUSH terms acc[:rows] moves into total[:rows] (the
        two-level sum of the module docstring); returns the new count."""
        count += 1
        if count < FLUSH:
            return count
        for q in range(rows):
            total[q] += acc[q]
            acc[q] = 0
        return 0

    @cuda.jit(device=True)
    def block_sum(buffer, rows):
        """buffer[q, 0] <- sum over threads of buffer[q, :] (pairwise tree), q < rows."""
        tid = cuda.threadIdx.x
        step = THREADS // 2
        while step > 0:
            cuda.syncthreads()
            if tid < step:
                for q in range(rows):
                    buffer[q, tid] += buffer[q, tid + step]
            step //= 2
        cuda.syncthreads()

    @cuda.jit
    def forward(thetaT, x, k, act_id, act_param, scale, h_out):
        """h_out[r, j, q] = scale sum_i a_riq sigma(z_rij): a block per (r, j) (grid-stride),
        its threads striding over the particles. act_param and scale in the storage type."""
        tid = cuda.threadIdx.x
        R, p, m = thetaT.shape
        n, d = x.shape
        param = act_param
        partial = cuda.shared.array((ROWS, THREADS), real)
        acc = cuda.local.array(ROWS, real)
        total = cuda.local.array(ROWS, real)
        for item in range(cuda.blockIdx.x, R * n, cuda.gridDim.x):
            r = item // n
            j = item - r * n
            for q0 in range(0, k, ROWS):
                rows = min(ROWS, k - q0)
                for q in range(rows):
                    acc[q] = 0
                    total[q] = 0
                count = 0
                for i in range(tid, m, THREADS):
                    z = thetaT[r, p - 1, i]
                    for l in range(d):
                        z += thetaT[r, k + l, i] * x[j, l]
                    s = activation(z, act_id, param)
                    for q in range(rows):
                        acc[q] += thetaT[r, q0 + q, i] * s
                    count = counted(acc, total, rows, count)
                for q in range(rows):
                    partial[q, tid] = total[q] + acc[q]
                block_sum(partial, rows)
                for q in range(tid, rows, THREADS):
                    h_out[r, j, q0 + q] = scale * partial[q, 0]
                cuda.syncthreads()  # partial is refilled by the next chunk or item

    @cuda.jit
    def velocity_sums(thetaT, xT, dualT, k, act_id, act_param, sums):
        """sums[r, e, i]: rows a_q: sum_j g_rqj sigma(z_rij); rows w_l: sum_j c_rij x_jl;
        row b: sum_j c_rij, with c = (g_rj . a_ri) sigma'(z_rij); a thread per (r, i)
        (grid-stride), walking all data points. act_param in the storage type."""
        R, p, m = thetaT.shape
        d, n = xT.shape
        param = act_param
        acc = cuda.local.array(ROWS, real)
        total = cuda.local.array(ROWS, real)
        for item in range(cuda.grid(1), R * m, cuda.gridsize(1)):
            r = item // m
            i = item - r * m
            bias = thetaT[r, p - 1, i]
            for e0 in range(0, p, ROWS):
                rows = min(ROWS, p - e0)
                for e in range(rows):
                    acc[e] = 0
                    total[e] = 0
                count = 0
                for j in range(n):
                    z = bias
                    for l in range(d):
                        z += thetaT[r, k + l, i] * xT[l, j]
                    s, slope = activation_and_slope(z, act_id, param)
                    c = real(0)
                    if e0 + rows > k:  # this chunk holds rows w or b
                        for q in range(k):
                            c += dualT[r, q, j] * thetaT[r, q, i]
                        c *= slope
                    for e in range(rows):
                        row = e0 + e
                        if row < k:
                            acc[e] += dualT[r, row, j] * s
                        elif row < p - 1:
                            acc[e] += c * xT[row - k, j]
                        else:
                            acc[e] += c
                    count = counted(acc, total, rows, count)
                for e in range(rows):
                    sums[r, e0 + e, i] = total[e] + acc[e]

    @cuda.jit
    def layout(theta, thetaT):
        """thetaT[r, e, i] = theta[r, i, e] in the storage type: a thread per (r, i)."""
        R, m, p = theta.shape
        for item in range(cuda.grid(1), R * m, cuda.gridsize(1)):
            r = item // m
            i = item - r * m
            for e in range(p):
                thetaT[r, e, i] = real(theta[r, i, e])

    return forward, velocity_sums, layout


@cuda.jit
def write_velocity(sums, log_scale, trained, v_out):
    """v_out[r, i, e] = -exp(log_scale[r]) sums[r, e, i] for trained rows e, else 0: a thread
    per (r, i) (grid-stride)."""
    R, m, p = v_out.shape
    for item in range(cuda.grid(1), R * m, cuda.gridsize(1)):
        r = item // m
        i = item - r * m
        speed = -math.exp(log_scale[r])
        for e in range(p):
            v_out[r, i, e] = speed * float64(sums[r, e, i]) if trained[e] else 0.0


@cuda.jit(device=True)
def _log_dual(h, j, q, y, loss_id, lse_all, lse_other):
    """log |dl/dh_q| at point j (without its weight) and the sign of dl/dh_q."""
    if loss_id == 2:
        if q == y:
            return lse_other - lse_all, -1.0
        return float64(h[j, q]) - lse_all, 1.0
    return binary_loss(y * float64(h[j, 0]), loss_id)[2], -float64(y)


@cuda.jit(device=True)
def _point_loss(h, j, y, loss_id):
    """(l, log l, logsumexp_q h_q, logsumexp_{q != y} h_q) at point j (the last two for
    softmax_ce only)."""
    if loss_id == 2:
        lse_all = _logsumexp_except(h[j], -1)
        lse_other = _logsumexp_except(h[j], y)
        v = lse_other - float64(h[j, y])
        loss, log_loss, _ = softplus_terms(v)
        return loss, log_loss, lse_all, lse_other
    loss, log_loss, _ = binary_loss(y * float64(h[j, 0]), loss_id)
    return loss, log_loss, 0.0, 0.0


@cuda.jit(device=True)
def _block_reduce(buffer, value, take_max):
    """The sum (or max) of ``value`` over the block's threads, returned to every thread."""
    tid = cuda.threadIdx.x
    buffer[tid] = value
    step = THREADS // 2
    while step > 0:
        cuda.syncthreads()
        if tid < step:
            other = buffer[tid + step]
            buffer[tid] = max(buffer[tid], other) if take_max else buffer[tid] + other
        step //= 2
    cuda.syncthreads()
    result = buffer[0]
    cuda.syncthreads()
    return result


@cuda.jit
def loss_pass(h, label, log_weight, loss_id, dualT, risk_out, log_risk_out, log_scale_out):
    """:func:`meanfield_sim.kernels.cpu.loss_pass` on the device, a block per replica
    (grid-stride); the dual weights go to dualT (R, k, n) in the storage type, scaled into
    [-1, 1]. Two passes over the points: the first finds the largest log-magnitudes, the second
    recomputes each point's loss (O(n k), against a scratch array of n entries per replica)
    and scales by them."""
    tid = cuda.threadIdx.x
    R, n, k = h.shape
    buffer = cuda.shared.array(THREADS, float64)
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        hr = h[r]
        top, top_term, risk = -math.inf, -math.inf, 0.0
        for j in range(tid, n, THREADS):
            lw = log_weight[j]
            if lw == -math.inf:
                continue
            y = label[j]
            loss, log_loss, lse_all, lse_other = _point_loss(hr, j, y, loss_id)
            risk += math.exp(lw) * loss
            top_term = max(top_term, lw + log_loss)
            for q in range(k):
                top = max(top, lw + _log_dual(hr, j, q, y, loss_id, lse_all, lse_other)[0])
        top = _block_reduce(buffer, top, True)
        top_term = _block_reduce(buffer, top_term, True)
        risk = _block_reduce(buffer, risk, False)
        terms = 0.0
        for j in range(tid, n, THREADS):
            lw = log_weight[j]
            y = label[j]
            if lw == -math.inf:
                for q in range(k):
                    dualT[r, q, j] = 0
                continue
            loss, log_loss, lse_all, lse_other = _point_loss(hr, j, y, loss_id)
            terms += math.exp(lw + log_loss - top_term)
            for q in range(k):
                log_mag, sign = _log_dual(hr, j, q, y, loss_id, lse_all, lse_other)
                dualT[r, q, j] = sign * math.exp(lw + log_mag - top)
        terms = _block_reduce(buffer, terms, False)
        if tid == 0:
            log_scale_out[r] = top
            risk_out[r] = risk
            log_risk_out[r] = top_term + math.log(terms)


def thread_grid(items: int) -> int:
    """Blocks of a launch with one thread per item (the kernels stride beyond the grid)."""
    return max(1, min(MAX_BLOCKS, (items + THREADS - 1) // THREADS))


def block_grid(items: int) -> int:
    """Blocks of a launch with one block per item (the kernels stride beyond the grid)."""
    return max(1, min(MAX_BLOCKS, items))


def warm_up(dtype) -> None:
    """Compile every kernel for storage type ``dtype`` on a one-particle, one-point problem:
    the kernels specialise on types only, so this covers every shape, activation and loss."""
    real = np.dtype(dtype)
    forward, velocity_sums, layout = pair_kernels(real)
    grid = thread_grid(1)
    thetaT, sums = cuda.device_array((1, 3, 1), real), cuda.device_array((1, 3, 1), real)
    layout[grid, THREADS](cuda.to_device(np.zeros((1, 1, 3))), thetaT)
    x = cuda.to_device(np.zeros((1, 1), real))
    h, dualT = cuda.device_array((1, 1, 1), real), cuda.device_array((1, 1, 1), real)
    zero, one = real.type(0.0), real.type(1.0)
    forward[1, THREADS](thetaT, x, 1, 0, zero, one, h)
    risk, log_risk, log_scale = (cuda.device_array(1) for _ in range(3))
    loss_pass[1, THREADS](h, cuda.to_device(np.ones(1, np.int64)), cuda.to_device(np.zeros(1)),
                          0, dualT, risk, log_risk, log_scale)
    velocity_sums[grid, THREADS](thetaT, x, dualT, 1, 0, zero, sums)
    write_velocity[grid, THREADS](sums, log_scale, cuda.to_device(np.ones(3, np.int8)),
                                  cuda.device_array((1, 1, 3)))
    y = cuda.device_array((1, 3))
    DEVICE_ARRAYS.combine(y, y, cuda.device_array((1, 1, 3)), np.ones(1), 1)
    DEVICE_ARRAYS.error_norms(y, y, cuda.device_array((1, 1, 3)), np.ones(1),
                              cuda.to_device(np.ones(3)), 1e-9, 1e-6, np.empty(1))


# ----------------------------------------------------------------------------- state arithmetic

@cuda.jit
def _combine(out, y0, stages, coefs, count, bad):
    """out = y0 + sum_{s < count, coefs[s] != 0} coefs[s] stages[s] (flat arrays), in that
    order; bad[0] = 1 if an entry of out is not finite."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        v = y0[i]
        for s in range(count):
            if coefs[s] != 0.0:
                v += coefs[s] * stages[s, i]
        out[i] = v
        if v - v != 0.0:
            bad[0] = 1


@cuda.jit
def _error_norms(y0, y1, stages, coefs, weight, atol, rtol, out):
    """out[r] = sqrt(sum_i weight_i ratio_ri^2 / sum_i weight_i), a block per replica
    (grid-stride; see integrate.arithmetic.error_norms)."""
    tid = cuda.threadIdx.x
    buffer = cuda.shared.array(THREADS, float64)
    for r in range(cuda.blockIdx.x, y0.shape[0], cuda.gridDim.x):
        total, trained = 0.0, 0.0
        for i in range(tid, y0.shape[1], THREADS):
            trained += weight[i]
            err = 0.0
            for s in range(stages.shape[0]):
                if coefs[s] != 0.0:
                    err += coefs[s] * stages[s, r, i]
            ratio = err / (atol + rtol * max(abs(y0[r, i]), abs(y1[r, i])))
            total += weight[i] * ratio * ratio
        total = _block_reduce(buffer, total, False)
        trained = _block_reduce(buffer, trained, False)
        if tid == 0:
            out[r] = math.sqrt(total / trained) if trained > 0.0 else 0.0


def _is_device(a) -> bool:
    """Whether ``a`` is a device array (a numba-cuda device array, or the simulator's)."""
    return not isinstance(a, np.ndarray)


class DeviceArrays:
    """What the integrators do with state arrays (``integrate.arithmetic.HostArrays``' twin),
    on float64 device arrays: the state, the stages and the FSAL stage stay on the GPU; a step
    copies back only its finite flag and the R error norms."""

    def __init__(self):
        self._bad = None

    @staticmethod
    def to_device(a):
        if a is None or _is_device(a):
            return a
        return cuda.to_device(np.ascontiguousarray(a))

    @staticmethod
    def to_host(a):
        return a.copy_to_host() if a is not None and _is_device(a) else a

    @staticmethod
    def empty(shape, dtype=np.float64):
        return cuda.device_array(shape, dtype=dtype)

    def empty_like(self, a):
        return cuda.device_array(a.shape, dtype=a.dtype)

    def copy(self, a):
        out = self.empty_like(a)
        out.copy_to_device(a)
        return out

    @staticmethod
    def assign(dst, src) -> None:
        dst.copy_to_device(src)

    def combine(self, out, y0, stages, coefs, count, check: bool = True) -> bool:
        """out = y0 + sum_s coefs[s] stages[s]; whether out is all finite (with ``check``: the
        flag is copied back only then; otherwise True)."""
        if self._bad is None:
            self._bad = cuda.to_device(np.zeros(1, dtype=np.int32))
        elif check:
            self._bad.copy_to_device(np.zeros(1, dtype=np.int32))
        size = out.size
        flat = stages.reshape(stages.shape[0], size)
        _combine[thread_grid(size), THREADS](
            out.reshape(size), y0.reshape(size), flat, cuda.to_device(np.asarray(coefs)),
            count, self._bad)
        return int(self._bad.copy_to_host()[0]) == 0 if check else True

    def error_norms(self, y0, y1, stages, coefs, weight, atol, rtol, out) -> None:
        R = y0.shape[0]
        N = y0.size // R
        norms = cuda.device_array(R)
        _error_norms[block_grid(R), THREADS](y0.reshape(R, N), y1.reshape(R, N),
                                 stages.reshape(stages.shape[0], R, N),
                                 cuda.to_device(np.asarray(coefs)), weight, atol, rtol, norms)
        out[...] = norms.copy_to_host()


DEVICE_ARRAYS = DeviceArrays()
