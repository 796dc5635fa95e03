"""Checkpoints: everything a run needs to continue, in a small file beside its output.

``OUT.ckpt`` (HDF5) holds the integrator's state between two steps: the state array ``theta``,
time, step count, the step size proposed for the next step, the controller's memory (rejected
count, last error norm), the FSAL stage where valid, the optimiser's moment buffers, and the
flow's gradient-evaluation count, together with the number of records the run's file had
committed then. Nothing random is drawn after t = 0 (data, initial state and snapshot subsample
are functions of the seeds), so there is no generator state to keep: continuing from a
checkpoint takes exactly the steps the uninterrupted run takes, and on the CPU backend gives
the same file bit for bit (``tests/test_resume.py``).

A checkpoint names the run file it belongs to (its ``run_id``) and the run (the config key,
``config.config_key``): a checkpoint of another run, or of an earlier attempt at this output, is
never applied.

Writing is atomic: ``OUT.ckpt.new`` is written, fsynced and renamed over ``OUT.ckpt``, then the
folder is fsynced. A kill at any instant leaves the previous checkpoint or the new one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

FORMAT = 1
SUFFIX = ".ckpt"


class CheckpointError(Exception):
    """A checkpoint file cannot be read or does not belong to this run."""


@dataclass
class Checkpoint:
    key: str             # config.config_key of the run
    run_id: str          # the run file's run_id
    n_records: int       # records the file had committed
    theta: np.ndarray
    t: float
    step: int
    dt: float
    rejected: int
    err_prev: float
    grad_evals: int
    wall_seconds: float  # wall time of the run up to the checkpoint, all sessions
    k_first: np.ndarray | None = None
    moments: dict = field(default_factory=dict)  # name -> array or int

    SCALARS = ("key", "run_id", "n_records", "t", "step", "dt", "rejected", "err_prev",
               "grad_evals", "wall_seconds")


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + SUFFIX)


def write_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (new file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    new = path.with_name(path.name + ".new")
    with h5py.File(new, "w", locking=False) as f:
        f.attrs["format"] = FORMAT
        for name in Checkpoint.SCALARS:
            f.attrs[name] = getattr(ckpt, name)
        f.create_dataset("theta", data=ckpt.theta)
        if ckpt.k_first is not None:
            f.create_dataset("k_first", data=ckpt.k_first)
        moments = f.create_group("moments")
        for name, value in ckpt.moments.items():
            moments.create_dataset(name, data=value)
    _fsync(new)
    os.replace(new, path)
    _fsync(path.parent)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at ``path``; :class:`CheckpointError` if it is missing or unreadable."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            if int(f.attrs.get("format", -1)) != FORMAT:
                raise CheckpointError(f"{path}: unknown checkpoint format "
                                      f"{f.attrs.get('format')!r} (this version writes {FORMAT})")
            scalars = {name: f.attrs[name] for name in Checkpoint.SCALARS}
            moments = {name: _value(ds) for name, ds in f["moments"].items()}
            return Checkpoint(
                **{k: (str(v) if k in ("key", "run_id") else v.item()) for k, v in
                   scalars.items()},
                theta=f["theta"][()], k_first=f["k_first"][()] if "k_first" in f else None,
                moments=moments)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from None


def remove_checkpoint(path: str | Path) -> None:
    for p in (Path(path), Path(path).with_name(Path(path).name + ".new")):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _value(ds: h5py.Dataset):
    value = ds[()]
    return value.item() if np.ndim(value) == 0 else value


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
