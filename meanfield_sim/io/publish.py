"""Where a run writes: a locked partial file beside the output, renamed to it when complete.

A run writes ``OUT.part`` (``*.h5`` globs do not match it) and renames it to ``OUT`` with one
atomic rename once the file says 'complete'; so a file under the final name is always complete,
and ``--force`` leaves an earlier result in place until the new one replaces it. A run that is
interrupted, fails or is killed leaves only ``OUT.part``.

The partial file is held with an exclusive ``flock`` for the whole run, taken before anything is
written: a second run on the same output finds it held and stops with :class:`OutputBusy`,
and ``info`` can tell a live run (lock held) from a dead one (lock free). The kernel drops the
lock when its process dies, SIGKILL included, so a partial file left by a dead run is simply
taken over by the next run on that output. On a file system without locks (some Lustre mounts)
the lock is skipped and two runs on one output are not detected.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

PARTIAL_SUFFIX = ".part"


class OutputError(OSError):
    """The output cannot be written (folder missing or read-only, disk full, ...)."""


class OutputExists(OutputError):
    """The output exists and overwriting was not allowed."""


class OutputBusy(OutputError):
    """Another live process is writing the same output."""


def partial_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def is_locked(path: str | Path) -> bool | None:
    """Whether some process holds ``path``'s write lock: True, False, or None where the file
    system has no locks or the file cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


class Destination:
    """The output path of one run: :meth:`claim` before writing, :meth:`publish` when complete,
    :meth:`release` at the end in every case."""

    def __init__(self, path: str | Path, force: bool = False):
        self.final = Path(path)
        self.partial = partial_path(self.final)
        self.force = force
        self._fd: int | None = None

    def check(self) -> None:
        """Fail early, before any work, if the run could not publish its result."""
        folder = self.final.parent
        if not folder.is_dir():
            raise OutputError(f"output folder {str(folder)!r} does not exist")
        if self.final.exists() and not self.force:
            raise OutputExists(f"output file {str(self.final)!r} exists; pass --force to "
                               "overwrite it (it stays until the new run is complete) or choose "
                               "another with -o")

    def claim(self) -> None:
        """Create (or take over) the partial file and hold its lock.

        Opening and locking are two steps: between them the file at that name may have been
        renamed away by the run that held it, so the lock counts only if the name still points
        to the locked file."""
        self.check()
        while True:
            try:
                fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot create {self.partial}: {exc.strerror}") from None
            try:
                _lock_exclusive(fd)
            except BlockingIOError:
                os.close(fd)
                raise OutputBusy(f"another run is writing {self.final} (its partial file "
                                 f"{self.partial} is locked{_owner(self.partial)}); wait for it "
                                 "or choose another output with -o") from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise OutputError(f"cannot lock {self.partial}: {exc.strerror}") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.partial))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def publish(self) -> None:
        """Give the partial file its final name: atomically replacing an old result under
        --force, and never replacing one that appeared meanwhile without it."""
        if self.force:
            os.replace(self.partial, self.final)
            return
        try:
            os.link(self.partial, self.final)
        except FileExistsError:
            raise self._taken() from None
        except OSError as exc:  # no hard links here (some network and FUSE file systems)
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if self.final.exists():
                raise self._taken() from None
            os.replace(self.partial, self.final)
            return
        os.unlink(self.partial)

    def _taken(self) -> OutputExists:
        return OutputExists(f"{self.final} was created by someone else while this run went on; "
                            f"this run's complete result is kept as {self.partial}")

    def discard(self) -> None:
        """Remove the partial file (only while holding it, and only if nothing was recorded)."""
        if self._fd is not None:
            try:
                os.unlink(self.partial)
            except OSError:
                pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock_exclusive(fd: int, attempts: int = 4) -> None:
    """flock(LOCK_EX) without waiting for a writer, but riding out a reader's momentary probe
    (:func:`is_locked`); raises BlockingIOError if the lock stays held."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _owner(path: Path) -> str:
    """', written by pid N on HOST since T' from the file's attributes, where readable."""
    try:
        import h5py
        with h5py.File(path, "r", locking=False) as f:
            return f", written by pid {f.attrs['pid']} on {f.attrs['host']} since " \
                   f"{f.attrs['started']}"
    except Exception:  # noqa: BLE001 - only decoration of the message
        return ""
