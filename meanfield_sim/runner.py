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

Checkpoints (``io.checkpoint``): every ``run.checkpoint_seconds`` of wall time, and on every stop
signal, the integrator's state is written to ``OUT.ckpt`` between two steps, after the buffered
records are committed. ``run(..., resume=True)`` continues ``OUT.part`` from it: the file is
truncated back to the checkpoint's records and the integration goes on from its state, so a
resumed run loses only the work since its last checkpoint and ends with the file an
uninterrupted run writes. Without a usable checkpoint it starts again from t = 0.

Every exception raised after the flow was built carries ``run_file`` (the partial file, or None
if none was created), ``run_status`` (the status written, or None if it could not be) and
``run_records`` (records committed); :func:`what_was_left` says it in words.
"""
from __future__ import annotations

import math
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
from .io.checkpoint import (Checkpoint, CheckpointError, checkpoint_path, read_checkpoint,
                            remove_checkpoint, write_checkpoint)
from .io.h5file import (STATUS_COMPLETE, STATUS_FAILED, STATUS_INTERRUPTED, ResumeError, RunFile,
                        open_run_file, series_bytes, text_of)
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
    resumed_from: float | None = None  # t of the checkpoint this run continued from
    already_complete: bool = False     # resume found the complete file and did nothing
    checkpoints: int = 0               # checkpoints written by this call
    checkpoint_seconds: float = 0.0    # wall time they took
    resume_note: str = ""              # why a resumed run had to start again from t = 0


def run(cfg: dict, out_path: str | Path, progress: Callable | None = None,
        force: bool = False, stop: StopSignals | None = None,
        resume: bool = False) -> RunResult:
    """Integrate the run described by ``cfg`` (resolved) and write it to ``out_path``.

    ``progress(t, t_end, risk)`` is called after every record; ``force`` allows replacing an
    existing ``out_path`` (which stays until the new file is complete). ``resume`` continues an
    interrupted run of the same config from its checkpoint (see :func:`resume_plan`). Stop
    signals are caught from the call on, or from earlier by a caller's active ``stop``."""
    if resume and force:
        raise ValueError("resume and force exclude each other")
    destination = Destination(out_path, force)
    plan = resume_plan(cfg, destination) if resume else Plan("start", None, "")
    if plan.action == "complete":
        return completed_result(destination.final)
    destination.check()
    if stop is not None:
        return _Run(cfg, destination, stop, progress, plan).execute()
    with StopSignals() as stop:
        return _Run(cfg, destination, stop, progress, plan).execute()


@dataclass
class Plan:
    """What a (resumed) run does at its output: 'start' from t = 0, 'resume' from
    ``checkpoint``, or nothing ('complete'); ``why`` says why it cannot resume."""
    action: str
    checkpoint: Checkpoint | None
    why: str


class ForeignOutput(OutputExists):
    """The output holds another run's file (another config), or one that cannot be read."""


def resume_plan(cfg: dict, destination: Destination) -> Plan:
    """Decide how ``run(resume=True)`` proceeds at ``destination``, reading files only.

    A complete ``OUT`` of the same config: nothing to do. ``OUT`` of another config, or an
    ``OUT.part`` that is not this config's or is unreadable: :class:`ForeignOutput`, and nothing
    is overwritten. An ``OUT.part`` of this config with a checkpoint that belongs to it (same
    run_id, same key, no more records than the file holds): resume from it. Otherwise: start
    again from t = 0 (an ``OUT.part`` of this config is replaced)."""
    key = config_mod.config_key(cfg)
    final, partial = destination.final, destination.partial
    if final.exists():
        found = file_key(final)
        if found != key:
            raise ForeignOutput(f"{final} exists and holds {_whose(found)}, not this run "
                                f"(config key {key}); it is left alone: choose another output "
                                "or remove it")
        return Plan("complete", None, "")
    if not partial.exists():
        return Plan("start", None, "")
    found = file_key(partial)
    if found != key:
        raise ForeignOutput(f"{partial} holds {_whose(found)}, not this run (config key {key}); "
                            "it is left alone: choose another output or remove it")
    try:
        ckpt = read_checkpoint(checkpoint_path(final))
    except CheckpointError as exc:
        return Plan("start", None, str(exc))
    with open_run_file(partial) as f:
        run_id, held = text_of(f.attrs.get("run_id", "")), int(f.attrs["n_records"])
    if ckpt.key != key or ckpt.run_id != run_id or ckpt.n_records > held:
        return Plan("start", None, f"{checkpoint_path(final).name} belongs to an earlier "
                    f"attempt (run {ckpt.run_id}, {ckpt.n_records} records; the file is run "
                    f"{run_id} with {held})")
    return Plan("resume", ckpt, "")


