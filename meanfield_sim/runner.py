"""One run: resolved config in, HDF5 trajectory out.

config -> flows.build_flow (dataset, model, initial state) -> integrator (Runge-Kutta or optimiser)
stepping onto every record time -> Recorder -> RunFile, written as ``OUT.part`` and renamed to
``OUT`` once complete (``io.publish``).

How a run can end, and what it leaves:

- complete: ``OUT``, status 'complete' (the only way a file gets the final name);
- a stop signal (SIGINT, SIGTERM, SIGHUP): taken between steps (``signals``); ``OUT.part`` with
  every record so far, status 'interrupted'; :class:`signals.Interrupted` is raised;
- an error (integrator, non-finite values, I/O): ``OUT.part`` marked 'failed' with the message,
  where the file can still be written; the error is raised;
- SIGKILL or a crash: ``OUT.part`` with status 'running' and every committed record intact.

Every exception raised after the flow was built carries ``run_file`` (the partial file, or None
if none was created), ``run_status`` (the status written, or None if it could not be) and
``run_records`` (records committed); :func:`what_was_left` says it in words.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import config as config_mod
from .flows import build_flow
from .model.data import build_test_set
from .integrate import make_integrator
from .integrate.stepper import IntegratorState
from .io.h5file import (STATUS_COMPLETE, STATUS_FAILED, STATUS_INTERRUPTED, RunFile,
                        series_bytes)
from .io.publish import Destination, OutputError, OutputExists
from .recorder import Recorder, check_finite, evaluation_grid, record_times
from .signals import Interrupted, StopSignals, signals_blocked

HEARTBEAT_SECONDS = 10.0  # most wall time between two updates of a running file's progress
METADATA_BYTES = 1 << 20  # allowance for everything in a file besides the time series


class WriteError(OutputError):
    """Writing the run's file failed (disk full, I/O error)."""


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
    n_records: int


def run(cfg: dict, out_path: str | Path, progress: Callable | None = None,
        force: bool = False, stop: StopSignals | None = None) -> RunResult:
    """Integrate the run described by ``cfg`` (resolved) and write it to ``out_path``.

    ``progress(t, t_end, risk)`` is called after every record; ``force`` allows replacing an
    existing ``out_path`` (which stays until the new file is complete). Stop signals are
    caught from the call on, or from earlier by a caller's active ``stop``."""
    destination = Destination(out_path, force)
    destination.check()
    if stop is not None:
        return _Run(cfg, destination, stop, progress).execute()
    with StopSignals() as stop:
        return _Run(cfg, destination, stop, progress).execute()


