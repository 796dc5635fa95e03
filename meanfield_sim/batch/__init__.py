"""Batches of runs: sweeps (``sweep``), running them here (``pool``), SLURM job arrays
(``slurm``) and one table of their results (``collect``)."""
