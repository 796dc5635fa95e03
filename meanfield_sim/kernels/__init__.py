"""Kernel back ends. A back end is a module exposing ``forward``, ``loss_pass`` and ``velocity``
with the signatures of :mod:`meanfield_sim.kernels.cpu`; :func:`get_backend` is the one switch
that picks it (``run.backend`` in the config)."""
from __future__ import annotations

from types import ModuleType

BACKENDS = ("cpu",)


def get_backend(name: str) -> ModuleType:
    if name == "cpu":
        from . import cpu
        return cpu
    raise ValueError(f"backend {name!r} is not available; choose one of {', '.join(BACKENDS)}")


PAIRS_PER_THREAD = 100_000
"""Particle-data pairs per gradient evaluation below which one more thread does not pay: a
parallel region costs tens of microseconds to start and synchronise, and far more when the cores
are oversubscribed (measured: the Section 5.1 run, m = 1000, n = 10, went from 1.6 s to 35 s with
two threads on two busy cores)."""


def choose_threads(pairs: int, limit: int = 0) -> int:
    """Threads for a problem of ``pairs`` = R * m * n particle-data pairs per evaluation:
    at most ``limit`` (0 = all Numba has), at least 1, and one per PAIRS_PER_THREAD pairs."""
    import numba

    available = numba.config.NUMBA_NUM_THREADS
    cap = available if limit <= 0 else min(limit, available)
    return max(1, min(cap, pairs // PAIRS_PER_THREAD))
