"""Compiling the kernels before a batch starts (``meanfield-sim warmup``).

Numba compiles a kernel once per type signature and keeps the machine code in its disk cache
(``NUMBA_CACHE_DIR`` when set, else beside the package's sources). The kernels take the
activation and loss as integers, so the signatures of a sweep differ only in the model kind and
the storage type: warming one task of each (kind, dtype) compiles all a sweep needs. Numba
writes each cache entry to a temporary file and renames it into place, so tasks that start
together read either no entry (and compile) or a whole one.
"""
from __future__ import annotations

import time

from ..flows import build_flow


def signature(cfg: dict) -> tuple:
    return cfg["model"]["kind"], cfg["run"]["dtype"], cfg["run"]["backend"]


def warm_up(tasks) -> list:
    """Build and warm the flow of one task per signature; [(signature, seconds)]."""
    done = {}
    for task in tasks:
        sig = signature(task.cfg)
        if sig not in done:
            began = time.perf_counter()
            flow, _ = build_flow(task.cfg)
            flow.warm_up()
            done[sig] = time.perf_counter() - began
    return list(done.items())
