"""SLURM job arrays for a sweep (``meanfield-sim slurm``).

Two scripts go into the sweep folder:

- ``warmup.sbatch``: one task that compiles the kernels into the shared ``NUMBA_CACHE_DIR``
  (``meanfield-sim warmup``), so that no array task compiles from scratch;
- ``sweep.sbatch``: the array, one task per sweep task (``--array=0-(N-1)%throttle``), each
  running ``meanfield-sim sweep CONFIG -o DIR`` (its index from ``SLURM_ARRAY_TASK_ID``) as a
  job step (``srun``), logging to ``DIR/logs/slurm-%A_%a.out``. ``--signal=USR1@S`` has SLURM
  warn the step S seconds before the time limit: the run checkpoints and exits 75, and the
  script requeues the task (``scontrol requeue``, allowed by ``--requeue``) and waits for the
  requeue to stop it (a job that exits before its requeue is processed stays FAILED); the
  requeued task resumes from the checkpoint. ``scancel`` ends the task for good,
  checkpointed; ``scontrol requeue`` stops it checkpointed and runs it again.

``--submit`` submits the warmup job and the array with ``--dependency=afterok`` on it.
Numba's cache writes are atomic (a temporary file renamed into place), so tasks starting
together never see a half-written cache entry.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..signals import EXIT_REQUEUE

TIME_PATTERN = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")   # SLURM's D-HH:MM:SS forms
MEM_PATTERN = re.compile(r"^\d+[KMGT]?$")
# how long a task that asked for its requeue waits to be stopped by it (SLURM's KillWait is
# usually 30 s; the requeue signals at once)
REQUEUE_WAIT_SECONDS = 300


class SlurmError(Exception):
    """Bad options, or sbatch failed."""


@dataclass
class ArrayOptions:
    partition: str | None = None
    time: str = "01:00:00"
    mem: str = "2G"
    cpus: int = 1
    throttle: int = 0            # most tasks running at once; 0 = no limit
    signal_seconds: int = 120    # USR1 this long before the time limit

    def check(self, folder: Path) -> None:
        """SlurmError naming the first bad option (or a folder sbatch cannot take)."""
        if not TIME_PATTERN.match(self.time):
            raise SlurmError(f"--time {self.time!r}: expected SLURM's [D-]HH:MM:SS, MM:SS or "
                             "minutes, e.g. 01:30:00")
        if not MEM_PATTERN.match(self.mem):
            raise SlurmError(f"--mem {self.mem!r}: expected a size such as 4G or 500M")
        if self.cpus < 1:
            raise SlurmError(f"--cpus {self.cpus}: must be at least 1")
        if self.throttle < 0:
            raise SlurmError(f"--throttle {self.throttle}: must be at least 0 (0: no limit)")
        if not 1 <= self.signal_seconds < time_seconds(self.time):
            raise SlurmError(f"--signal-seconds {self.signal_seconds}: must be at least 1 and "
                             f"less than --time {self.time} ({time_seconds(self.time)} s)")
        if self.partition is not None and not re.match(r"^[A-Za-z0-9_.,-]+$", self.partition):
            raise SlurmError(f"--partition {self.partition!r}: not a partition name")
        if re.search(r"\s", str(Path(folder).resolve())):
            raise SlurmError(f"-o {str(folder)!r}: #SBATCH lines cannot hold a path with "
                             "spaces; choose a folder without them")


def time_seconds(limit: str) -> int:
    """Seconds of a SLURM time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:
        hours, minutes, seconds = {1: [0, parts[0], 0], 2: [0, *parts], 3: parts}[len(parts)]
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def write_scripts(folder: Path, config_path: Path, overrides, n_tasks: int, name: str,
                  opts: ArrayOptions) -> tuple[Path, Path]:
    """Write ``warmup.sbatch`` and ``sweep.sbatch`` into ``folder``; returns their paths."""
    opts.check(folder)
    folder = Path(folder).resolve()
    cache = folder / ".numba-cache"
    select = [str(Path(config_path).resolve()), "-o", str(folder),
              *[a for item in overrides for a in ("--set", item)]]
    cli = [sys.executable, "-m", "meanfield_sim.cli"]
    common = [f"#SBATCH --cpus-per-task={opts.cpus}", f"#SBATCH --mem={opts.mem}",
              *([f"#SBATCH --partition={opts.partition}"] if opts.partition else [])]
    env = [f"export NUMBA_CACHE_DIR={shlex.quote(str(cache))}",
           "export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}"]
    warmup = folder / "warmup.sbatch"
    warmup.write_text("\n".join([
        "#!/bin/bash", f"#SBATCH --job-name={name}-warmup", "#SBATCH --time=00:30:00",
        f"#SBATCH --output={folder}/logs/slurm-warmup-%j.out", *common, "", *env,
        "exec " + shlex.join([*cli, "warmup", *select]), ""]))
    array = f"0-{n_tasks - 1}" + (f"%{opts.throttle}" if opts.throttle else "")
    sweep = folder / "sweep.sbatch"
    sweep.write_text("\n".join([
        "#!/bin/bash",
        f"# {n_tasks} tasks of {config_path}; made by meanfield-sim slurm",
        f"#SBATCH --job-name={name}", f"#SBATCH --array={array}", f"#SBATCH --time={opts.time}",
        f"#SBATCH --output={folder}/logs/slurm-%A_%a.out", "#SBATCH --open-mode=append",
        f"#SBATCH --signal=USR1@{opts.signal_seconds}", "#SBATCH --requeue", *common, "",
        *env,
        'echo "task $SLURM_ARRAY_TASK_ID (job $SLURM_JOB_ID, restart '
        '${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -Is)"',
        "srun --ntasks=1 " + shlex.join([*cli, "sweep", *select]),
        "rc=$?",
        f"if [ $rc -eq {EXIT_REQUEUE} ]; then  # checkpointed ahead of the time limit",
        '  echo "checkpointed; requeueing task $SLURM_ARRAY_TASK_ID"',
        "  if scontrol requeue \"$SLURM_JOB_ID\"; then",
        "    # the requeue ends this script by SIGTERM; a job that ended first stays FAILED",
        f"    sleep {REQUEUE_WAIT_SECONDS} & wait $!",
        "  fi",
        "fi",
        "exit $rc", ""]))
    return warmup, sweep


def submit(warmup: Path, sweep: Path) -> tuple[str, str]:
    """Submit the warmup job, then the array after it; returns both job ids."""
    first = _sbatch([str(warmup)])
    return first, _sbatch([f"--dependency=afterok:{first}", str(sweep)])


def _sbatch(args: list) -> str:
    try:
        done = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True,
                              timeout=60)
    except FileNotFoundError:
        raise SlurmError("sbatch is not on PATH: --submit needs a SLURM login node (the "
                         "scripts are written; submit them there)") from None
    if done.returncode != 0:
        raise SlurmError(f"sbatch {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]
