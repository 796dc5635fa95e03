"""Measurements: step times, the GEMM rate of the machine, peak memory, the machine line.

Step times. Each implementation's first call (compilation or JIT, plus one step) is timed on its
own and reported apart; one more step, timed, warms caches and allocators and sizes the
measurement: an implementation whose warm step took t gets max(min_repeats, budget / t) timed
steps. These are taken with ``time.perf_counter`` in ``ROUNDS`` interleaved rounds, each round
running a block of consecutive steps of every implementation in turn, in an order shuffled anew
each round (a fixed order would always put the same predecessor, with its warm thread pools and
its data in the caches, before each implementation). So a slow spell of the machine hits all
of them alike, while the libraries' thread pools (OpenMP, OpenBLAS, Eigen) are switched only a
few times. The reported time is the median of the timed steps.

GEMM rate. The median time t of ``np.matmul`` of two N x N matrices (N = 2048) gives
2 N^3 / t FLOP/s, for float64 and float32: what the BLAS reaches on this machine.

Memory. :func:`resident_bytes` reads the resident set from /proc/self/statm; :func:`peak_bytes`
reads its high-water mark (VmHWM, the figure ``ru_maxrss`` reports for a process that did not
inherit a larger one); :func:`reset_peak` resets that mark through /proc/self/clear_refs
(Linux >= 4.0), which ``memory_probe.py`` uses to tell the peak of the first (compiling) step
from that of a later step. Each (implementation, shape) is probed in a fresh process (see
``memory_probe.py``), so that one implementation's caches, pools and compiled code do not
count against another.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import random
import time
from typing import Callable

import numpy as np

GEMM_SIZE = 2048
ROUNDS = 5  # interleaved rounds of the step timings


def time_call(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(steps: dict[str, Callable[[], None]], warm_times: dict[str, float],
                        budget_s: float, min_repeats: int) -> dict[str, dict]:
    """Median step time of each callable, timed in interleaved rounds of blocks.

    ``warm_times[name]`` (a step time measured before) sets how many timed steps each gets:
    max(min_repeats, budget_s / warm_time), spread evenly over the rounds.
    Returns {name: {"median_s", "repeats", "times_s"}}."""
    wanted = {name: max(min_repeats, int(budget_s / max(warm_times[name], 1e-9)))
              for name in steps}
    times: dict[str, list[float]] = {name: [] for name in steps}
    shuffle = random.Random(0).shuffle
    for round_ in range(ROUNDS):
        order = list(steps)
        shuffle(order)
        for name in order:
            while len(times[name]) < -(-wanted[name] * (round_ + 1) // ROUNDS):
                times[name].append(time_call(steps[name]))
    return {name: {"median_s": float(np.median(ts)), "repeats": len(ts), "times_s": ts}
            for name, ts in times.items()}


def gemm_rates(repeats: int = 5) -> dict[str, float]:
    """FLOP/s of np.matmul on GEMM_SIZE x GEMM_SIZE matrices: {dtype: 2 N^3 / median time}."""
    rng = np.random.default_rng(0)
    rates = {}
    for dtype in ("float64", "float32"):
        a, b = (rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype) for _ in range(2))
        np.matmul(a, b)
        t = np.median([time_call(lambda: np.matmul(a, b)) for _ in range(repeats)])
        rates[dtype] = 2.0 * GEMM_SIZE ** 3 / t
    return rates


def resident_bytes() -> int:
    """Current resident set size (/proc/self/statm, second field, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    """Peak resident set size of this process's memory map so far (VmHWM of /proc/self/status).

    Not ``ru_maxrss``: Linux carries the parent's peak into a child's ru_maxrss across fork and
    exec, so in a probe started by a large benchmark process it would read the parent's size."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def reset_peak() -> bool:
    """Reset the peak resident set size to the current one; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine() -> dict:
    """CPU model, cores, library versions and the date."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("numpy", "numba", "torch", "jax", "jaxlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "versions": versions, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def write_results(out, text: str, results: dict) -> tuple:
    """Write OUT.md (the Markdown ``text``) and OUT.json (``results``), making OUT's folder;
    returns the two paths."""
    import json
    from pathlib import Path

    paths = tuple(Path(f"{out}{suffix}") for suffix in (".md", ".json"))
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(text + "\n")
    paths[1].write_text(json.dumps(results, indent=1) + "\n")
    return paths
