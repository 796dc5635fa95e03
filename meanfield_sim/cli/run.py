"""``meanfield-sim run``: one run, with progress bar, messages and exit status."""
from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from .. import config as config_mod
from . import main

@main.command()
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="HDF5 file to write [default: CONFIG's name with .h5, in the current folder]")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value (TOML syntax), e.g. --set model.width=500. Repeatable.")
@click.option("--seed", type=int, help="Same as --set run.seed=N.")
@click.option("--replicas", type=int, help="Same as --set run.replicas=R.")
@click.option("--backend", type=click.Choice(("cpu", "cuda")),
              help="Same as --set run.backend=NAME: 'cuda' runs the network on a GPU "
                   "(the 'cuda' extra).")
@click.option("--kernel", type=click.Choice(("auto", "pairwise", "sorted")),
              help="Same as --set run.kernel=NAME: 'sorted' is the exact O(m + n) kernel "
                   "for d = 1 and relu, leaky_relu or flat_sigmoid; 'auto' (the default) picks "
                   "it where it applies and n >= 200 (flat_sigmoid: 400).")
@click.option("--force", is_flag=True,
              help="Replace OUTPUT if it exists (the old file stays until the new one is "
                   "complete).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run of the same config from its checkpoint "
                   "(OUTPUT.ckpt); without one, start it again; a complete OUTPUT is left as "
                   "it is.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def run(config_path, output, overrides, seed, replicas, backend, kernel, force, resume,
        quiet):
    """Integrate the run described by CONFIG.toml and write its trajectory to an HDF5 file.

    \b
    Exit status: 0 complete; 1 failed; 75 checkpointed on SIGUSR1 (a batch system's warning
    before its time limit): requeue and --resume; 128 + N stopped by signal N (130 Ctrl-C,
    143 SIGTERM), checkpointed: --resume continues it.

    \b
    Example:
      meanfield-sim run runs/paper/section5_1_relu.toml -o out.h5 --set model.width=200 --replicas 4
    """
    from ..signals import StopSignals

    if force and resume:
        raise click.UsageError("--force and --resume exclude each other: --force starts again "
                               "from t = 0, --resume continues")
    with StopSignals() as stop:  # from here on a stop signal ends the run cleanly
        cfg = load_config(config_path, overrides, seed, replicas, backend, kernel)
        out = Path(output) if output else Path(Path(config_path).stem + ".h5")
        sys.exit(run_one(cfg, out, force=force, resume=resume, quiet=quiet, stop=stop))


def load_config(config_path, overrides=(), seed=None, replicas=None, backend=None,
                kernel=None) -> dict:
    """The resolved config with the command line's overrides; a usage error if invalid."""
    overrides = list(overrides)
    if seed is not None:
        overrides.append(f"run.seed={seed}")
    if replicas is not None:
        overrides.append(f"run.replicas={replicas}")
    if backend is not None:
        overrides.append(f'run.backend="{backend}"')
    if kernel is not None:
        overrides.append(f'run.kernel="{kernel}"')
    try:
        return config_mod.load(config_path, overrides)
    except config_mod.ConfigError as exc:
        raise click.UsageError(f"{config_path}: {exc}") from None


def run_one(cfg, out: Path, force=False, resume=False, quiet=False, stop=None,
            label: str = "") -> int:
    """Run ``cfg`` into ``out`` with progress bar and messages; returns the exit status
    (``signals``: 0 done, 1 failed, 75 requeue, 128 + N stopped by signal N)."""
    from ..io.publish import Destination, OutputError, OutputExists
    from ..runner import run as run_simulation
    from ..runner import what_was_left
    from ..signals import Interrupted

    if not resume:
        try:
            Destination(out, force).check()
        except OutputError as exc:
            raise click.UsageError(str(exc)) from None

    show = not quiet and sys.stderr.isatty()
    bar = None
    if show:
        bar = click.progressbar(length=1000, label="t", file=sys.stderr, show_eta=False,
                                show_percent=False, item_show_func=lambda s: s)
        bar.__enter__()

    def progress(t, t_end, risk):
        if bar is not None:
            done = int(1000 * np.log1p(t) / np.log1p(t_end))
            bar.update(done - bar.pos, f"t = {t:.4g} / {t_end:.4g}  risk = {np.mean(risk):.4g}")

    failure = None  # (message, exit status): reported once the progress bar is closed
    try:
        result = run_simulation(cfg, out, progress=progress, force=force, stop=stop,
                                resume=resume)
    except Interrupted as exc:
        why = "checkpointed on SIGUSR1 (requeue it)" if exc.requeue else \
            f"interrupted by {exc.signal_name}"
        failure = f"{why}; {what_was_left(exc)}", exc.exit_code
    except KeyboardInterrupt as exc:
        failure = f"interrupted by Ctrl-C; {what_was_left(exc)}", 130
    except OutputExists as exc:
        failure = str(exc), 1
    except (OutputError, MemoryError) as exc:
        failure = f"{exc} ({what_was_left(exc)})", 1
    except Exception as exc:  # noqa: BLE001 - report any failure with the file's state
        failure = f"run failed: {exc} ({what_was_left(exc)})", 1
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if failure is not None:
        click.echo(f"{label}Error: {failure[0]}", err=True)
        return failure[1]
    if result.resume_note and not quiet:
        click.echo(f"{label}started from t = 0: {result.resume_note}", err=True)
    if result.already_complete:
        if not quiet:
            click.echo(f"{label}{out} is complete already: nothing to do")
        return 0
    if not quiet:
        resumed = "" if result.resumed_from is None else \
            f" (resumed from the checkpoint at t = {result.resumed_from:.6g})"
        click.echo(f"{label}wrote {out}{resumed}: t = {result.t:.6g} in {result.steps} steps, "
                   f"{result.grad_evals} gradient evaluations, "
                   f"{result.wall_seconds - result.compile_seconds:.2f} s"
                   f"{_compile_note(result.compile_seconds)}; "
                   f"final risk {_summary(result.risk)}, margin {_summary(result.margin)}")
    return 0


def _compile_note(seconds: float) -> str:
    return f" (+ {seconds:.1f} s compiling or loading kernels)" if seconds >= 1.0 else ""


def _summary(values: np.ndarray) -> str:
    values = np.asarray(values)
    if values.size == 1:
        return f"{values.item():.6g}"
    return f"{values.mean():.6g} (mean of {values.size} replicas, min {values.min():.6g})"
