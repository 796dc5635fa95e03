"""Reading run files back: the records a file vouches for, and a human-readable summary."""
from __future__ import annotations

import h5py
import numpy as np


def read_observables(path) -> dict:
    """The committed records (first ``n_records`` frames) of every time series in /observables,
    including the ``time`` axis itself, as numpy arrays."""
    with h5py.File(path, "r", locking=False) as f:
        n = int(f.attrs["n_records"])
        return {name: ds[:n] for name, ds in f["observables"].items()
                if isinstance(ds, h5py.Dataset) and ds.maxshape[:1] == (None,)}


def dim_names(ds: h5py.Dataset) -> tuple:
    """Names of the dimension scales attached to each axis of ``ds`` ('' where none)."""
    return tuple(dim[0].name.rsplit("/", 1)[-1] if len(dim) else "" for dim in ds.dims)


def describe(path) -> str:
    with h5py.File(path, "r", locking=False) as f:
        a = f.attrs
        n = int(a["n_records"])
        obs = f["observables"]
        lines = [f"file:        {path}",
                 f"status:      {a['status']}" + (f" ({a['message']})" if a["message"] else ""),
                 f"started:     {a['started']}   finished: {a['finished'] or '-'}",
                 f"versions:    meanfield_sim {a['meanfield_sim_version']}, numba "
                 f"{a['numba_version']}, numpy {a['numpy_version']}",
                 f"model:       {a.get('model', 'network')}, {a['replicas']} replica(s), seed "
                 f"{a['seed']}",
                 f"data:        n = {f['data/x'].shape[0]} points in d = {f['data/x'].shape[1]}",
                 f"records:     {n}" + (f", t = {obs['time'][0]:.4g} .. {obs['time'][n - 1]:.6g}"
                                        if n else ""),
                 f"integration: {a['steps']} steps, {a['grad_evals']} gradient evaluations, "
                 f"{a['wall_seconds']:.2f} s wall ({a['compile_seconds']:.2f} s of it compiling "
                 "or loading kernels)"]
        extras = [name for name in ("grid_outputs",) if name in obs]
        for name, group in f.get("particles", {}).items():
            sizes = ", ".join(f"{dim} {group[dim].shape[0]}" for dim in ("particle", "sample",
                                                                           "feature")
                              if dim in group)
            extras.append(f"snapshots of {name} ({sizes})")
        lines.append(f"also holds:  {', '.join(extras) if extras else '-'}")
        if n:
            lines.append("final (per replica, first 4):")
            finals = {name: ds[n - 1] for name, ds in obs.items()
                      if isinstance(ds, h5py.Dataset) and ds.maxshape[:1] == (None,)
                      and dim_names(ds) == ("time", "replica")}
            if "path_norm" in finals:
                with np.errstate(divide="ignore", invalid="ignore"):
                    finals["margin/path_norm"] = finals["margin"] / finals["path_norm"]
            width = max(map(len, finals))
            for name, vals in finals.items():
                shown = ", ".join(f"{v:.6g}" for v in vals[:4]) + (" ..." if len(vals) > 4 else "")
                lines.append(f"  {name:<{width}}  {shown}")
        return "\n".join(lines)