class _Run:
    """The state of one run while it goes: flow, integrator, file, clocks."""

    def __init__(self, cfg, destination: Destination, stop: StopSignals, progress):
        self.cfg, self.destination, self.stop, self.progress = cfg, destination, stop, progress
        self.start = time.perf_counter()
        self.out: RunFile | None = None
        self.state: IntegratorState | None = None
        self.compile_seconds = 0.0
        self._next_beat = 0.0

    def execute(self) -> RunResult:
        cfg = self.cfg
        self.stop.check()
        try:
            self.flow, theta = build_flow(cfg)
        except MemoryError as exc:
            raise MemoryError(f"not enough memory to build this run (model.width = "
                              f"{cfg['model']['width']}, run.replicas = "
                              f"{cfg['run']['replicas']}): {exc}") from None
        self.flow.warm_up()
        self.compile_seconds = time.perf_counter() - self.start
        self.state = IntegratorState(theta=theta, dt=min(cfg["integrator"]["dt"],
                                                         cfg["integrator"]["dt_max"]))
        integrator = make_integrator(self.flow, cfg["integrator"], self._between_steps)
        times = integrator.reached_times(record_times(cfg["record"], cfg["run"]["t_end"]))
        grid = evaluation_grid(cfg["record"]) if self.flow.supports_grid else None
        recorder = Recorder(self.flow, grid, self.flow.snapshot_layout(cfg),
                            build_test_set(cfg))
        try:
            self.stop.check()
            self._open(recorder.layouts(), len(times))
        except BaseException as exc:
            exc.run_file, exc.run_status, exc.run_records = None, None, 0
            raise
        frame = self._record(integrator, recorder, times)
        return self._complete(frame)

    def _record(self, integrator, recorder: Recorder, times: np.ndarray) -> dict:
        """Step onto every record time and commit its frame; returns the last frame. Any way
        out other than the end marks the file (``_end``) and raises."""
        cfg, frame = self.cfg, None
        try:
            for t_rec in times:
                integrator.advance(self.state, t_rec)
                frame = recorder.frame(self.state.theta, self.state.t, self.state.step)
                check_finite(frame)
                self._write(self.out.append, frame, self.totals())
                self.stop.check()
                if self.progress is not None:
                    self.progress(self.state.t, cfg["run"]["t_end"],
                                  frame["observables"]["risk"])
        except (Interrupted, KeyboardInterrupt) as exc:
            self._end(exc, STATUS_INTERRUPTED, str(exc) or "interrupted by KeyboardInterrupt")
            raise
        except WriteError as exc:
            self._end(exc, STATUS_FAILED, str(exc))
            raise
        except BaseException as exc:
            self._end(exc, STATUS_FAILED, f"{type(exc).__name__}: {exc}")
            raise
        return frame

    def _write(self, method, *args) -> None:
        """A call that writes the file; its I/O errors become :class:`WriteError` (other
        OSErrors, e.g. from a progress callback, stay what they are)."""
        try:
            method(*args)
        except OSError as exc:
            raise WriteError(f"writing {self.destination.partial} failed: {_reason(exc)}") \
                from None

    def _complete(self, frame: dict) -> RunResult:
        """Mark the file complete and give it its final name (``Destination.publish``)."""
        partial = self.destination.partial
        try:
            with signals_blocked():
                try:
                    self.out.finish(STATUS_COMPLETE, progress=self.totals())
                except OSError as exc:
                    raise self._unfinished(exc, "finishing it", None) from None
                try:  # the file is complete on disk: only its name can still fail
                    self.destination.publish()
                except OutputExists as exc:  # someone else's file took the final name
                    self.out.abandon()
                    self._mark(exc, partial, STATUS_COMPLETE)
                    raise
                except OSError as exc:
                    raise self._unfinished(exc, f"renaming it to {self.destination.final.name}",
                                           STATUS_COMPLETE) from None
                try:
                    self.out.close()
                except OSError as exc:
                    raise self._unfinished(exc, "closing it", STATUS_COMPLETE) from None
        finally:
            self.destination.release()
        return RunResult(self.destination.final, STATUS_COMPLETE, self.state.t, self.state.step,
                         self.flow.grad_evals, time.perf_counter() - self.start,
                         self.compile_seconds, frame["observables"]["risk"],
                         frame["observables"]["margin"], self.out.n_records)

    def _unfinished(self, exc: OSError, what: str, status: str | None) -> OutputError:
        """The error for a failed last step of a complete run; the file is closed as it is."""
        self.out.abandon()
        where = self.destination.current
        error = OutputError(f"{where}: {what} failed: {_reason(exc)}")
        self._mark(error, where, status)
        return error

    def _open(self, layouts: dict, n_frames: int) -> None:
        """Claim the destination and create the file at its full size, after checking that the
        disk has room for it."""
        cfg, dest = self.cfg, self.destination
        need = series_bytes(layouts, n_frames, self.flow.data.n, cfg["run"]["replicas"]) \
            + METADATA_BYTES
        # no credit for a dead run's OUT.part: it stays until the new file replaces it
        free = shutil.disk_usage(dest.final.parent).free
        if need > free:
            raise OutputError(f"{dest.final.parent}/ has {_size(free)} free; this run's file "
                              f"needs {_size(need)} ({n_frames} records; fewer records or "
                              "snapshots make it smaller)")
        where = dest.claim()
        run_cfg = cfg["run"]
        meta = {"model": cfg["model"]["kind"], "seed": run_cfg["seed"],
                "replicas": run_cfg["replicas"], "t_end": run_cfg["t_end"],
                "compile_seconds": self.compile_seconds}
        replica_ids = run_cfg["first_replica"] + np.arange(run_cfg["replicas"])
        try:
            self.out = RunFile(where, config_mod.to_toml(cfg), meta, self.flow.data,
                               replica_ids, layouts, n_frames,
                               flush_every=cfg["record"]["flush_every"])
            dest.install()
        except OSError as exc:
            if self.out is not None:
                self.out.abandon()
            dest.discard()
            dest.release()
            raise OutputError(f"cannot create {dest.partial}: {_reason(exc)}") from None
        self._next_beat = time.monotonic() + HEARTBEAT_SECONDS

    def totals(self, state: IntegratorState | None = None) -> dict:
        state = state or self.state
        return {"t_reached": state.t, "steps": state.step, "grad_evals": self.flow.grad_evals,
                "wall_seconds": time.perf_counter() - self.start,
                "compile_seconds": self.compile_seconds}

    def _between_steps(self, state: IntegratorState) -> None:
        self.stop.check()
        if self.out is not None and time.monotonic() >= self._next_beat:
            self._write(self.out.heartbeat, self.totals(state))
            self._next_beat = time.monotonic() + HEARTBEAT_SECONDS

    def _end(self, exc: BaseException, status: str, message: str) -> None:
        """Mark the file with ``status`` and close it; if even that fails, leave it as the last
        successful flush left it."""
        written = None
        with signals_blocked():
            for write_buffer in (True, False):  # without the frames whose write just failed
                try:
                    self.out.finish(status, message, self.totals(), write_buffer=write_buffer)
                    self.out.close()
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    continue
                written = status
                break
            else:
                self.out.abandon()
        self.destination.release()
        self._mark(exc, self.destination.partial, written)

    def _mark(self, exc: BaseException, path: Path, status: str | None) -> None:
        exc.run_file, exc.run_status = path, status
        exc.run_records = self.out.n_records if self.out is not None else 0


def what_was_left(exc: BaseException) -> str:
    """What an exception from :func:`run` left on disk, in words."""
    path, status = getattr(exc, "run_file", None), getattr(exc, "run_status", None)
    records = getattr(exc, "run_records", 0)
    if path is None:
        return "no output file was written"
    if status is None:
        return (f"{path} holds its first {records} records intact but could not be marked "
                "(its status still says 'running')")
    return f"{path} holds {records} records, marked {status!r}"


def _reason(exc: OSError) -> str:
    """The system's words for an I/O error (HDF5's own message spans several lines of internals)."""
    if exc.errno:
        return f"{os.strerror(exc.errno)} (errno {exc.errno})"
    return str(exc).split("(", 1)[0].strip() or type(exc).__name__


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
