"""Commands that read run files: ``info``, ``analyze``, ``plot``, and ``report``."""
from __future__ import annotations

import click

from . import main

@main.command()
@click.argument("path", metavar="OUT.h5", type=click.Path(dir_okay=False))
def info(path):
    """Describe a run file: its status, contents and final figures.

    A run in progress (or one that did not finish) writes OUT.h5.part; OUT.h5 names it too."""
    from ..io.publish import existing_run_file, partial_path
    from ..io.reader import describe

    path = existing_run_file(path)
    if not path.exists():
        raise click.UsageError(f"{str(path)!r} does not exist (nor {str(partial_path(path))!r})")
    try:
        click.echo(describe(path))
    except OSError as exc:
        raise click.ClickException(f"{path} is not a readable HDF5 file: {exc}") from None
    except KeyError as exc:
        raise click.ClickException(f"{path} is not a meanfield-sim run file (missing {exc})") \
            from None


@main.command()
@click.argument("paths", metavar="OUT.h5...", nargs=-1, required=True,
                type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one row per file.")
def analyze(paths, as_json, as_csv):
    """Final values and trends (d/d log t over the last decade, median over replicas) of a
    run's series: risk, margin, norms, normalised margins, class spread. Several files give one
    table, a row per file.

    \b
    Example:
      meanfield-sim analyze section5_1.h5
      meanfield-sim analyze sweep/*.h5 --csv > sweep.csv
    """
    import json

    from ..analysis.quantities import summary

    rows = [{"file": path, **summary(_open_run(path))} for path in paths]
    if as_json:
        click.echo(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
    elif as_csv or len(rows) > 1:
        click.echo(_table(rows, sep="," if as_csv else "  "))
    else:
        row = rows[0]
        click.echo(f"{row['file']}: {row['status']}, {row['records']} records, t = {row['t']:.6g}")
        width = max(map(len, row))
        click.echo(f"  {'':<{width}}  {'final':>12}  {'trend':>12}")
        for name, value in row.items():
            if isinstance(value, dict):
                click.echo(f"  {name:<{width}}  {value['final']:>12.6g}  {value['trend']:>12.4g}")


@main.command()
@click.argument("path", metavar="OUT.h5", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "folder", type=click.Path(file_okay=False), required=True,
              help="Folder for the PNG figures (created if missing).")
def plot(path, folder):
    """PNG figures of a run: risk, margins with the max-margin optimum, the normalised
    classifier, class spread, particles, the simplex (k = 3), collapse measures."""
    from ..analysis.figures import plot_run

    ds = _open_run(path)
    try:
        written = plot_run(ds, folder)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for figure in written:
        click.echo(f"wrote {figure}")


@main.command()
@click.argument("folder", metavar="CONFIGS/", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True,
              help="Folder for report.md, figures/ and runs/ (created if missing).")
@click.option("--quick", is_flag=True, help="Shorter runs and looser tolerances (about a minute).")
def report(folder, out, quick):
    """Reproduce the paper: run (or reuse) the configs of its claims from CONFIGS/ (runs/paper)
    and write report.md with figures and a claim-by-claim table of measured errors.

    \b
    Example:
      meanfield-sim report runs/paper -o report/
    """
    from ..report import make_report

    path, rows = make_report(folder, out, quick=quick, log=lambda s: click.echo(s, err=True))
    failed = [r for r in rows if not r.passed]
    click.echo(f"wrote {path}: {len(rows) - len(failed)} of {len(rows)} claims within tolerance")
    if failed:
        raise click.ClickException("outside tolerance: " + "; ".join(
            f"{r.source}: {r.quantity} (error {r.error:.3g} > {r.tolerance:.3g})" for r in failed))


def _open_run(path):
    """open_run, with an unreadable file as a one-line error."""
    from ..analysis.dataset import open_run
    try:
        return open_run(path)
    except (OSError, KeyError) as exc:
        raise click.ClickException(f"{path}: not a readable run file ({exc})") from None


def _table(rows: list[dict], sep: str) -> str:
    """One row per file; a series gives two columns, NAME and NAME_trend."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    series = {c for row in rows for c, value in row.items() if isinstance(value, dict)}
    header = [name for c in columns for name in ((c, f"{c}_trend") if c in series else (c,))]
    lines = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if isinstance(value, dict):
                cells += [f"{value['final']:.6g}", f"{value['trend']:.4g}"]
            elif c in series:
                cells += ["", ""]
            else:
                cells.append("" if value is None else f"{value:.6g}" if isinstance(value, float)
                             else str(value))
        lines.append(sep.join(cells))
    return "\n".join([sep.join(header), *lines])
