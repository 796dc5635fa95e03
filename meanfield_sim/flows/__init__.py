"""Flows: the vector fields the integrators step. :func:`build_flow` picks one by
``model.kind`` and returns it with its initial state."""
from __future__ import annotations

import numpy as np

from ..model.data import build_dataset


def _network(cfg, data):
    from ..model.network import initial_particles, network_spec
    spec = network_spec(cfg)
    dtype, run = np.dtype(cfg["run"]["dtype"]), cfg["run"]
    if run["backend"] == "cuda":
        from .device_network import DeviceParticleFlow
        flow = DeviceParticleFlow(spec, data, run["replicas"], dtype=dtype)
    else:
        from .network import ParticleFlow
        flow = ParticleFlow(spec, data, run["replicas"], dtype=dtype, backend=run["backend"],
                            threads=run["threads"], kernel=cfg["derived"]["kernel"])
    return flow, initial_particles(cfg, spec, np.float64)  # the state is float64 (see flow)


def _final_layer(cfg, data):
    from .final_layer import FinalLayerFlow
    flow = FinalLayerFlow.from_config(cfg, data)
    return flow, flow.initial_state(cfg)


def _penultimate_layer(cfg, data):
    from .penultimate import PenultimateFlow
    flow = PenultimateFlow.from_config(cfg, data)
    return flow, flow.initial_state(cfg)


FLOW_KINDS = {"network": _network, "final_layer": _final_layer,
              "penultimate_layer": _penultimate_layer}


def build_flow(cfg: dict):
    """(flow, initial state) described by a resolved config; the state is projected onto the
    flow's constraint set."""
    flow, theta = FLOW_KINDS[cfg["model"]["kind"]](cfg, build_dataset(cfg))
    flow.project(theta)
    return flow, theta
