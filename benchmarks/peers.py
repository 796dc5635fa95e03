"""The peers by name, and which of them this environment can run.

A peer is a function problem -> Implementation in one of the ``peers_*`` modules. A peer whose
library (torch, jax) is not installed is *missing*: reported, never an error.
"""
from __future__ import annotations

import importlib
from typing import Callable

from cases import Implementation, Problem

PEERS = {  # name: (module, factory, library it needs)
    "numpy": ("peers_numpy", "make_step", "numpy"),
    "torch": ("peers_torch", "make_autograd_step", "torch"),
    "torch-compile": ("peers_torch", "make_compiled_step", "torch"),
    "jax": ("peers_jax", "make_step", "jax"),
}
PeerFactory = Callable[[Problem], Implementation]


def load_peers(names) -> tuple[dict[str, PeerFactory], dict[str, str]]:
    """({name: factory} of the peers that import, {name: why missing} of the others)."""
    factories, missing = {}, {}
    for name in names:
        module_name, factory, library = PEERS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != library and not (exc.name or "").startswith(library + "."):
                raise  # a broken peer module is a bug, not a missing library
            missing[name] = f"{library} is not installed"
            continue
        factories[name] = getattr(module, factory)
    return factories, missing
