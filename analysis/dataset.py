"""A run file as one ``xarray.Dataset``: every group merged, named dimensions, committed records.

Dimensions: ``time`` (the records), ``replica``, ``sample`` (data points), ``output`` (k),
``input`` (d), and, where recorded, ``grid_point``, ``particle`` (network snapshots) or
``feature`` (penultimate-layer snapshots). Coordinates are the file's dimension scales (``time``
is the flow's physical time, ``replica`` the global replica index). Variables keep their
``long_name``; the root attributes (status, seed, versions, the resolved config as TOML under
``config``) become the Dataset's attributes.

Only the first ``n_records`` frames are returned, so a file whose run is going or was stopped
reads as the records it vouches for. Reading takes no HDF5 lock: it works while a run writes.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from meanfield_sim.io.h5file import open_run_file, text_of
from meanfield_sim.io.publish import existing_run_file
from meanfield_sim.io.reader import dim_names

GROUPS = ("data", "observables", "particles/network", "particles/features")
TIME_DESCRIPTION = ("the time t of d theta/dt = -(1/s_m) grad R: for the mean-field scaling "
                    "that of the Wasserstein gradient flow; for optimisers steps x dt")


# Every axis but time is an index (units "1", dimensionless); so is every variable: the model has
# no physical units, its inputs, outputs, weights and risks are plain numbers.
COORDINATES = {"replica": "global replica index r (seeds SeedSequence(run.seed, (r,)))",
               "sample": "training point index j", "test_sample": "held-out test point index",
               "output": "output component (class for k > 1)", "input": "input coordinate",
               "grid_point": "evaluation grid point index", "particle": "neuron index i",
               "feature": "penultimate-layer feature coordinate"}

COUNTERS = {"step": "integrator steps (or optimiser iterations) so far",
            "grad_evals": "gradient evaluations so far"}


def open_run(path: str | Path) -> xr.Dataset:
    """The run file at ``path`` (or, if only the run's partial file exists, ``path.part``) as
    an in-memory Dataset of its committed records."""
    path = existing_run_file(path)
    with open_run_file(path) as f:
        n = int(f.attrs["n_records"])
        coords, variables = {}, {}
        for group in GROUPS:
            if group in f:
                _read_group(f[group], n, coords, variables)
        attrs = {key: _plain(value) for key, value in f.attrs.items()}
        attrs["config"] = text_of(f["parameters/config"][()])
    attrs["file"] = str(path)
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    ds["time"].attrs.update(long_name="time t", units="flow time", description=TIME_DESCRIPTION)
    for name, long_name in COORDINATES.items():
        if name in ds.coords:
            ds[name].attrs.update(long_name=long_name, units="1")
    for name in ds.data_vars:
        ds[name].attrs.setdefault("units", "1")
        ds[name].attrs.setdefault("long_name", COUNTERS.get(name, name))
    return ds


def _read_group(group: h5py.Group, n: int, coords: dict, variables: dict) -> None:
    """Add a group's scales to ``coords`` and its other datasets to ``variables``; a name seen
    in an earlier group (the shared time axis, step, grad_evals, replica, ...) is kept once."""
    for name, ds in group.items():
        if not isinstance(ds, h5py.Dataset) or name in coords or name in variables:
            continue
        attrs = {k: _plain(v) for k, v in ds.attrs.items()
                 if k not in ("CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST")}
        if h5py.h5ds.is_scale(ds.id):
            values = ds[:n] if name == "time" else ds[()]
            coords[name] = xr.Variable((name,), values, attrs)
            continue
        dims = dim_names(ds)
        values = ds[:n] if dims[:1] == ("time",) else ds[()]
        variables[name] = xr.Variable(dims, values, attrs)


def _plain(value):
    """Attribute values as plain Python/numpy values (text decoded)."""
    if isinstance(value, (bytes, np.bytes_, str)):
        return text_of(value)
    return value
