"""One run: resolved config in, HDF5 trajectory out.

config -> flows.build_flow (dataset, model, initial state) -> integrator (Runge-Kutta or optimiser)
stepping onto every record time -> Recorder -> RunFile. The file is marked 'running' from its
first byte and 'complete' only after the last record is written; an interrupt (Ctrl-C, SIGTERM)
or an error writes what was recorded and marks it 'interrupted' or 'failed'.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import config as config_mod
from .flows import build_flow
from .integrate import make_integrator
from .integrate.stepper import IntegratorState
from .io.h5file import STATUS_COMPLETE, STATUS_FAILED, STATUS_INTERRUPTED, RunFile
from .recorder import Recorder, evaluation_grid, record_times


class Terminated(Exception):
    """Raised in the main thread when the process receives SIGTERM."""


class OutputError(OSError):
    """The output file cannot be created (folder missing or read-only, file held by another
    process); nothing was written."""


@dataclass
class RunResult:
    path: Path
    status: str
    t: float
    steps: int
    grad_evals: int
    wall_seconds: float     # the whole run, compile_seconds included
    compile_seconds: float  # Numba compilation or cache loading before the first step
    risk: np.ndarray
    margin: np.ndarray


def run(cfg: dict, out_path: str | Path,
        progress: Callable[[float, float, np.ndarray], None] | None = None) -> RunResult:
    """Integrate the run described by ``cfg`` (resolved) and write it to ``out_path``.

    ``progress(t, t_end, risk)`` is called after every record."""
    start = time.perf_counter()
    flow, theta = build_flow(cfg)
    flow.warm_up()
    compile_seconds = time.perf_counter() - start
    run_cfg = cfg["run"]
    grid = evaluation_grid(cfg["record"]) if flow.supports_grid else None
    replica_ids = run_cfg["first_replica"] + np.arange(run_cfg["replicas"])
    meta = {"model": cfg["model"]["kind"], "seed": run_cfg["seed"],
            "replicas": run_cfg["replicas"], "t_end": run_cfg["t_end"], "grad_evals": 0,
            "steps": 0, "wall_seconds": 0.0, "compile_seconds": compile_seconds}
    recorder = Recorder(flow, grid, flow.snapshot_layout(cfg))
    try:
        out = RunFile(out_path, config_mod.to_toml(cfg), meta, flow.data, replica_ids,
                      recorder.layouts(), flush_every=cfg["record"]["flush_every"])
    except OSError as exc:
        raise OutputError(f"cannot create {out_path}: {exc} (is it open in another program?)") \
            from None
    stepper = make_integrator(flow, cfg["integrator"])
    state = IntegratorState(theta=theta, dt=min(cfg["integrator"]["dt"],
                                                cfg["integrator"]["dt_max"]))
    frame = None

    def totals():
        return {"t_reached": state.t, "steps": state.step, "grad_evals": flow.grad_evals,
                "wall_seconds": time.perf_counter() - start, "compile_seconds": compile_seconds}

    previous = _install_sigterm()
    try:
        for t_rec in record_times(cfg["record"], run_cfg["t_end"]):
            stepper.advance(state, t_rec)
            if frame is not None and state.t <= frame["time"]:
                continue  # an optimiser's step grid is coarser than the requested times
            frame = recorder.frame(state.theta, state.t, state.step)
            out.append(frame)
            if progress is not None:
                progress(state.t, run_cfg["t_end"], frame["observables"]["risk"])
    except (KeyboardInterrupt, Terminated) as exc:
        out.close(STATUS_INTERRUPTED, message=f"interrupted by {type(exc).__name__}", **totals())
        exc.run_file = out.path  # tells the caller the file exists and says what happened
        raise
    except BaseException as exc:
        out.close(STATUS_FAILED, message=f"{type(exc).__name__}: {exc}", **totals())
        exc.run_file = out.path
        raise
    finally:
        _restore_sigterm(previous)
    out.close(STATUS_COMPLETE, **totals())
    return RunResult(Path(out_path), STATUS_COMPLETE, state.t, state.step, flow.grad_evals,
                     time.perf_counter() - start, compile_seconds, frame["observables"]["risk"],
                     frame["observables"]["margin"])


def _install_sigterm():
    def handler(signum, _frame):
        raise Terminated(f"signal {signum}")
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _restore_sigterm(previous):
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
