"""Running every task of a sweep here, N at a time (``meanfield-sim sweep --jobs N``).

Each task runs in its own process (``meanfield-sim sweep CONFIG --index I``), so tasks share
nothing but the Numba cache, and a crashed task takes no other down. Each gets a fair share of
the cores this process may use: ``NUMBA_NUM_THREADS = max(1, cores // N)``. Its output goes
to ``DIR/logs/NAME.log``. A stop signal to the pool is passed on to the running tasks (each
checkpoints and stops) and no new task starts.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..io.publish import Destination, OutputError
from ..runner import resume_plan
from ..signals import EXIT_DONE, EXIT_FAILED, EXIT_REQUEUE, StopSignals
from .sweep import output_of


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Outcome:
    index: int
    name: str
    returncode: int
    seconds: float


def run_all(sweep, folder: Path, jobs: int, cli_args: list, stop: StopSignals,
            report=print) -> list:
    """Run every task of ``sweep`` into ``folder`` with ``jobs`` worker processes; ``cli_args``
    are the arguments that select the sweep (config, -o, --set ...). Returns the outcomes in
    index order; ``report(line)`` is called as each task ends."""
    threads = max(1, usable_cores() // jobs)
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    pending = list(sweep.tasks)
    running: dict = {}  # Popen -> (task, start, log file)
    outcomes = []
    try:
        while pending or running:
            while pending and len(running) < jobs and stop.received is None:
                task = pending.pop(0)
                if complete_already(task, folder):
                    outcomes.append(Outcome(task.index, task.name, EXIT_DONE, 0.0))
                    report(f"[{len(outcomes)}/{len(sweep.tasks)}] task {task.index} "
                           f"{task.name}: complete already, skipped")
                    continue
                log = open(Path(folder) / "logs" / f"{task.name}.log", "ab")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "meanfield_sim.cli", "sweep", *cli_args,
                     "--index", str(task.index), "-q"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True)  # signals reach a task only through the pool
                running[proc] = (task, time.perf_counter(), log)
            if stop.received is not None:
                pending.clear()
                for proc in running:
                    _send(proc, stop.received)
            for proc in [p for p in running if p.poll() is not None]:
                task, began, log = running.pop(proc)
                log.close()
                outcome = Outcome(task.index, task.name, proc.returncode,
                                  time.perf_counter() - began)
                outcomes.append(outcome)
                report(f"[{len(outcomes)}/{len(sweep.tasks)}] task {task.index} {task.name}: "
                       f"{describe(proc.returncode)} ({outcome.seconds:.1f} s)")
            time.sleep(0.05)
    finally:
        for proc, (_, _, log) in running.items():  # only on an error in the loop itself
            _send(proc, signal.SIGTERM)
            proc.wait()
            log.close()
    return sorted(outcomes, key=lambda o: o.index)


def complete_already(task, folder: Path) -> bool:
    """Whether the task's output is already its complete file (read from the files only; a
    foreign or unreadable output is left to the task's own process, which reports it)."""
    try:
        plan = resume_plan(task.cfg, Destination(output_of(folder, task.name), False))
    except OutputError:
        return False
    return plan.action == "complete"


def _send(proc: subprocess.Popen, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


def describe(code: int) -> str:
    if code == EXIT_DONE:
        return "done"
    if code == EXIT_REQUEUE:
        return "checkpointed (requeue)"
    if code > 128 or code < 0:
        return f"stopped by signal {abs(code) - 128 if code > 0 else -code}, checkpointed"
    return f"failed (exit {code}; see its log)"


def exit_status(outcomes: list, n_tasks: int, stop: StopSignals) -> int:
    """0 if every task is done; else 1 if any failed; else 75 (requeue the rest) or the
    signal's code."""
    codes = [o.returncode for o in outcomes]
    if len(codes) == n_tasks and all(c == EXIT_DONE for c in codes):
        return EXIT_DONE
    if any(c not in (EXIT_DONE, EXIT_REQUEUE) and 0 < c <= 128 for c in codes):
        return EXIT_FAILED
    if stop.received is not None:
        return EXIT_REQUEUE if stop.received == signal.SIGUSR1 else 128 + stop.received
    return EXIT_REQUEUE
