"""One HDF5 file per run, laid out after H5MD and readable by xarray (h5netcdf engine).

    /                      attrs: status ('running' | 'complete' | 'interrupted' | 'failed'),
                           n_records, started, finished, wall_seconds (compile_seconds of it
                           spent compiling or loading kernels), steps, grad_evals, message,
                           seed, replicas, versions of meanfield_sim / numba / numpy / h5py / python
    /h5md                  H5MD identification (version, creator)
    /parameters/config     the fully resolved config as TOML text: the file alone reproduces the run
    /data                  x (sample, input), label (sample), weight (sample)
    /observables           time (time), step, grad_evals; risk, log_risk, margin and the flow's
                           own scalars (path_norm; class_spread, vertex_error, ...) (time,
                           replica); outputs (time, replica, sample, output); optionally
                           grid_outputs (time, replica, grid_point, output) with grid_x
    /particles/network     network snapshots: a (time, replica, particle, output), w (...,
                           input), b (time, replica, particle); particle = indices kept
    /particles/features    penultimate-layer snapshots: y (time, replica, sample, feature),
                           A (time, replica, output, feature), b (time, replica, output)

Every group is a self-contained netCDF-style group: each axis is a named dimension scale with a
coordinate dataset of the same name, so ``xarray.open_dataset(path, group="observables",
engine="h5netcdf")`` needs no ``phony_dims``. The time axis is unlimited and chunked in whole
frames; records are buffered and appended every ``flush_every`` records, after which the
``n_records`` attribute is updated and the file flushed. A reader trusts the first ``n_records``
frames; a file whose status is not 'complete' is from a run that did not finish. A reader may
open a file while its run is going (``h5py.File(path, "r", locking=False)``), and a file whose
run was killed opens as it was at its last flush.
"""
from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path

import h5py
import numpy as np

H5MD_VERSION = (1, 1)
STATUS_RUNNING, STATUS_COMPLETE = "running", "complete"
STATUS_INTERRUPTED, STATUS_FAILED = "interrupted", "failed"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    import numba

    from .. import __version__
    return {"meanfield_sim_version": __version__, "numba_version": numba.__version__,
            "numpy_version": np.__version__, "h5py_version": h5py.__version__,
            "python_version": platform.python_version()}


def _coord(group: h5py.Group, name: str, values, unlimited: bool = False) -> h5py.Dataset:
    values = np.asarray(values)
    kwargs = dict(maxshape=(None,), chunks=(1024,)) if unlimited else {}
    ds = group.create_dataset(name, data=values, **kwargs)
    ds.make_scale(name)
    return ds