def file_key(path: Path) -> str | None:
    """The config key of the run that wrote ``path`` (from its stored config), or None if the
    file is unreadable or not a run file."""
    try:
        with open_run_file(path) as f:
            text = f["parameters/config"][()]
        return config_mod.config_key(config_mod.loads(text.decode() if isinstance(text, bytes)
                                                      else text))
    except Exception:  # noqa: BLE001 - any unreadable file is foreign
        return None


def _whose(key: str | None) -> str:
    return "an unreadable or non-run file" if key is None else f"a run of config key {key}"


def completed_result(path: Path) -> RunResult:
    """The RunResult of a complete file (what resume returns when there is nothing to do)."""
    with open_run_file(path) as f:
        a, n = f.attrs, int(f.attrs["n_records"])
        obs = f["observables"]
        return RunResult(path, STATUS_COMPLETE, float(a["t_reached"]), int(a["steps"]),
                         int(a["grad_evals"]), float(a["wall_seconds"]),
                         float(a["compile_seconds"]), obs["risk"][n - 1], obs["margin"][n - 1],
                         n, already_complete=True)


class _Run:
    """The state of one run while it goes: flow, integrator, file, clocks."""

    def __init__(self, cfg, destination: Destination, stop: StopSignals, progress, plan: Plan):
        self.cfg, self.destination, self.stop, self.progress = cfg, destination, stop, progress
        self.plan = plan
        self.start = time.perf_counter()
        self.out: RunFile | None = None
        self.state: IntegratorState | None = None
        self.arrays = None  # the integrator's array operations (host or device memory)
        self.compile_seconds = 0.0
        self.wall_before = 0.0  # wall time of earlier sessions of a resumed run
        self._next_beat = self._next_checkpoint = 0.0
        self.checkpoint_file = checkpoint_path(destination.final)
        self.checkpoint_t: float | None = None  # time of the last checkpoint written
        self.checkpoints, self.checkpoint_seconds = 0, 0.0

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
        integrator = make_integrator(self.flow, cfg["integrator"], self._between_steps)
        self.arrays = integrator.arrays  # where the state lives: host or device memory
        self.state = IntegratorState(theta=self.arrays.to_device(theta),
                                     dt=min(cfg["integrator"]["dt"], cfg["integrator"]["dt_max"]))
        times = integrator.reached_times(record_times(cfg["record"], cfg["run"]["t_end"]))
        grid = evaluation_grid(cfg["record"]) if self.flow.supports_grid else None
        recorder = Recorder(self.flow, grid, self.flow.snapshot_layout(cfg),
                            build_test_set(cfg))
        try:
            self.stop.check()
            if self.plan.action == "resume" and self._reopen(recorder.layouts(), len(times)):
                self._restore(self.plan.checkpoint)
            else:
                self._open(recorder.layouts(), len(times))
        except BaseException as exc:
            exc.run_file, exc.run_status, exc.run_records = None, None, 0
            raise
        frame = self._record(integrator, recorder, times)
        return self._complete(frame)

    def _record(self, integrator, recorder: Recorder, times: np.ndarray) -> dict:
        """Step onto every record time not yet committed and commit its frame; returns the last
        frame. Any way out other than the end marks the file (``_end``) and raises."""
        cfg, frame = self.cfg, None
        try:
            for index in range(self.out.n_records, len(times)):
                integrator.advance(self.state, times[index])
                frame = recorder.frame(self.arrays.to_host(self.state.theta), self.state.t,
                                       self.state.step)
                check_finite(frame)
                self._write(self.out.append, frame, self.totals())
                if index + 1 < len(times):  # with every record written, the run completes
                    self._safe_point(self.state)
                if self.progress is not None:
                    self.progress(self.state.t, cfg["run"]["t_end"],
                                  frame["observables"]["risk"])
            if frame is None:  # resumed with every record committed: the last one, from the file
                frame = {"observables": self.out.last_observables()}
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
        remove_checkpoint(self.checkpoint_file)
        ckpt = self.plan.checkpoint if self.plan.action == "resume" else None
        return RunResult(self.destination.final, STATUS_COMPLETE, self.state.t, self.state.step,
                         self.flow.grad_evals, self.totals()["wall_seconds"],
                         self.compile_seconds, frame["observables"]["risk"],
                         frame["observables"]["margin"], self.out.n_records,
                         resumed_from=ckpt.t if ckpt is not None else None,
                         checkpoints=self.checkpoints,
                         checkpoint_seconds=self.checkpoint_seconds, resume_note=self.plan.why)

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
        remove_checkpoint(self.checkpoint_file)  # an earlier attempt's: not this file's
        self._start_clocks()

    def _reopen(self, layouts: dict, n_frames: int) -> bool:
        """Lock ``OUT.part`` and continue it from the checkpoint's records; False (after
        releasing it) where the file cannot be continued in place, so the run starts over."""
        dest, ckpt = self.destination, self.plan.checkpoint
        dest.claim_partial()
        try:
            self.out = RunFile.reopen(dest.partial, layouts, n_frames, ckpt.n_records,
                                      flush_every=self.cfg["record"]["flush_every"])
        except ResumeError as exc:
            dest.release()
            self.plan = Plan("start", None, f"{dest.partial} cannot be continued: {exc}")
            return False
        except OSError as exc:
            dest.release()
            raise OutputError(f"cannot reopen {dest.partial}: {_reason(exc)}") from None
        if self.out.run_id != ckpt.run_id:  # replaced since resume_plan read it
            self.out.abandon()
            dest.release()
            self.plan = Plan("start", None, f"{dest.partial} was replaced meanwhile")
            return False
        self._start_clocks()
        return True

    def _restore(self, ckpt: Checkpoint) -> None:
        """Put the integration where the checkpoint left it."""
        s = self.state
        s.theta = self.arrays.to_device(ckpt.theta.astype(np.float64, copy=False))
        s.t, s.step, s.dt, s.rejected, s.err_prev = (ckpt.t, ckpt.step, ckpt.dt, ckpt.rejected,
                                                     ckpt.err_prev)
        s.k_first, s.moments = self.arrays.to_device(ckpt.k_first), dict(ckpt.moments)
        self.flow.grad_evals = ckpt.grad_evals
        self.wall_before = ckpt.wall_seconds
        self.checkpoint_t = ckpt.t

    def _start_clocks(self) -> None:
        now = time.monotonic()
        self._next_beat = now + HEARTBEAT_SECONDS
        interval = self.cfg["run"]["checkpoint_seconds"]
        self._next_checkpoint = now + interval if interval > 0 else math.inf

    def totals(self, state: IntegratorState | None = None) -> dict:
        state = state or self.state
        return {"t_reached": state.t, "steps": state.step, "grad_evals": self.flow.grad_evals,
                "wall_seconds": self.wall_before + time.perf_counter() - self.start,
                "compile_seconds": self.compile_seconds}

    def _between_steps(self, state: IntegratorState) -> None:
        self._safe_point(state)
        if self.out is not None and time.monotonic() >= self._next_beat:
            self._write(self.out.heartbeat, self.totals(state))
            self._next_beat = time.monotonic() + HEARTBEAT_SECONDS

    def _safe_point(self, state: IntegratorState) -> None:
        """Between two steps: checkpoint when one is due or a stop signal arrived, then stop
        if one did."""
        if self.out is not None and (self.stop.received is not None
                                     or time.monotonic() >= self._next_checkpoint):
            self._checkpoint(state)
        self.stop.check()

    def _checkpoint(self, state: IntegratorState) -> None:
        """Commit the buffered records, then write the state that continues from them."""
        began = time.perf_counter()
        self._write(self.out.flush, self.totals(state))
        ckpt = Checkpoint(config_mod.config_key(self.cfg), self.out.run_id, self.out.n_records,
                          self.arrays.to_host(state.theta), state.t, state.step, state.dt,
                          state.rejected, state.err_prev, self.flow.grad_evals,
                          self.totals(state)["wall_seconds"], self.arrays.to_host(state.k_first),
                          state.moments)
        try:
            write_checkpoint(self.checkpoint_file, ckpt)
        except OSError as exc:
            raise WriteError(f"writing {self.checkpoint_file} failed: {_reason(exc)}") from None
        self.checkpoint_t = state.t
        self.checkpoints += 1
        self.checkpoint_seconds += time.perf_counter() - began
        interval = self.cfg["run"]["checkpoint_seconds"]
        self._next_checkpoint = time.monotonic() + interval if interval > 0 else math.inf

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
        exc.run_checkpoint = (self.checkpoint_file, self.checkpoint_t) \
            if self.checkpoint_t is not None and status != STATUS_COMPLETE else None


def what_was_left(exc: BaseException) -> str:
    """What an exception from :func:`run` left on disk, in words."""
    path, status = getattr(exc, "run_file", None), getattr(exc, "run_status", None)
    records = getattr(exc, "run_records", 0)
    checkpoint = getattr(exc, "run_checkpoint", None)
    if path is None:
        return "no output file was written"
    if status is None:
        left = (f"{path} holds its first {records} records intact but could not be marked "
                "(its status still says 'running')")
    else:
        left = f"{path} holds {records} records, marked {status!r}"
    if checkpoint is not None:
        left += (f"; checkpoint at t = {checkpoint[1]:.6g} in {checkpoint[0].name}: continue "
                 "with --resume")
    return left


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
