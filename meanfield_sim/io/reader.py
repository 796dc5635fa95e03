"""Reading run files back: the records a file vouches for, and a human-readable summary.

Readers open files with ``locking=False`` and never wait on a writer: a file may be read while
its run writes it (see ``h5file``). Only the first ``n_records`` frames of a time series are
records; a file whose status is not 'complete' is from a run that has not finished, and
:func:`liveness` tells a run still going from one whose process died.
"""
from __future__ import annotations

import os
import socket

import h5py
import numpy as np

from .h5file import open_run_file, text_of
from .publish import is_locked

def read_observables(path) -> dict:
    """The committed records (first ``n_records`` frames) of every time series in /observables,
    including the ``time`` axis itself, as numpy arrays."""
    with open_run_file(path) as f:
        n = int(f.attrs["n_records"])
        return {name: ds[:n] for name, ds in f["observables"].items()
                if isinstance(ds, h5py.Dataset) and is_series(name, ds)}


def is_series(name: str, ds: h5py.Dataset) -> bool:
    """Whether a dataset of a group is indexed by time (the time axis itself included)."""
    return name == "time" or dim_names(ds)[:1] == ("time",)


def dim_names(ds: h5py.Dataset) -> tuple:
    """Names of the dimension scales attached to each axis of ``ds`` ('' where none)."""
    return tuple(dim[0].name.rsplit("/", 1)[-1] if len(dim) else "" for dim in ds.dims)


def liveness(path, attrs) -> str:
    """For a file whose status is 'running': whether its writer is alive, in words."""
    locked = is_locked(path)
    pid, host = int(attrs.get("pid", -1)), text_of(attrs.get("host", ""))
    if locked is None and host == socket.gethostname() and pid > 0:
        locked = _pid_alive(pid)
    updated = text_of(attrs.get("updated", ""))
    if locked:
        return f"the run is going (pid {pid} on {host}; last update {updated})"
    if locked is False:
        return (f"its process (pid {pid} on {host}) is gone: killed or crashed; last update "
                f"{updated}")
    return f"written by pid {pid} on {host}; last update {updated}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(path) -> str:
    with open_run_file(path) as f:
        a = f.attrs
        n = int(a["n_records"])
        obs = f["observables"]
        status, message = text_of(a["status"]), text_of(a["message"])
        if status == "running":
            message = liveness(path, a)
        lines = [f"file:        {path}",
                 f"status:      {status}" + (f" ({message})" if message else ""),
                 f"started:     {text_of(a['started'])}   finished: {text_of(a['finished']) or '-'}",
                 f"versions:    meanfield_sim {a['meanfield_sim_version']}, numba "
                 f"{a['numba_version']}, numpy {a['numpy_version']}",
                 f"model:       {a.get('model', 'network')}, {a['replicas']} replica(s), seed "
                 f"{a['seed']}",
                 f"data:        n = {f['data/x'].shape[0]} points in d = {f['data/x'].shape[1]}",
                 f"records:     {n} of {obs['time'].shape[0]}"
                 + (f", t = {obs['time'][0]:.4g} .. {obs['time'][n - 1]:.6g}" if n else ""),
                 f"integration: t = {a['t_reached']:.6g} of {a['t_end']:.6g}, {a['steps']} "
                 f"steps, {a['grad_evals']} gradient evaluations, {a['wall_seconds']:.2f} s wall "
                 f"({a['compile_seconds']:.2f} s of it compiling or loading kernels)"]
        extras = [name for name in ("grid_outputs", "test_outputs") if name in obs]
        for name, group in f.get("particles", {}).items():
            sizes = ", ".join(f"{dim} {group[dim].shape[0]}" for dim in ("particle", "sample",
                                                                           "feature")
                              if dim in group)
            extras.append(f"snapshots of {name} ({sizes})")
        lines.append(f"also holds:  {', '.join(extras) if extras else '-'}")
        if n:
            lines.append("final (per replica, first 4):")
            finals = {name: ds[n - 1] for name, ds in obs.items()
                      if isinstance(ds, h5py.Dataset) and dim_names(ds) == ("time", "replica")}
            if "path_norm" in finals:
                with np.errstate(divide="ignore", invalid="ignore"):
                    finals["margin/path_norm"] = finals["margin"] / finals["path_norm"]
            width = max(map(len, finals))
            for name, vals in finals.items():
                shown = ", ".join(f"{v:.6g}" for v in vals[:4]) + (" ..." if len(vals) > 4 else "")
                lines.append(f"  {name:<{width}}  {shown}")
        return "\n".join(lines)
