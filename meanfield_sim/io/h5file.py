"""One HDF5 file per run, readable by xarray (h5netcdf engine) and by ``analysis.open_run``.

The layout borrows H5MD's idea of groups of time series with their own time axes, but does not
conform to H5MD (no element/value/step/time subgroups), so it does not declare it.

    /                      attrs: status ('running' | 'complete' | 'interrupted' | 'failed'),
                           n_records, started, finished, updated, wall_seconds
                           (compile_seconds of it spent compiling or loading kernels), steps,
                           grad_evals, t_reached, message, pid, host, run_id (ties a checkpoint
                           to this file), resumes, seed, replicas, versions of meanfield_sim /
                           numba / numpy / h5py / python
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
engine="h5netcdf")`` needs no ``phony_dims``.

Crash safety. The record times are known before the first step, so every time series is created
at its final length: contiguous, unfiltered, its space allocated and filled (NaN, or -1 for the
integer axes) when the file is created. After that the file never grows and no metadata moves:
a flush writes the new frames into space that already exists, flushes, and only then raises
the ``n_records`` attribute and flushes again. Every attribute that changes during a run (status,
counters, heartbeat, message) is fixed-size and rewritten in place; the variable-length strings
are written once, at creation. So at any instant, a SIGKILL included, the file on disk holds
``n_records`` complete frames, and a reader opening it meanwhile
(``h5py.File(path, "r", locking=False)``) sees either the old or the new count, never a frame
that is not there. A frame past ``n_records`` is NaN or belongs to a write cut short.

While the run goes, its changing string attributes are fixed-length and read back as ``bytes``
with plain h5py (``text_of`` decodes them). A complete file has them turned into plain strings,
in the last milliseconds before it gets its final name; an interrupted or failed one keeps them
fixed-length, so that a resumed run (:meth:`RunFile.reopen`) again changes only attributes that
exist at their final size: resuming rewrites status, pid, host, the counters and ``n_records``
(truncating the records back to the checkpoint's) in place, and nothing else. The superblock is version 0 (libver
"earliest"): newer formats set an "open for write" flag that makes a file unreadable while it is
written and forever after a SIGKILL.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import time
import uuid
from pathlib import Path

import h5py
import numpy as np

STATUS_RUNNING, STATUS_COMPLETE = "running", "complete"
STATUS_INTERRUPTED, STATUS_FAILED = "interrupted", "failed"

# The attributes rewritten during a run, with their fixed sizes (bytes for text).
TEXT_ATTRS = {"status": 16, "finished": 32, "updated": 32, "message": 2048, "host": 256,
              "run_id": 32}
COUNT_ATTRS = ("n_records", "steps", "grad_evals", "resumes", "pid")
REAL_ATTRS = ("t_reached", "wall_seconds", "compile_seconds")
PROGRESS_ATTRS = ("steps", "grad_evals", "t_reached", "wall_seconds", "compile_seconds")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    import numba

    from .. import __version__
    return {"meanfield_sim_version": __version__, "numba_version": numba.__version__,
            "numpy_version": np.__version__, "h5py_version": h5py.__version__,
            "python_version": platform.python_version()}


OPEN_ATTEMPTS = 5  # a reader racing the writer's metadata flush retries this often


def open_run_file(path) -> h5py.File:
    """Open a run file for reading without HDF5 locks, retrying briefly if it is caught in the
    middle of a writer's flush."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return h5py.File(path, "r", locking=False)
        except OSError:
            if attempt == OPEN_ATTEMPTS - 1 or not os.path.exists(path):
                raise
            time.sleep(0.05 * (attempt + 1))


def _fixed_text(text: str, size: int) -> bytes:
    """UTF-8 bytes of ``text`` cut at a character boundary to at most ``size`` bytes."""
    raw = text.encode("utf-8")
    if len(raw) <= size:
        return raw
    return raw[:size - 3].decode("utf-8", errors="ignore").encode("utf-8") + b"..."


