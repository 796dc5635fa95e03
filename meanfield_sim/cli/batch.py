"""Batch commands: ``sweep`` (list, one task, or all here), ``slurm``, ``collect``, ``warmup``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import config as config_mod
from . import main
from .run import run_one

_config = click.argument("config_path", metavar="CONFIG.toml", type=click.Path(dir_okay=False))
_output = click.option("-o", "--output", "folder", type=click.Path(file_okay=False),
                       help="Folder of the sweep's outputs [default: CONFIG's name, in the "
                            "current folder].")
_set = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                    help="Override a config value in every task (TOML syntax). Repeatable.")


def _load(config_path, overrides):
    from ..batch.sweep import Sweep

    try:
        return Sweep.load(config_path, overrides)
    except config_mod.ConfigError as exc:
        raise click.UsageError(f"{config_path}: {exc}") from None


def _folder(config_path, folder) -> Path:
    return Path(folder) if folder else Path(Path(config_path).stem)


def _prepare(sweep, folder: Path) -> None:
    from ..batch.sweep import SweepError

    try:
        sweep.prepare(folder)
    except SweepError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@_config
@_output
@_set
@click.option("--list", "list_only", is_flag=True, help="List the tasks and do nothing else.")
@click.option("--index", type=int, help="Run task I only [default: $SLURM_ARRAY_TASK_ID].")
@click.option("--jobs", type=int, help="Run every task here, N at a time, each with a fair "
                                       "share of the cores.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def sweep(config_path, folder, overrides, list_only, index, jobs, quiet):
    """Run the tasks of CONFIG.toml's [sweep] table into one folder.

    A complete output is skipped, an interrupted one resumed from its checkpoint, and a
    foreign or unreadable one reported and left alone, so running a sweep again finishes it.
    Exit status: 0 when every task run is complete, 1 if one failed, 75 if one checkpointed
    for requeueing, 128 + N when stopped by signal N.

    \b
    Examples:
      meanfield-sim sweep runs/open/sweep_width_seed.toml --list
      meanfield-sim sweep runs/open/sweep_width_seed.toml -o sweep/ --jobs 2
      meanfield-sim sweep runs/open/sweep_width_seed.toml -o sweep/ --index 3
    """
    from ..batch.sweep import SweepError, output_of, task_from_env
    from ..signals import StopSignals

    the_sweep = _load(config_path, overrides)
    folder = _folder(config_path, folder)
    if list_only:
        for task in the_sweep.tasks:
            shown = " ".join(f"{k}={config_mod.toml_value(v)}" for k, v in task.overrides)
            click.echo(f"{task.index:>4}  {output_of(folder, task.name)}  {shown}  "
                       f"key {task.key}")
        return
    if jobs is not None and index is not None:
        raise click.UsageError("--jobs runs every task; --index runs one: give one of them")
    if jobs is not None and jobs < 1:
        raise click.UsageError(f"--jobs {jobs}: must be at least 1")
    if jobs is None:
        try:
            task = the_sweep.task(task_from_env(index))
        except SweepError as exc:
            raise click.UsageError(str(exc)) from None
    with StopSignals() as stop:
        _prepare(the_sweep, folder)
        if jobs is not None:
            from ..batch.pool import exit_status, run_all

            args = [str(config_path), "-o", str(folder),
                    *[a for item in overrides for a in ("--set", item)]]
            outcomes = run_all(the_sweep, folder, jobs, args, stop,
                               report=lambda line: click.echo(line, err=True))
            sys.exit(exit_status(outcomes, len(the_sweep.tasks), stop))
        sys.exit(run_one(task.cfg, output_of(folder, task.name), resume=True, quiet=quiet,
                         stop=stop, label=f"task {task.index} ({task.name}): "))


@main.command()
@_config
@_output
@_set
@click.option("--partition", help="SLURM partition [default: the cluster's].")
@click.option("--time", "time_limit", default="01:00:00", show_default=True,
              help="Time limit per task; a task that reaches it checkpoints and is requeued.")
@click.option("--mem", default="2G", show_default=True, help="Memory per task.")
@click.option("--cpus", default=1, show_default=True, help="CPUs (kernel threads) per task.")
@click.option("--throttle", default=0, show_default=True,
              help="Most tasks running at once (0: no limit).")
@click.option("--signal-seconds", default=120, show_default=True,
              help="SIGUSR1 this many seconds before the time limit: checkpoint and requeue.")
@click.option("--submit", is_flag=True, help="Submit (warmup job, then the array) with sbatch.")
def slurm(config_path, folder, overrides, partition, time_limit, mem, cpus, throttle,
          signal_seconds, submit):
    """Write a SLURM job array for CONFIG.toml's sweep (and submit it with --submit).

    \b
    Example:
      meanfield-sim slurm runs/open/sweep_width_seed.toml -o sweep/ --time 02:00:00 --submit
      meanfield-sim collect sweep/ -o summary.csv
    """
    from ..batch import slurm as slurm_mod

    the_sweep = _load(config_path, overrides)
    folder = _folder(config_path, folder)
    opts = slurm_mod.ArrayOptions(partition, time_limit, mem, cpus, throttle, signal_seconds)
    try:
        opts.check(folder)
    except slurm_mod.SlurmError as exc:
        raise click.UsageError(str(exc)) from None
    _prepare(the_sweep, folder)
    try:
        warmup, array = slurm_mod.write_scripts(folder, Path(config_path), overrides,
                                                len(the_sweep.tasks), Path(config_path).stem,
                                                opts)
    except slurm_mod.SlurmError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {warmup} and {array} ({len(the_sweep.tasks)} tasks)")
    if submit:
        try:
            first, second = slurm_mod.submit(warmup, array)
        except slurm_mod.SlurmError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"submitted warmup job {first} and array job {second}")
        click.echo(second)


@main.command()
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="CSV file to write [default: print it].")
def collect(folder, output):
    """One CSV row per task of the sweep in DIR: its overrides, status and final figures.

    Missing, failed and incomplete tasks are listed with their state, not dropped."""
    from ..batch.collect import collect as collect_rows
    from ..batch.collect import to_csv
    from ..batch.sweep import SweepError

    try:
        rows = collect_rows(folder)
    except SweepError as exc:
        raise click.UsageError(str(exc)) from None
    text = to_csv(rows)
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    click.echo(f"{len(rows)} tasks: {summary}" + (f"; wrote {output}" if output else ""),
               err=True)


@main.command()
@_config
@_output
@_set
def warmup(config_path, folder, overrides):
    """Compile the kernels CONFIG.toml's tasks need into Numba's cache (NUMBA_CACHE_DIR), so
    that the tasks of a job array load them instead of compiling."""
    from numba.core.config import CACHE_DIR

    from ..batch.warmup import warm_up

    the_sweep = _load(config_path, overrides)
    where = CACHE_DIR or "beside the package's sources (NUMBA_CACHE_DIR is not set)"
    for (kind, dtype, backend), seconds in warm_up(the_sweep.tasks):
        click.echo(f"{kind} {dtype} {backend}: {seconds:.2f} s")
    click.echo(f"kernels cached in {where}")
    del folder  # accepted so that warmup takes the same arguments as sweep
