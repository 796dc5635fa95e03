"""Stop requests by signal, taken only at safe points.

A handler that raises (Python's default for SIGINT, the old runner's for SIGTERM) fires between
two arbitrary bytecodes: inside h5py's object bookkeeping it is swallowed ("Exception ignored
in ...") and the run goes on; inside a write it leaves the file half-updated. Here the handlers
only note the signal. The integrators and the record loop call :meth:`StopSignals.check` between
accepted steps and records, which raises :class:`Interrupted` there, where nothing is half done.

A run stopped by a signal writes a checkpoint first (``runner``), so every stop is resumable.
Exit codes (:data:`EXIT_DONE`, :data:`EXIT_FAILED`, :data:`EXIT_REQUEUE`, 128 + N) say why:

- SIGUSR1 is the batch system's warning ahead of a time limit (``sbatch --signal=USR1@T``):
  checkpointed, please requeue: exit 75 (``EX_TEMPFAIL``), which the job script turns into
  ``scontrol requeue``;
- SIGINT, SIGTERM, SIGHUP (Ctrl-C, ``scancel``, ``kill``, a hang-up) end the run on purpose:
  the shell's convention for a process ended by signal N, 128 + N (130, 143, 129), so a batch
  system sees the same code whether the run stopped itself cleanly or was killed. Resume with
  ``run --resume`` when wanted; nothing requeues it by itself.
"""
from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
REQUEUE_SIGNALS = (signal.SIGUSR1,)

EXIT_DONE = 0      # complete (or already complete)
EXIT_FAILED = 1    # failed: an error, bad input, a foreign output
EXIT_REQUEUE = 75  # checkpointed ahead of a time limit: requeue and resume (EX_TEMPFAIL)


class Interrupted(Exception):
    """A stop signal was received; raised at the next safe point."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def requeue(self) -> bool:
        """Whether the signal asks for the run to be requeued (not ended for good)."""
        return self.signum in REQUEUE_SIGNALS

    @property
    def exit_code(self) -> int:
        return EXIT_REQUEUE if self.requeue else 128 + self.signum


class StopSignals:
    """Context manager: while active, the :data:`STOP_SIGNALS` only set :attr:`received`.

    On exit the previous handlers are put back with the signals blocked, so that a second signal
    arriving meanwhile is delivered afterwards to the previous handler rather than lost or taken
    by a half-restored one. Outside the main thread (where Python cannot install handlers) it
    does nothing and :meth:`check` never raises.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _note(self, signum, _frame):
        if self.received is None:
            self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        if not self._previous:
            return
        with signals_blocked():
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        self._previous = {}

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal arrived."""
        if self.received is not None:
            raise Interrupted(self.received)


@contextlib.contextmanager
def signals_blocked():
    """Hold the stop signals back at the OS level (used while a file is closed, so that no
    handler runs in the middle of it); any that arrive are delivered when the block ends."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