def text_of(value) -> str:
    """An attribute as text: while a run goes, its changing attributes are fixed-length UTF-8
    bytes; a closed file's are plain strings."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _preallocated(group: h5py.Group, name: str, shape: tuple, dtype) -> h5py.Dataset:
    """A contiguous dataset whose space is allocated and filled (NaN, -1) at creation."""
    dtype = np.dtype(dtype)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    dcpl.set_fill_value(np.array(np.nan if dtype.kind == "f" else -1, dtype=dtype))
    return group.create_dataset(name, shape=shape, dtype=dtype, dcpl=dcpl)


def _writer_access() -> h5py.h5p.PropFAID:
    """File access for the writer: superblock v0, no HDF5 file lock, and no sieve buffer: HDF5
    would otherwise hold small raw writes back and perform them when the dataset is closed,
    where h5py can only print a failure ("Exception ignored in ..."), so a full or failing disk
    would go unnoticed and records be committed that were never written. Unbuffered, every
    write reaches the kernel within the call that makes it and fails there."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_V18)
    fapl.set_file_locking(False, True)
    fapl.set_sieve_buf_size(0)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    return fapl


def _create_unbuffered(path) -> h5py.h5f.FileID:
    """Create (truncate) a run file with the writer's access properties."""
    return h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fapl=_writer_access())


def _open_unbuffered(path) -> h5py.h5f.FileID:
    """Open an existing run file for writing with the writer's access properties."""
    return h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, fapl=_writer_access())


class ResumeError(Exception):
    """A partial file cannot be continued in place (the run starts again from t = 0)."""


def _coord(group: h5py.Group, name: str, values) -> h5py.Dataset:
    ds = group.create_dataset(name, data=np.asarray(values))
    ds.make_scale(name)
    return ds


def _attach(ds: h5py.Dataset, group: h5py.Group, dims: tuple, attrs: dict) -> h5py.Dataset:
    for axis, dim in enumerate(dims):
        ds.dims[axis].attach_scale(group[dim])
    ds.attrs.update(attrs)
    return ds


def series_bytes(groups: dict, n_frames: int, data_n: int, replicas: int) -> int:
    """Bytes the time series of ``groups`` take in a file of ``n_frames`` records (the file's
    size, up to the data, coordinates and about 100 kB of metadata)."""
    total = 0
    for layout in groups.values():
        sizes = {"replica": replicas, "sample": data_n,
                 **{dim: len(values) for dim, values in layout.coords.items()}}
        for series in layout.variables.values():
            total += 8 * n_frames * int(np.prod([sizes[d] for d in series.dims]))
        total += 3 * 8 * n_frames  # time, step, grad_evals
    return total


