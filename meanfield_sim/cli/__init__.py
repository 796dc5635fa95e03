"""Command line: ``meanfield-sim`` and its commands, one module per kind of work.

``run`` (one run: :mod:`.run`), ``info`` / ``analyze`` / ``plot`` / ``report`` (reading files:
:mod:`.files`), ``sweep`` / ``slurm`` / ``collect`` / ``warmup`` (batches: :mod:`.batch`).
Heavy imports (Numba, xarray) happen inside the commands, so ``--help`` stays fast.
"""
from __future__ import annotations

import click

from .. import __version__


@click.group()
@click.version_option(__version__, prog_name="meanfield-sim")
def main():
    """Mean-field two-layer networks and softmax toy flows, integrated and written to HDF5.

    \b
    Example:
      meanfield-sim run runs/paper/section5_1_relu.toml -o section5_1.h5
      meanfield-sim info section5_1.h5
      meanfield-sim sweep runs/open/sweep_width_seed.toml -o sweep/ --jobs 2
    """


from . import batch, files, run  # noqa: E402,F401  (register the commands)
