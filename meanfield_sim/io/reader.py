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
                 f"replicas:    {a['replicas']} (seed {a['seed']})",
                 f"data:        n = {f['data/x'].shape[0]} points in d = {f['data/x'].shape[1]}",
                 f"records:     {n}" + (f", t = {obs['time'][0]:.4g} .. {obs['time'][n - 1]:.6g}"
                                        if n else ""),
                 f"integration: {a['steps']} steps, {a['grad_evals']} gradient evaluations, "
                 f"{a['wall_seconds']:.2f} s wall ({a['compile_seconds']:.2f} s of it compiling "
                 "or loading kernels)"]
        extras = [name for name in ("grid_outputs",) if name in obs]
        if "particles" in f:
            net = f["particles/network"]
            extras.append(f"particle snapshots ({net['particle'].shape[0]} particles)")
        lines.append(f"also holds:  {', '.join(extras) if extras else '-'}")
        if n:
            lines.append("final (per replica, first 4):")
            for name in ("risk", "log_risk", "margin", "path_norm"):
                vals = obs[name][n - 1]
                shown = ", ".join(f"{v:.6g}" for v in vals[:4]) + (" ..." if len(vals) > 4 else "")
                lines.append(f"  {name:<10} {shown}")
            margin, norm = obs["margin"][n - 1], obs["path_norm"][n - 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = margin / norm
            lines.append(f"  {'margin/path_norm':<10} " + ", ".join(f"{v:.6g}" for v in ratio[:4]))
        return "\n".join(lines)
