"""Helpers of the crash-safety tests: an I/O-heavy run, real processes stopped at random moments,
and the comparison of what they left with an uninterrupted run, bit for bit.

Every helper drives the real command line (``python -m meanfield_sim.cli run``) in a child
process, as a user or a batch system would.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import io_helpers as io  # noqa: E402

# A record after every Heun step (1200 records), every particle (m = 300, two replicas) and an
# evaluation grid in every record: about 75% of the run's wall time is spent writing the file
# (cProfile), so a kill at a random moment most likely lands inside a write.
IO_HEAVY_TOML = """\
[run]
seed = 3
replicas = 2
t_end = 12.0

[model]
width = 300

[data]
kind = "intervals"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 4 },
  { label = 1, interval = [1.0, 2.0], points = 4 },
]

[integrator]
method = "heun"
dt = 0.01

[record]
schedule = "linear"
count = 1200
particles = "all"
grid_min = [-3.0]
grid_max = [3.0]
grid_points = [50]
flush_every = 1
"""

SERIES_GROUPS = ("observables", "particles/network")


def start(cfg_path: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``meanfield-sim run CFG -o OUT`` as a child process (stdout and stderr piped)."""
    return subprocess.Popen(io.cli_command("run", str(cfg_path), "-o", str(out), "-q", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=io.subprocess_env(**(env or {})))


def partial(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    """Wait until ``path`` exists (polling every 2 ms); returns the monotonic time it appeared."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc {proc.returncode}) before {path} appeared: "
                                 f"{proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)
    return time.monotonic()


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    """Wait for the child; (return code, its stderr)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")


def text(value) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


def _is_series(name: str, ds) -> bool:
    return name == "time" or (isinstance(ds, h5py.Dataset) and ds.ndim > 0
                              and len(ds.dims[0]) > 0
                              and ds.dims[0][0].name.rsplit("/", 1)[-1] == "time")


def read_all(path: Path, frames: slice = slice(None)) -> dict:
    """The time series of the file (the given frames of each), the root attributes, and the
    config text: what the comparisons need."""
    with h5py.File(path, "r", locking=False) as f:
        series = {f"{g}/{name}": ds[frames] for g in SERIES_GROUPS for name, ds in f[g].items()
                  if _is_series(name, ds)}
        return {"series": series, "attrs": {k: f.attrs[k] for k in f.attrs},
                "config": text(f["parameters/config"][()])}


def problems_against(path: Path, reference: dict) -> list[str]:
    """What is wrong with a file left by a stopped run, compared with the complete reference
    run: every committed frame (the first ``n_records``) must equal the reference bit for bit
    ('committed: ...'); every frame after them must be readable and untouched (NaN or -1) or
    equal the reference, a write cut short before its commit ('tail: ...'). Empty if all is
    well."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            n = int(f.attrs["n_records"])
        found = read_all(path, slice(0, n))
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the finding
        return [f"committed: unreadable: {exc}"]
    out = []
    if found["config"] != reference["config"]:
        out.append("committed: config differs")
    for name, ref in reference["series"].items():
        got = found["series"].get(name)
        if got is None or got.shape[0] != n or got.shape[1:] != ref.shape[1:]:
            out.append(f"committed: {name}: missing or shape "
                       f"{None if got is None else got.shape}")
        elif not np.array_equal(got, ref[:n]):
            bad = np.flatnonzero([not np.array_equal(a, b) for a, b in zip(got, ref[:n])])
            out.append(f"committed: {name}: frames {bad[:5].tolist()} differ from the reference")
    if out:
        return out
    try:
        tail = read_all(path, slice(n, None))["series"]
    except Exception as exc:  # noqa: BLE001
        return [f"tail: unreadable: {exc}"]
    for name, ref in reference["series"].items():
        for i, frame in enumerate(tail[name], start=n):
            untouched = np.isnan(frame).all() if frame.dtype.kind == "f" else (frame == -1).all()
            if not untouched and not np.array_equal(frame, ref[i]):
                out.append(f"tail: {name}: frame {i} is neither blank nor the reference's")
                break
    return out


def send(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def kill_trial(cfg_path: Path, out: Path, delay: float, sig: int = signal.SIGKILL,
               attempts: int = 4) -> dict:
    """Start a run, send ``sig`` ``delay`` seconds after its file appeared, and report what it
    left: dict(rc, stderr, path (the file left, or None), delay). A run that completed before
    the signal (the machine ran faster than when the delay was chosen) tests nothing: it is
    removed and tried again with half the delay, up to ``attempts`` times in all; the report of
    the last attempt says whether the signal ever landed (rc 0 if not)."""
    for _ in range(attempts):
        proc = start(cfg_path, out)
        try:
            wait_for(partial(out), proc)
            time.sleep(delay)
            send(proc, sig)
            rc, err = finish(proc)
        finally:
            io.stop(proc)
        if rc != 0:
            break
        out.unlink(missing_ok=True)
        delay /= 2
    left = next((p for p in (partial(out), out) if p.exists()), None)
    return {"rc": rc, "stderr": err, "path": left, "delay": delay}


# attributes that differ between two runs of one config by nature (clocks, processes)
VOLATILE_ATTRS = {"started", "finished", "updated", "wall_seconds", "compile_seconds", "pid",
                  "host", "run_id", "resumes"}


def file_contents(path: Path) -> dict:
    """Every dataset, whole, and every root attribute that does not depend on the clock or the
    process: what two runs of one config must share bit for bit."""
    out = {}
    with h5py.File(path, "r", locking=False) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
        out.update({f"@{k}": text(v) if isinstance(v, (bytes, np.bytes_, str)) else v
                    for k, v in f.attrs.items() if k not in VOLATILE_ATTRS})
    return out


def differences(a: dict, b: dict) -> list:
    """Names of the entries of two :func:`file_contents` that are not bitwise equal (NaN equals
    NaN), or that only one of them has."""
    bad = sorted(set(a) ^ set(b))
    for k in set(a) & set(b):
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) and x.dtype.kind in "fc":
            same = x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
        else:
            same = np.array_equal(x, y)
        if not same:
            bad.append(k)
    return sorted(bad)
