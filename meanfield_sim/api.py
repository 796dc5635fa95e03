"""Running and reading from Python (notebooks, scripts, sweeps), without the command line.

    import meanfield_sim as mf
    ds = mf.simulate("runs/paper/section5_1_relu.toml", model={"width": 200}, run={"replicas": 4})
    (ds.margin / ds.path_norm).plot.line(x="time", xscale="log")
    ds = mf.open_run("section5_1.h5")

Both return the same ``xarray.Dataset`` (see ``analysis.dataset``): the file's groups merged,
named dimensions, only committed records.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable

from . import config as config_mod


def simulate(config: str | Path | dict, out: str | Path | None = None, *, force: bool = False,
             progress: Callable | None = None, **sections: dict):
    """Integrate a run and return its trajectory as an ``xarray.Dataset`` in memory.

    ``config``: a TOML file's path, or a dict as TOML would parse it. ``sections`` override whole
    keys per section, e.g. ``model={"width": 500}``; the result is validated as a config file
    would be (a bad value raises ``config.ConfigError`` naming it). ``out``: also keep the HDF5
    file there (``force`` to replace one); otherwise the file is temporary. ``progress(t, t_end,
    risk)`` is called after every record. A stop signal (Ctrl-C, SIGTERM) ends the run at the
    next step with ``signals.Interrupted``."""
    from .analysis.dataset import open_run
    from .runner import run

    raw = config_mod.read(config) if isinstance(config, (str, Path)) else copy.deepcopy(config)
    config_mod.apply_sections(raw, sections)
    cfg = config_mod.resolve(raw)
    if out is not None:
        run(cfg, out, progress=progress, force=force)
        return open_run(out)
    with tempfile.TemporaryDirectory(prefix="meanfield-sim-") as folder:
        path = Path(folder) / "run.h5"
        try:
            run(cfg, path, progress=progress)
        except BaseException as exc:
            exc.run_file = None  # the temporary folder goes with the exception: pass out= to keep
            raise
        return open_run(path)
