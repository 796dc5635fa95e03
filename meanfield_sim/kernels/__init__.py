"""Kernel back ends. A back end is a module (or an object, where it keeps state between calls)
exposing ``forward``, ``loss_pass`` and ``velocity`` with the signatures of
:mod:`meanfield_sim.kernels.cpu`; :func:`get_backend` is the one switch
that picks it, from ``run.backend`` and ``run.kernel`` in the config and the shape: on the CPU,
the exact sort-and-sweep kernels of :mod:`.sorted1d` for d = 1 and ReLU-type activations, the
Numba loops of :mod:`.cpu` for small d + k and the tiled matrix products of :mod:`.blocked` for
large."""
from __future__ import annotations

from types import ModuleType

BACKENDS = ("cpu", "cuda")


class BackendUnavailable(RuntimeError):
    """A backend was asked for that this installation or machine cannot run."""


def _modules(name: str) -> tuple:
    """Every kernel module of backend ``name``, the general one first."""
    if name == "cpu":
        from . import blocked, cpu, sorted1d
        return cpu, blocked, sorted1d
    if name == "cuda":
        return (_cuda_module(),)
    raise ValueError(f"backend {name!r} is not available; choose one of {', '.join(BACKENDS)}")


def _cuda_module() -> ModuleType:
    """kernels.cuda, after checking that numba-cuda is installed and a GPU (or Numba's CUDA
    simulator, NUMBA_ENABLE_CUDASIM=1) is there."""
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        raise BackendUnavailable("run.backend = 'cuda' needs numba-cuda, which is not "
                                 "installed: pip install 'meanfield-sim[cuda]'")
    from numba import cuda

    if not cuda.is_available():
        raise BackendUnavailable("run.backend = 'cuda': no CUDA GPU or driver found "
                                 "(numba.cuda.is_available() is False); use run.backend = 'cpu',"
                                 " or NUMBA_ENABLE_CUDASIM=1 for Numba's (slow) CUDA simulator")
    from . import cuda as cuda_kernels
    return cuda_kernels


SORTED_FROM_POINTS = {"relu": 200, "leaky_relu": 200, "flat_sigmoid": 400}
"""n from which run.kernel = 'auto' picks the sorted kernels, per activation they serve. Both
kernel families cost O(m) per data-point count: a pairwise evaluation some 0.2 to 0.3 ns per
pair, a sorted one some 20 ns (ReLU) or 70 ns (the flat sigmoid, in double-double) per particle
whatever n. Measured per gradient evaluation of the Section 5.1 flow, sorted against pairwise
speed: ReLU 0.66x at n = 100, 1.17x at 200 (m = 10^3), 0.99x at 200 (m = 10^4); the flat
sigmoid 0.61x at 200 and 0.82x at 400 (m = 10^3), 1.04x at 200 and 1.8x at 400 (m = 10^4),
1.55x to 2.8x at 800."""


def resolve_kernel(allowed: str, points: int, activation: str) -> str:
    """'sorted' or 'pairwise' from the config's derived kernel ('auto': sorted from
    SORTED_FROM_POINTS[activation] data points on)."""
    if allowed == "auto":
        return "sorted" if points >= SORTED_FROM_POINTS[activation] else "pairwise"
    return allowed


def get_backend(name: str, input_dim: int = 1, outputs: int = 1, kernel: str = "pairwise"):
    """The kernels for backend ``name``, networks with d = ``input_dim`` inputs and
    k = ``outputs`` outputs, and the resolved ``run.kernel``: for 'sorted' a fresh
    :class:`.sorted1d.SortedKernels` (it holds per-flow state), else a module."""
    if kernel == "sorted":
        from .sorted1d import SortedKernels
        return SortedKernels()
    modules = _modules(name)
    if len(modules) == 1:
        return modules[0]
    loops, blocked = modules[:2]
    return blocked if blocked.use_blocked(input_dim, outputs) else loops


def warm_up(name: str, dtype) -> None:
    """Compile (or load from Numba's disk cache) every kernel that backend ``name`` may pick,
    for storage type ``dtype``: a sweep's first task then compiles what all its shapes need."""
    for module in _modules(name):
        module.warm_up(dtype)


PAIRS_PER_THREAD = 100_000
"""Particle-data pairs per gradient evaluation below which one more thread does not pay: a
parallel region costs tens of microseconds to start and synchronise, and far more when the cores
are oversubscribed (measured: the Section 5.1 run, m = 1000, n = 10, went from 1.6 s to 35 s with
two threads on two busy cores)."""


SORTED_PAIRS_PER_PARTICLE = 100
"""The sorted kernels' work per particle (a range check or lookup, a scatter, a few range sums:
some 20 ns), in pairs of the pairwise kernels, for :func:`choose_threads`."""


def choose_threads(pairs: int, limit: int = 0) -> int:
    """Threads for a problem of ``pairs`` = R * m * n particle-data pairs per evaluation (or
    its equivalent, R (m + n) SORTED_PAIRS_PER_PARTICLE for the sorted kernels): at most
    ``limit`` (0 = all Numba has), at least 1, and one per PAIRS_PER_THREAD pairs."""
    import numba

    available = numba.config.NUMBA_NUM_THREADS
    cap = available if limit <= 0 else min(limit, available)
    return max(1, min(cap, pairs // PAIRS_PER_THREAD))


_threads_set = None


def use_threads(count: int) -> None:
    """numba.set_num_threads(count), skipped when the last call here set the same count (the
    call costs microseconds, as much as a whole small evaluation). Numba keeps the count per
    Python thread; the kernels are driven from one thread, the main one."""
    global _threads_set
    if count != _threads_set:
        import numba

        numba.set_num_threads(count)
        _threads_set = count
