"""Post-processing of meanfield-sim run files. It reads HDF5 files only and imports no Numba.

For now it re-exports the file reader; margins, normalised limits, class spread and collapse
measures arrive with the analysis issue."""
from meanfield_sim.io.reader import describe, read_observables

__all__ = ["describe", "read_observables"]
