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
