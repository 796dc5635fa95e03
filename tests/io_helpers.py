"""Shared helpers of the I/O tests (config, HDF5 file, command line).

Tiny configs as TOML text, subprocess helpers that start the package's own entry points with
``sys.executable`` (so no console script on PATH is needed).
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

# m = 20 neurons, n = 6 points in d = 1, t_end = 1 with fixed Heun steps: a few hundredths of a
# second per run once the kernels are cached.
TINY_TOML = """\
[run]
seed = 5
replicas = 2
first_replica = 3
t_end = 1.0

[model]
width = 20
activation = "relu"
loss = "logistic"

[data]
kind = "intervals"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 3 },
  { label = 1, interval = [1.0, 2.0], points = 3 },
]

[init]
kind = "balanced"

[integrator]
method = "heun"
dt = 0.05

[record]
schedule = "log"
t_first = 0.1
count = 4
particles = "subsample"
particle_count = 5
grid_min = [-3.0]
grid_max = [3.0]
grid_points = [7]
"""

# Runs "forever" (t_end = 1e6 with fixed Euler steps of 0.01 = 1e8 steps), writing a record every
# 10000 steps (t = 100) and flushing every record: for the interrupted-run tests, which stop it
# themselves. Records are far apart, so a kill most likely lands between two writes.
ENDLESS_TOML = """\
[run]
seed = 1
t_end = 1.0e6

[model]
width = 20

[data]
kind = "intervals"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 3 },
  { label = 1, interval = [1.0, 2.0], points = 3 },
]

[integrator]
method = "euler"
dt = 0.01

[record]
schedule = "linear"
count = 10000
particles = "all"
flush_every = 1
"""

# A writer that prints one line "<records written> <t>" after every record (each record is
# flushed before the progress callback runs, since flush_every = 1), so that a test knows how
# far the file has got without opening it.
PROGRESS_WRITER = """\
import sys
from meanfield_sim import config, runner

cfg = config.load(sys.argv[1])
count = 0

def progress(t, t_end, risk):
    global count
    count += 1
    print(count, t, flush=True)

runner.run(cfg, sys.argv[2], progress=progress)
"""


def write_config(folder: Path, text: str = TINY_TOML, name: str = "tiny.toml") -> Path:
    path = Path(folder) / name
    path.write_text(text)
    return path


def subprocess_env(**extra: str) -> dict:
    """Environment for child processes: this interpreter's, the repository importable, HDF5 file
    locking off (so that a reader never waits on a writer's lock), and one Numba thread."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HDF5_USE_FILE_LOCKING"] = "FALSE"
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meanfield_sim.cli", *args]


def read_until(fd: int, predicate, timeout: float, buffer: bytes = b"") -> bytes:
    """Read from a file descriptor until ``predicate(buffer)`` holds; raise on timeout or EOF."""
    deadline = time.monotonic() + timeout
    while not predicate(buffer):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"gave up after {timeout} s; read so far: {buffer[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty whose other end is closed
                chunk = b""
            if not chunk:
                raise EOFError(f"stream closed; read so far: {buffer[-2000:]!r}")
            buffer += chunk
    return buffer


def drain(fd: int, timeout: float) -> bytes:
    """Everything left to read from ``fd`` until EOF (or ``timeout`` seconds of silence)."""
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return out
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk


def stop(process: subprocess.Popen) -> None:
    """Kill a child that is still running (test clean-up) and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