def _variable(group: h5py.Group, name: str, dims: tuple, shape_tail: tuple, dtype,
              attrs: dict | None = None) -> h5py.Dataset:
    """A time-series variable (time, *dims) with its axes attached to the group's scales."""
    chunk_frames = max(1, min(64, (1 << 20) // max(1, int(np.prod(shape_tail)) * 8)))
    ds = group.create_dataset(name, shape=(0, *shape_tail), maxshape=(None, *shape_tail),
                              dtype=dtype, chunks=(chunk_frames, *shape_tail),
                              compression="gzip", compression_opts=4, shuffle=True)
    for axis, dim in enumerate(("time", *dims)):
        ds.dims[axis].attach_scale(group[dim])
    for key, value in (attrs or {}).items():
        ds.attrs[key] = value
    return ds


def _static(group: h5py.Group, name: str, data, dims: tuple, attrs: dict | None = None):
    ds = group.create_dataset(name, data=np.asarray(data))
    for axis, dim in enumerate(dims):
        ds.dims[axis].attach_scale(group[dim])
    for key, value in (attrs or {}).items():
        ds.attrs[key] = value
    return ds


class RunFile:
    """Writer of one run's file. Records go through :meth:`append`; :meth:`close` sets the status.

    ``groups`` maps group paths to layouts (``flows.base.GroupLayout``): each becomes a group with
    its own time axis (time, step, grad_evals), a ``replica`` axis with ``replica_ids``, the
    layout's coordinates and static datasets, and one unlimited time series per variable.
    A record is {"time", "step", "grad_evals", <group path>: {variable: array}}.
    """

    def __init__(self, path: str | Path, config_toml: str, meta: dict, data, replica_ids,
                 groups: dict, flush_every: int = 1):
        self.path = Path(path)
        # Superblock v0 (libver "earliest"): newer formats set an "open for write" flag that
        # makes a file unreadable while it is written and forever after a SIGKILL.
        self.f = h5py.File(self.path, "w", libver=("earliest", "v108"))
        self.flush_every = flush_every
        self.groups = groups
        self._buffer: list[dict] = []
        self.n_records = 0
        f = self.f
        f.attrs.update({"status": STATUS_RUNNING, "n_records": 0, "started": now_iso(),
                        "finished": "", "message": "", **versions(), **meta})
        h5md = f.create_group("h5md")
        h5md.attrs["version"] = np.array(H5MD_VERSION, dtype=np.int32)
        creator = h5md.create_group("creator")
        creator.attrs.update({"name": "meanfield-sim", "version": versions()[
            "meanfield_sim_version"]})
        params = f.create_group("parameters")
        params.create_dataset("config", data=config_toml, dtype=h5py.string_dtype())

        n, d = data.x.shape
        g = f.create_group("data")
        _coord(g, "sample", np.arange(n))
        _coord(g, "input", np.arange(d))
        _static(g, "x", data.x, ("sample", "input"), {"long_name": "data points x_j"})
        _static(g, "label", data.label, ("sample",),
                {"long_name": "labels: +-1 (binary) or class index"})
        _static(g, "weight", data.weight, ("sample",), {"long_name": "weights p_j, sum 1"})

        for name, layout in groups.items():
            g = f.require_group(name)
            self._time_axis(g)
            _coord(g, "replica", np.asarray(replica_ids))
            for dim, values in layout.coords.items():
                _coord(g, dim, values)
            for var, (values, dims, long_name) in layout.static.items():
                _static(g, var, values, dims, {"long_name": long_name})
            for var, series in layout.variables.items():
                tail = tuple(g[dim].shape[0] for dim in series.dims)
                _variable(g, var, series.dims, tail, np.float64, {"long_name": series.long_name})
        f.flush()

    @staticmethod
    def _time_axis(group):
        t = _coord(group, "time", np.zeros(0), unlimited=True)
        t.attrs["long_name"] = "physical time t of the gradient flow"
        for name in ("step", "grad_evals"):
            ds = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.int64,
                                      chunks=(1024,))
            ds.dims[0].attach_scale(t)

    def append(self, frame: dict) -> None:
        """Buffer one record; write the buffer every ``flush_every`` records."""
        self._buffer.append(frame)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Append the buffered records to every group, then commit ``n_records`` and flush."""
        if not self._buffer:
            return
        frames = self._buffer
        n0, n1 = self.n_records, self.n_records + len(frames)
        for name, layout in self.groups.items():  # resize everything, then write
            g = self.f[name]
            for var in ("time", "step", "grad_evals", *layout.variables):
                g[var].resize((n1, *g[var].shape[1:]))
        for name, layout in self.groups.items():
            g = self.f[name]
            for axis in ("time", "step", "grad_evals"):
                g[axis][n0:n1] = [fr[axis] for fr in frames]
            for var in layout.variables:
                g[var][n0:n1] = np.stack([fr[name][var] for fr in frames])
        self._buffer = []  # only now: an interrupted write is retried by close()
        self.n_records = n1
        self.f.attrs["n_records"] = n1
        self.f.flush()

    def close(self, status: str, **attrs) -> None:
        """Write what is buffered, then the final status and attributes, and close."""
        if not self.f.id.valid:
            return
        self.flush()
        self.f.attrs.update({"status": status, "finished": now_iso(), **attrs})
        self.f.close()