class RunFile:
    """Writer of one run's file. Records go through :meth:`append`; :meth:`finish` sets the
    final status, :meth:`close` closes.

    ``groups`` maps group paths to layouts (``flows.base.GroupLayout``): each becomes a group with
    its own time axis (time, step, grad_evals) of ``n_frames`` entries, a ``replica`` axis with
    ``replica_ids``, the layout's coordinates and static datasets, and one preallocated time
    series per variable. A record is {"time", "step", "grad_evals", <group path>: {variable:
    array}}. The caller must hold the file exclusively (``io.publish.Destination``): HDF5's own
    file lock is not used, so that readers need not wait.
    """

    def __init__(self, path: str | Path, config_toml: str, meta: dict, data, replica_ids,
                 groups: dict, n_frames: int, flush_every: int = 1):
        self.flush_every = flush_every
        self.groups = groups
        self.n_frames = n_frames
        self._buffer: list[dict] = []
        self.n_records = 0
        self.f = h5py.File(_create_unbuffered(path))
        self._datasets: dict[str, dict[str, h5py.Dataset]] = {}  # held open: see _create_unbuffered
        try:
            self._create(config_toml, meta, data, replica_ids)
        except BaseException:
            self.abandon()
            raise

    @classmethod
    def reopen(cls, path: str | Path, groups: dict, n_frames: int, n_records: int,
               flush_every: int = 1) -> "RunFile":
        """Continue writing an interrupted run's file with its first ``n_records`` records (a
        checkpoint's): the records after them are dropped (``n_records`` is lowered; their
        frames are overwritten as the run goes on), status 'running' again, pid and host this
        process's. Raises :class:`ResumeError` where the file cannot be continued in place."""
        self = cls.__new__(cls)
        self.flush_every, self.groups, self.n_frames = flush_every, groups, n_frames
        self._buffer = []
        self.f = h5py.File(_open_unbuffered(path))
        try:
            self._check_resumable(n_frames, n_records)
            self._datasets = {name: {var: self.f[name][var]
                                     for var in ("time", "step", "grad_evals", *layout.variables)}
                              for name, layout in groups.items()}
            self.n_records = n_records
            self.f.attrs.modify("n_records", n_records)
            self.f.attrs.modify("resumes", int(self.f.attrs["resumes"]) + 1)
            self.f.attrs.modify("pid", os.getpid())
            self._set_text(status=STATUS_RUNNING, message="", finished="",
                           host=socket.gethostname(), updated=now_iso())
            self.f.flush()
        except BaseException:
            self.abandon()
            raise
        return self

    def _check_resumable(self, n_frames: int, n_records: int) -> None:
        attrs = self.f.attrs
        for name in (*TEXT_ATTRS, *COUNT_ATTRS):
            if name not in attrs:
                raise ResumeError(f"it has no {name!r} attribute (written by an older version)")
        for name, size in TEXT_ATTRS.items():
            if attrs.get_id(name).dtype != np.dtype(f"S{size}"):
                raise ResumeError("its attributes are final (it was marked complete)")
        planned = self.f["observables/time"].shape[0]
        if planned != n_frames or not 0 <= n_records <= int(attrs["n_records"]):
            raise ResumeError(f"it plans {planned} records and holds {int(attrs['n_records'])}; "
                              f"the checkpoint expects {n_frames} and {n_records}")

    @property
    def run_id(self) -> str:
        return text_of(self.f.attrs["run_id"])

    def _create(self, config_toml, meta, data, replica_ids) -> None:
        f = self.f
        for name, size in TEXT_ATTRS.items():
            f.attrs.create(name, b"", dtype=h5py.string_dtype("utf-8", size))
        for name in COUNT_ATTRS:
            f.attrs.create(name, 0, dtype=np.int64)
        for name in REAL_ATTRS:
            f.attrs.create(name, 0.0, dtype=np.float64)
        self._set_text(status=STATUS_RUNNING, updated=now_iso(), host=socket.gethostname(),
                       run_id=uuid.uuid4().hex)
        f.attrs.modify("pid", os.getpid())
        f.attrs.update({"started": now_iso(), "creator": "meanfield-sim", **versions(),
                        **{k: v for k, v in meta.items() if k not in PROGRESS_ATTRS}})
        self._set_progress(meta)
        params = f.create_group("parameters")
        params.create_dataset("config", data=config_toml, dtype=h5py.string_dtype())
        self._data_group(data)
        for name, layout in self.groups.items():
            self._series_group(f.require_group(name), layout, replica_ids)
        f.flush()

    def _data_group(self, data) -> None:
        n, d = data.x.shape
        g = self.f.create_group("data")
        _coord(g, "sample", np.arange(n))
        _coord(g, "input", np.arange(d))
        for name, values, dims, doc in (
                ("x", data.x, ("sample", "input"), "data points x_j"),
                ("label", data.label, ("sample",), "labels: +-1 (binary) or class index"),
                ("weight", data.weight, ("sample",), "weights p_j, sum 1")):
            _attach(g.create_dataset(name, data=np.asarray(values)), g, dims, {"long_name": doc})

    def _series_group(self, g: h5py.Group, layout, replica_ids) -> None:
        n = self.n_frames
        t_axis = _preallocated(g, "time", (n,), np.float64)
        t_axis.make_scale("time")
        t_axis.attrs["long_name"] = "physical time t of the gradient flow"
        held = self._datasets[g.name.lstrip("/")] = {"time": t_axis}
        for name in ("step", "grad_evals"):
            held[name] = _attach(_preallocated(g, name, (n,), np.int64), g, ("time",), {})
        _coord(g, "replica", np.asarray(replica_ids))
        for dim, values in layout.coords.items():
            _coord(g, dim, values)
        for var, (values, dims, long_name) in layout.static.items():
            _attach(g.create_dataset(var, data=np.asarray(values)), g, dims,
                    {"long_name": long_name})
        for var, series in layout.variables.items():
            tail = tuple(g[dim].shape[0] for dim in series.dims)
            held[var] = _attach(_preallocated(g, var, (n, *tail), np.float64), g,
                                ("time", *series.dims), {"long_name": series.long_name})

    def _set_text(self, **values: str) -> None:
        for name, text in values.items():
            self.f.attrs.modify(name, _fixed_text(text, TEXT_ATTRS[name]))

    def _set_progress(self, progress: dict) -> None:
        for name in PROGRESS_ATTRS:
            if name in progress:
                self.f.attrs.modify(name, progress[name])
        self._set_text(updated=now_iso())

    def append(self, frame: dict, progress: dict | None = None) -> None:
        """Buffer one record; write the buffer every ``flush_every`` records."""
        if self.n_records + len(self._buffer) >= self.n_frames:
            raise ValueError(f"all {self.n_frames} planned records are written")
        self._buffer.append(frame)
        if len(self._buffer) >= self.flush_every:
            self.flush(progress)

    def flush(self, progress: dict | None = None) -> None:
        """Write the buffered frames, flush, then commit them (``n_records``) and flush again;
        ``progress`` (steps, t_reached, ...) is written with the commit."""
        if self._buffer:
            frames = self._buffer
            n0, n1 = self.n_records, self.n_records + len(frames)
            for name, layout in self.groups.items():
                held = self._datasets[name]
                for axis in ("time", "step", "grad_evals"):
                    held[axis][n0:n1] = [fr[axis] for fr in frames]
                for var in layout.variables:
                    held[var][n0:n1] = np.stack([fr[name][var] for fr in frames])
            self.f.flush()
            self._buffer = []  # only now: an interrupted write is retried by close()
            self.n_records = n1
            self.f.attrs.modify("n_records", n1)
        if progress:
            self._set_progress(progress)
        self.f.flush()

    def last_observables(self) -> dict:
        """The last committed record of /observables: {variable: array}."""
        n = self.n_records
        return {var: self._datasets["observables"][var][n - 1]
                for var in self.groups["observables"].variables}

    def heartbeat(self, progress: dict) -> None:
        """Write the progress attributes and ``updated`` without committing records."""
        self._set_progress(progress)
        self.f.flush()

    def finish(self, status: str, message: str = "", progress: dict | None = None,
               write_buffer: bool = True) -> None:
        """Write what is buffered (unless ``write_buffer`` is False: after a failed write), then
        the final status, message and progress, and flush: the file is final on disk, and only
        closing remains (:meth:`close`)."""
        if write_buffer:
            self.flush()
        self._buffer = []
        self._set_text(status=status, message=message, finished=now_iso())
        if progress:
            self._set_progress(progress)
        self.f.flush()
        if status == STATUS_COMPLETE:  # from here on nothing changes: plain strings for readers
            for name in TEXT_ATTRS:
                self.f.attrs[name] = text_of(self.f.attrs[name])
            self.f.flush()

    def close(self) -> None:
        """Close the file (after :meth:`finish`, or as it stands)."""
        if self.f.id.valid:
            self.f.close()

    def abandon(self) -> None:
        """Close after an I/O error without writing anything more; errors are ignored (what
        the file holds is whatever the last successful flush left)."""
        try:
            if getattr(self, "f", None) is not None and self.f.id.valid:
                self.f.close()
        except Exception:  # noqa: BLE001 - the file is already known to be unwritable
            pass
