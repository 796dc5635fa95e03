"""Where a run writes: a locked partial file beside the output, renamed to it when complete.

Three names for one file, each reached by an atomic rename:

    OUT.part.new   being created (its layout, preallocated); unreadable until complete
    OUT.part       the run's file while it goes: always a readable HDF5 file; what an
                   interrupted, failed or killed run leaves (``*.h5`` globs do not match it)
    OUT            complete: the only way a file gets the final name; ``--force`` leaves an
                   earlier result here until the new one replaces it

The file is held with an exclusive ``flock`` from before its creation to the end of the run;
the lock belongs to the file, not the name, so it survives the renames. A second run on the same
output finds ``OUT.part.new`` or ``OUT.part`` held and stops with :class:`OutputBusy`, and
``info`` tells a live run (lock held) from a dead one (lock free). The kernel drops the lock when
its process dies, SIGKILL included, so files left by a dead run are taken over by the next run
on that output. On a file system without locks (some Lustre mounts) locking is skipped and two
runs on one output are not detected.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from .h5file import open_run_file, text_of

PARTIAL_SUFFIX = ".part"
CREATING_SUFFIX = ".part.new"
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class OutputError(OSError):
    """The output cannot be written (folder missing or read-only, disk full, ...)."""


class OutputExists(OutputError):
    """The output exists and overwriting was not allowed."""


class OutputBusy(OutputError):
    """Another live process is writing the same output."""


def partial_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def existing_run_file(path: str | Path) -> Path:
    """``path``, or its partial file ``path.part`` if only that exists (a run going, stopped or
    killed); ``path`` itself if neither exists (for the caller's error)."""
    path = Path(path)
    if not os.path.lexists(path) and partial_path(path).exists():
        return partial_path(path)
    return path


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
        self.creating = self.final.with_name(self.final.name + CREATING_SUFFIX)
        self.force = force
        self._fd: int | None = None
        self.current: Path | None = None  # where our file is now

    def check(self) -> None:
        """Fail early, before any work, if the run could not publish its result."""
        if os.environ.get("HDF5_USE_FILE_LOCKING", "").strip().upper() in ("TRUE", "1"):
            raise OutputError("HDF5_USE_FILE_LOCKING=TRUE is set: it overrides the writer's "
                              "locking=False, and HDF5's lock would collide with the run's own "
                              "(which lets readers read while it writes); unset it or set it "
                              "to FALSE")
        folder = self.final.parent
        if not folder.is_dir():
            raise OutputError(f"output folder {str(folder)!r} does not exist")
        if os.path.lexists(self.final) and not self.force:  # a dangling link counts too
            raise OutputExists(f"output file {str(self.final)!r} exists; pass --force to "
                               "overwrite it (it stays until the new run is complete) or choose "
                               "another with -o")

    def claim(self) -> Path:
        """Lock ``OUT.part.new`` (creating or taking it over) and make sure no live run holds
        ``OUT.part``; returns the path to create the file at, then :meth:`install` it."""
        self.check()
        self._fd = _open_locked(self.creating, lambda: self._busy(None))
        self.current = self.creating
        try:
            if os.path.lexists(self.partial):
                _open_locked(self.partial, lambda: self._busy(self.partial), keep=False)
                if not self.force and _status(self.partial) == "complete":
                    raise OutputExists(
                        f"{self.partial} holds a complete result that could not be given its "
                        f"final name; rename it to {self.final.name}, or pass --force to "
                        "replace it")
        except BaseException:
            self.discard()
            self.release()
            raise
        return self.creating

    def claim_partial(self) -> Path:
        """Lock the existing ``OUT.part`` to continue writing it (a resumed run); raises
        :class:`OutputBusy` if a live run holds it."""
        self.check()
        self._fd = _open_locked(self.partial, lambda: self._busy(self.partial), create=False)
        self.current = self.partial
        return self.partial

    def install(self) -> None:
        """Rename the created file to ``OUT.part`` (replacing what a dead run left there)."""
        os.replace(self.creating, self.partial)
        self.current = self.partial

    def _busy(self, held: Path | None) -> OutputBusy:
        """The error for a lock held by another run; ``held``: its file, if it can be read yet
        (a file still being created cannot)."""
        owner = _owner(held) if held is not None else ", being created"
        return OutputBusy(f"another run is writing {self.final} (its file is locked{owner}); "
                          "wait for it or choose another output with -o")

    def publish(self) -> None:
        """Give the partial file its final name: atomically replacing an old result under
        --force, and never replacing one that appeared meanwhile without it."""
        if self.force:
            os.replace(self.partial, self.final)
        else:
            try:
                os.link(self.partial, self.final)
                os.unlink(self.partial)
            except FileExistsError:
                raise self._taken() from None
            except OSError as exc:  # no hard links here (some network and FUSE file systems)
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if self.final.exists():
                    raise self._taken() from None
                os.replace(self.partial, self.final)
        self.current = self.final

    def _taken(self) -> OutputExists:
        return OutputExists(f"{self.final} was created by someone else while this run went on; "
                            f"this run's complete result is kept as {self.partial}")

    def discard(self) -> None:
        """Remove our file (only while holding it: a failed creation leaves nothing behind)."""
        if self._fd is not None and self.current is not None:
            try:
                os.unlink(self.current)
            except OSError:
                pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_locked(path: Path, busy, keep: bool = True, create: bool = True) -> int | None:
    """Open ``path`` (created if missing, unless ``create`` is False) and take its exclusive
    lock, making sure the name still points to the locked file (it may have been renamed away
    between open and lock). Raises ``busy()`` if a live process holds it; with ``keep=False``
    the lock is only tested."""
    create = create and keep
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            if not keep:
                return None  # gone meanwhile: nobody holds it
            if not create:
                raise OutputError(f"{path} disappeared") from None
            raise OutputError(f"cannot create {path}: folder missing") from None
        except OSError as exc:
            raise OutputError(f"cannot create {path}: {exc.strerror}") from None
        try:
            _lock_exclusive(fd)
        except BlockingIOError:
            os.close(fd)
            raise busy() from None
        except OSError as exc:
            if exc.errno not in NO_LOCKS:
                os.close(fd)
                raise OutputError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same and keep:
            return fd
        os.close(fd)
        if same:
            return None


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


def _status(path: Path) -> str:
    """The status attribute of a run file, or '' where it cannot be read."""
    try:
        with open_run_file(path) as f:
            return text_of(f.attrs["status"])
    except Exception:  # noqa: BLE001 - an unreadable leftover is taken over
        return ""


def _owner(path: Path) -> str:
    """', written by pid N on HOST since T' from the file's attributes, where readable."""
    try:
        with open_run_file(path) as f:
            return f", written by pid {f.attrs['pid']} on {f.attrs['host']} since " \
                   f"{f.attrs['started']}"
    except Exception:  # noqa: BLE001 - only decoration of the message
        return ""
